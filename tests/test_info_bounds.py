"""innet.info.bounds: the Xu-Raginsky and union bounds (nats), the Gibbs posterior, Î's error."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from innet.info import (
    gibbs_posterior,
    mixture_mutual_information,
    union_bound,
    xu_raginsky_bound,
)
from innet.info.bounds import mixture_information_se


def test_xu_raginsky_closed_forms() -> None:
    assert xu_raginsky_bound(0.5, m=100) == pytest.approx(0.05, abs=1e-15)
    assert xu_raginsky_bound(2.0, m=8, sigma=1.0) == pytest.approx(math.sqrt(0.5))
    assert xu_raginsky_bound(0.0, m=1) == 0.0
    # Quadrupling m halves the bound; sigma scales it linearly.
    assert xu_raginsky_bound(1.0, m=400) == pytest.approx(xu_raginsky_bound(1.0, m=100) / 2)
    assert xu_raginsky_bound(1.0, m=10, sigma=2.0) == pytest.approx(
        4 * xu_raginsky_bound(1.0, m=10)
    )


def test_union_bound_is_xu_raginsky_at_log_k_nats() -> None:
    for k in (1, 2, 10, 1024):
        assert union_bound(k, m=500) == pytest.approx(xu_raginsky_bound(math.log(k), m=500))
    # Losses in [0, 1]: the familiar sqrt(ln K / (2 m)).
    assert union_bound(16, m=1000) == pytest.approx(math.sqrt(math.log(16) / 2000))


def test_bits_must_be_converted_to_nats() -> None:
    """One bit of information is ln 2 nats; passing bits would overstate the bound."""
    one_bit = xu_raginsky_bound(math.log(2), m=100)
    assert one_bit == pytest.approx(union_bound(2, m=100))
    assert one_bit < xu_raginsky_bound(1.0, m=100)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: xu_raginsky_bound(-0.1, m=10), "mutual_information_nats"),
        (lambda: xu_raginsky_bound(math.nan, m=10), "mutual_information_nats"),
        (lambda: xu_raginsky_bound(1.0, m=0), "m must be a positive integer"),
        (lambda: xu_raginsky_bound(1.0, m=2.5), "m must be a positive integer"),
        (lambda: xu_raginsky_bound(1.0, m=10, sigma=0.0), "sigma"),
        (lambda: union_bound(0, m=10), "K must be a positive integer"),
    ],
)
def test_bound_validation(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


def test_gibbs_posterior_closed_forms() -> None:
    np.testing.assert_allclose(gibbs_posterior([0.0, 1.0], alpha=math.log(3)), [0.75, 0.25])
    np.testing.assert_allclose(gibbs_posterior([0.2, 0.9, 0.4], alpha=0.0), np.full(3, 1 / 3))
    prior = np.array([0.5, 0.25, 0.25])
    np.testing.assert_allclose(gibbs_posterior([0.2, 0.9, 0.4], alpha=0.0, prior=prior), prior)
    np.testing.assert_allclose(
        gibbs_posterior([1.0, 1.0, 0.0], alpha=1.0, prior=[0.5, 0.5, 0.0]), [0.5, 0.5, 0.0]
    )


def test_gibbs_posterior_is_stable_for_huge_exponents() -> None:
    posterior = gibbs_posterior([[1e6, 1e6 + 1.0, 2e6]], alpha=1e3)
    assert np.all(np.isfinite(posterior))
    np.testing.assert_allclose(posterior, [[1.0, 0.0, 0.0]], atol=1e-300)


@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 8),
    st.integers(1, 10),
    st.floats(0.0, 1e4),
)
@settings(max_examples=60, deadline=None)
def test_gibbs_rows_are_distributions_ordered_by_loss(
    seed: int, n: int, k: int, alpha: float
) -> None:
    rng = np.random.default_rng(seed)
    losses = rng.uniform(size=(n, k))
    posterior = gibbs_posterior(losses, alpha)
    assert posterior.shape == (n, k)
    np.testing.assert_allclose(posterior.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(posterior >= 0.0)
    for row, loss in zip(posterior, losses, strict=True):
        order = np.argsort(loss)
        assert np.all(np.diff(row[order]) <= 1e-15)  # lower loss, higher probability
    # Finite-bank I(S;W) of the posterior rows: at most log2 K and log2 n bits.
    information = mixture_mutual_information(posterior)
    assert 0.0 <= information <= min(math.log2(k), math.log2(n)) + 1e-12


def test_information_grows_from_zero_to_the_erm_limit() -> None:
    """alpha = 0 ignores the data (I = 0); large alpha picks each set's minimiser."""
    losses = np.array([[0.1, 0.5, 0.9], [0.5, 0.1, 0.9], [0.9, 0.5, 0.1], [0.1, 0.9, 0.5]])
    values = [mixture_mutual_information(gibbs_posterior(losses, a)) for a in (0, 1, 10, 1e4)]
    assert values[0] == pytest.approx(0.0, abs=1e-12)
    assert all(a < b for a, b in zip(values, values[1:], strict=False))
    minimisers = np.bincount(losses.argmin(axis=1), minlength=3) / 4  # 1/2, 1/4, 1/4
    assert values[-1] == pytest.approx(1.5, abs=1e-9)
    assert values[-1] == pytest.approx(-np.sum(minimisers * np.log2(minimisers)), abs=1e-9)


def test_gibbs_posterior_validation() -> None:
    with pytest.raises(ValueError, match="alpha"):
        gibbs_posterior([0.1, 0.2], alpha=-1.0)
    with pytest.raises(ValueError, match="one entry per hypothesis"):
        gibbs_posterior([0.1, 0.2], alpha=1.0, prior=[1.0])
    with pytest.raises(ValueError, match="prior must be a probability vector"):
        gibbs_posterior([0.1, 0.2], alpha=1.0, prior=[0.5, 0.6])
    with pytest.raises(ValueError, match="losses must contain only finite"):
        gibbs_posterior([0.1, math.inf], alpha=1.0)


def _gibbs_rows(rng: np.random.Generator, sets: int, alpha: float = 20.0) -> np.ndarray:
    """Gibbs rows of ``sets`` training sets of 30 Bernoulli losses for 6 unequal hypotheses."""
    losses = (rng.uniform(size=(sets, 30, 6)) < np.linspace(0.1, 0.4, 6)).mean(axis=1)
    return gibbs_posterior(losses, alpha)


def test_finite_bank_information_is_the_mutual_information_of_the_joint_dit():
    """Î over the drawn sets is I(S;W) of the joint table with S uniform over them (dit)."""
    dit = pytest.importorskip("dit")
    rows = _gibbs_rows(np.random.default_rng(5), sets=12)
    outcomes = [(i, k) for i in range(rows.shape[0]) for k in range(rows.shape[1])]
    joint = dit.Distribution(outcomes, (rows / rows.shape[0]).ravel().tolist())
    expected = dit.shannon.mutual_information(joint, [0], [1])
    assert mixture_mutual_information(rows) == pytest.approx(expected, abs=1e-12)
    assert mixture_mutual_information(rows, base=math.e) == pytest.approx(expected * math.log(2))


def test_information_se_agrees_with_the_jackknife():
    rows = _gibbs_rows(np.random.default_rng(6), sets=200)
    n = rows.shape[0]
    leave_one_out = np.array(
        [mixture_mutual_information(np.delete(rows, i, axis=0), base=math.e) for i in range(n)]
    )
    jackknife = math.sqrt((n - 1) / n * ((leave_one_out - leave_one_out.mean()) ** 2).sum())
    assert mixture_information_se(rows, base=math.e) == pytest.approx(jackknife, rel=0.05)


def test_information_se_matches_the_spread_of_independent_replicates():
    """The delta-method error of one estimate predicts how much Î moves between replicates."""
    rng = np.random.default_rng(7)
    estimates, errors = [], []
    for _ in range(300):
        rows = _gibbs_rows(rng, sets=200)
        estimates.append(mixture_mutual_information(rows, base=math.e))
        errors.append(mixture_information_se(rows, base=math.e))
    spread = float(np.std(estimates, ddof=1))
    assert float(np.mean(errors)) == pytest.approx(spread, rel=0.15)
    # in bits the error scales like the estimate
    rows = _gibbs_rows(rng, sets=50)
    assert mixture_information_se(rows) == pytest.approx(
        mixture_information_se(rows, base=math.e) / math.log(2)
    )


def test_information_se_validation():
    with pytest.raises(ValueError, match="at least two"):
        mixture_information_se([[0.5, 0.5]])
    with pytest.raises(ValueError, match="rows"):
        mixture_information_se([[0.5, 0.6], [0.5, 0.5]])
