"""The Gibbs rule's exact gap identity and the certified lower bound on D(R): closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from innet.info import (
    distortion_lower_bound,
    entropy,
    gibbs_posterior,
    kl_divergence,
    rate_distortion_curve,
    symmetrized_kl_information,
)


def test_symmetrized_kl_is_the_sum_of_both_divergences():
    rows = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
    mean = rows.mean(axis=0)
    expected = np.mean([kl_divergence(r, mean) + kl_divergence(mean, r) for r in rows])
    assert symmetrized_kl_information(rows) == pytest.approx(expected, abs=1e-12)
    assert symmetrized_kl_information([[1.0, 0.0], [0.0, 1.0]]) == math.inf


@pytest.mark.parametrize("alpha", [0.0, 0.3, 4.0, 60.0])
def test_alpha_times_gap_is_the_symmetrized_kl_information_exactly(alpha):
    """For S uniform over the drawn sets, alpha * gap = I_SKL holds in exact arithmetic."""
    rng = np.random.default_rng(3)
    losses = rng.uniform(size=(40, 7))  # L_{S_i}(w) of 40 training sets, 7 hypotheses
    q = gibbs_posterior(losses, alpha)
    gap = q.mean(axis=0) @ losses.mean(axis=0) - (q * losses).sum(axis=1).mean()
    assert alpha * gap == pytest.approx(symmetrized_kl_information(q, base=math.e), abs=1e-12)


def test_two_sets_two_hypotheses_by_hand():
    # q_1 = (3/4, 1/4), q_2 = (1/4, 3/4), mean (1/2, 1/2); each row contributes
    # (1/4) ln(3/2) + (1/4) ln 2 = ln(3) / 4
    rows = [[0.75, 0.25], [0.25, 0.75]]
    assert symmetrized_kl_information(rows, base=math.e) == pytest.approx(math.log(3) / 4)


def _bernoulli_distortion(rate: float, p: float = 0.3) -> float:
    """D(R) of a Bernoulli(p) source with Hamming distortion: R = H(p) - H(D), D in [0, p]."""
    if rate >= entropy([p, 1 - p]):
        return 0.0
    return brentq(lambda d: entropy([p, 1 - p]) - entropy([d, 1 - d]) - rate, 1e-12, p)


def test_distortion_lower_bound_is_below_and_close_to_the_closed_form():
    curve = rate_distortion_curve([0.7, 0.3], [[0, 1], [1, 0]], np.linspace(1.25, 10.0, 300))
    for rate in (0.05, 0.2, 0.412295, 0.7, 0.85):
        exact = _bernoulli_distortion(rate)
        bound = distortion_lower_bound(curve, rate)
        assert bound <= exact + 1e-9
        assert bound == pytest.approx(exact, abs=2e-3)
    assert _bernoulli_distortion(0.412295) == pytest.approx(0.1, abs=1e-6)


def test_distortion_lower_bound_rejects_a_negative_rate():
    curve = rate_distortion_curve([0.5, 0.5], [[0, 1], [1, 0]], [1.0, 2.0])
    with pytest.raises(ValueError, match="rate"):
        distortion_lower_bound(curve, -0.1)


def test_the_identity_needs_the_resampled_population_loss():
    """With the pool's own loss in place of the drawn sets' mean, one draw misses it."""
    from innet.families.finite_bank.selection import selection_cells

    rng = np.random.default_rng(4)
    pool = (rng.uniform(size=(500, 6)) < np.linspace(0.1, 0.5, 6)).astype(float)
    rows = selection_cells(pool, [5.0, 50.0], [20], resamples=60, rng=np.random.default_rng(5))
    for row in rows:
        assert row["identity_error"] < 1e-12
        miss = abs(row["alpha"] * row["gap"] - row["skl_nats"])
        assert miss > 1e-4  # the gap against the pool: a draw's noise, not rounding
        assert row["alpha"] * abs(row["gap"] - row["gap_resampled"]) == pytest.approx(miss)
