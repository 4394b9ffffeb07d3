"""innet.info.entropy: closed forms, invariants (hypothesis) and the dit library as an oracle."""

from __future__ import annotations

import math

import dit
import numpy as np
import pytest
import torch
from dit.divergences.pmf import jensen_shannon_divergence, relative_entropy
from hypothesis import given, settings
from hypothesis import strategies as st

from innet.families.inl.gates.discrete import discrete_rate_bits
from innet.info import entropy, kl_divergence, mixture_mutual_information, mutual_information


def random_rows(seed: int, n: int, k: int, sparsity: float = 0.3) -> np.ndarray:
    """``n`` random distributions over ``k`` outcomes, some entries exactly 0."""
    rng = np.random.default_rng(seed)
    rows = rng.dirichlet(np.full(k, 0.7), size=n)
    rows[rng.random((n, k)) < sparsity] = 0.0
    rows[np.arange(n), rng.integers(k, size=n)] += 0.1  # no row is all zeros
    return rows / rows.sum(axis=1, keepdims=True)


def random_weights(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    weights = rng.dirichlet(np.ones(n))
    weights[rng.random(n) < 0.2] = 0.0
    weights[0] += 0.1
    return weights / weights.sum()


shapes = st.tuples(st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**32 - 1))


# --- entropy -----------------------------------------------------------------------------


def test_entropy_closed_forms() -> None:
    assert entropy([1.0]) == 0.0
    assert entropy(np.full(8, 1 / 8)) == pytest.approx(3.0, abs=1e-12)
    assert entropy([0.5, 0.5, 0.0]) == pytest.approx(1.0, abs=1e-12)  # 0 log 0 = 0
    assert entropy([0.3, 0.7]) == pytest.approx(
        -0.3 * math.log2(0.3) - 0.7 * math.log2(0.7), abs=1e-15
    )
    assert entropy(np.full(4, 0.25), base=math.e) == pytest.approx(math.log(4), abs=1e-12)
    assert entropy(np.full(9, 1 / 9), base=3) == pytest.approx(2.0, abs=1e-12)
    rows = entropy([[1.0, 0.0, 0.0], [0.25, 0.25, 0.5]])
    assert isinstance(rows, np.ndarray)
    np.testing.assert_allclose(rows, [0.0, 1.5], atol=1e-12)


@given(shapes)
@settings(max_examples=50, deadline=None)
def test_entropy_matches_dit(shape: tuple[int, int, int]) -> None:
    n, k, seed = shape
    rows = random_rows(seed, n, k)
    ours = entropy(rows)
    for row, value in zip(rows, ours, strict=True):
        assert value == pytest.approx(dit.shannon.entropy_pmf(row), abs=1e-12)
        assert 0.0 <= value <= math.log2(k) + 1e-12


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([0.5, 0.6], "p must be a probability vector.*sums to 1.1"),
        ([1.2, -0.2], r"p must be a probability vector.*entry 1 is -0.2"),
        ([[0.5, 0.5], [0.9, 0.2]], "p must be row-stochastic.*row 1 sums to 1.1"),
        ([0.5, math.nan], "finite"),
        ([], "empty"),
        (np.ones((2, 2, 2)) / 2, "dimension"),
    ],
)
def test_entropy_rejects_non_distributions(bad: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        entropy(bad)


def test_entropy_rejects_base_one() -> None:
    with pytest.raises(ValueError, match="base"):
        entropy([0.5, 0.5], base=1)


def test_float32_rounding_is_tolerated_and_renormalised() -> None:
    probs = torch.softmax(torch.randn(64, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    array = probs.numpy()
    assert float(np.abs(array.astype(np.float64).sum(axis=1) - 1).max()) > 0  # float32 error
    assert np.all(entropy(array) <= 4.0)


# --- KL divergence -----------------------------------------------------------------------


@given(shapes)
@settings(max_examples=50, deadline=None)
def test_kl_divergence_matches_dit_and_is_nonnegative(shape: tuple[int, int, int]) -> None:
    n, k, seed = shape
    p = random_rows(seed, n, k, sparsity=0.3)
    q = random_rows(seed + 7, n, k, sparsity=0.0)  # full support: D(p || q) finite
    ours = kl_divergence(p, q)
    for i in range(n):
        assert ours[i] >= 0.0
        assert ours[i] == pytest.approx(relative_entropy(p[i], q[i]), abs=1e-10)
    assert kl_divergence(p[0], p[0]) == pytest.approx(0.0, abs=1e-15)


def test_kl_divergence_infinite_and_shape_errors() -> None:
    assert kl_divergence([0.5, 0.5], [1.0, 0.0]) == math.inf
    assert kl_divergence([1.0, 0.0], [0.25, 0.75], base=math.e) == pytest.approx(math.log(4))
    with pytest.raises(ValueError, match="same shape"):
        kl_divergence([0.5, 0.5], [1 / 3, 1 / 3, 1 / 3])


# --- mixture mutual information ----------------------------------------------------------


@given(shapes)
@settings(max_examples=50, deadline=None)
def test_identical_rows_give_zero(shape: tuple[int, int, int]) -> None:
    n, k, seed = shape
    row = random_rows(seed, 1, k)
    assert mixture_mutual_information(np.repeat(row, n, axis=0)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(("n", "k"), [(1, 1), (2, 2), (3, 5), (8, 8), (5, 64)])
def test_distinct_one_hot_rows_give_log2_n(n: int, k: int) -> None:
    rows = np.eye(k)[np.random.default_rng(n).permutation(k)[:n]]
    assert mixture_mutual_information(rows) == pytest.approx(math.log2(n), abs=1e-12)


@given(shapes)
@settings(max_examples=100, deadline=None)
def test_random_rows_stay_in_range_and_match_dit(shape: tuple[int, int, int]) -> None:
    n, k, seed = shape
    rows = random_rows(seed, n, k)
    value = mixture_mutual_information(rows)
    assert 0.0 <= value <= min(math.log2(k), math.log2(n))
    assert value == pytest.approx(jensen_shannon_divergence(rows), abs=1e-10)
    weights = random_weights(seed, n)
    weighted = mixture_mutual_information(rows, weights)
    assert 0.0 <= weighted <= min(math.log2(k), float(entropy(weights)))
    assert weighted == pytest.approx(jensen_shannon_divergence(rows, weights), abs=1e-10)
    nats = mixture_mutual_information(rows, weights, base=math.e)
    assert nats == pytest.approx(weighted * math.log(2), abs=1e-12)


def test_small_information_between_high_entropy_rows_is_not_lost() -> None:
    """Two rows near uniform over K = 1000: I ~ sum_k (delta v_k)^2 / (2 m_k) nats (chi^2 / 2)."""
    k, delta = 1000, 1e-6
    v = np.where(np.arange(k) % 2 == 0, 1.0, -1.0)
    rows = np.stack([np.full(k, 1 / k) + delta * v, np.full(k, 1 / k) - delta * v])
    expected_nats = k * delta**2 * k / 2  # each row's D(p_i || m), m uniform
    assert mixture_mutual_information(rows, base=math.e) == pytest.approx(expected_nats, rel=1e-3)


def test_rows_with_zero_weight_do_not_count() -> None:
    rows = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert mixture_mutual_information(rows, [0.5, 0.5, 0.0]) == pytest.approx(1.0, abs=1e-12)


def test_underflowing_mixture_entries_stay_finite() -> None:
    """A denormal p_ik with a tiny weight underflows to 0 in the mixture; the result stays exact."""
    rows = np.array([[1.0 - 1e-310, 1e-310], [1.0, 0.0]])
    weights = np.array([1e-20, 1.0 - 1e-20])
    value = mixture_mutual_information(rows, weights)
    assert math.isfinite(value) and 0.0 <= value < 1e-15


def test_mixture_mutual_information_validation() -> None:
    with pytest.raises(ValueError, match="rows must be row-stochastic"):
        mixture_mutual_information([[0.5, 0.4], [0.5, 0.5]])
    with pytest.raises(ValueError, match="rows must have 2 dimension"):
        mixture_mutual_information([0.5, 0.5])
    with pytest.raises(ValueError, match="one entry per row"):
        mixture_mutual_information(np.eye(3), [0.5, 0.5])
    with pytest.raises(ValueError, match="weights must be a probability vector"):
        mixture_mutual_information(np.eye(2), [0.5, 0.6])


@given(st.integers(0, 2**32 - 1), st.integers(2, 16))
@settings(max_examples=25, deadline=None)
def test_matches_the_discrete_gate_rate(seed: int, k: int) -> None:
    """Rows p(t|x) of a batch: the estimator the discrete gate reports (float32 there)."""
    logits = torch.randn(32, k, generator=torch.Generator().manual_seed(seed)) * 3
    probs = torch.softmax(logits, dim=-1)
    ours = mixture_mutual_information(probs.numpy())
    assert ours == pytest.approx(float(discrete_rate_bits(probs)), abs=1e-5)


# --- mutual information of a joint table --------------------------------------------------


@given(shapes)
@settings(max_examples=50, deadline=None)
def test_mutual_information_matches_dit_and_is_symmetric(shape: tuple[int, int, int]) -> None:
    n, k, seed = shape
    joint = random_rows(seed, 1, n * k, sparsity=0.2).reshape(n, k)
    ours = mutual_information(joint)
    oracle = dit.shannon.mutual_information(dit.Distribution.from_ndarray(joint), [0], [1])
    assert ours == pytest.approx(oracle, abs=1e-10)
    assert mutual_information(joint.T) == pytest.approx(ours, abs=1e-12)
    entropy_x = float(entropy(joint.sum(axis=1)))
    entropy_y = float(entropy(joint.sum(axis=0)))
    assert 0.0 <= ours <= min(entropy_x, entropy_y) + 1e-12


def test_mutual_information_closed_forms() -> None:
    assert mutual_information(np.outer([0.3, 0.7], [0.1, 0.5, 0.4])) == pytest.approx(0, abs=1e-15)
    assert mutual_information(np.diag([0.25, 0.25, 0.5])) == pytest.approx(1.5, abs=1e-12)
    bsc = 0.5 * np.array([[0.89, 0.11], [0.11, 0.89]])
    assert mutual_information(bsc) == pytest.approx(
        1 + 0.11 * math.log2(0.11) + 0.89 * math.log2(0.89), abs=1e-12
    )
    with pytest.raises(ValueError, match="joint .* must be a joint table"):
        mutual_information([[0.5, 0.5], [0.5, 0.5]])
