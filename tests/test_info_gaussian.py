"""innet.info.gaussian: closed forms, streaming, invariances, the bracket, the Monte Carlo rate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from innet.families.inl.gates.gaussian import gaussian_kl_bits
from innet.info import (
    SATURATION_MARGIN_BITS,
    PairwiseBracket,
    RunningMoments,
    gaussian_channel_upper_bound,
    mixture_information_mc,
    pairwise_bracket,
)


def gate_like(seed: int, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Means and per-sample noise scales like a Gaussian gate's (sigma in [0.05, 20])."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)
    sigma = np.exp(0.5 * rng.uniform(-6.0, 6.0, size=(n, d)))
    return mu, sigma


# --- moment-matched upper bound ----------------------------------------------------------


def test_zero_and_constant_means_give_zero() -> None:
    sigma = np.full((50, 3), 0.7)
    assert gaussian_channel_upper_bound(np.zeros((50, 3)), sigma) == pytest.approx(0, abs=1e-12)
    offset = np.tile([3.0, -1e4, 0.5], (50, 1))
    assert gaussian_channel_upper_bound(offset, sigma) == pytest.approx(0.0, abs=1e-12)


def test_gaussian_input_through_gaussian_noise() -> None:
    """mu ~ N(0, P I), sigma = s: (D/2) log2(1 + P / s^2) as N grows.

    With N samples the bound is 0.5 log2 det of the sample covariance plus s^2 I over s^2; each
    of its D eigenvalues has relative standard error ~sqrt(2 / N), scaled by P / (P + s^2) in the
    log, so the standard error is ~(0.5 / ln 2) sqrt(2 D / N) P / (P + s^2) = 0.0037 bits for
    N = 1e5, D = 4, P = 1, s = 0.5. Tolerance 0.02 bits (over 5 standard errors).
    """
    n, d, power, s = 100_000, 4, 1.0, 0.5
    rng = np.random.default_rng(2024)
    mu = rng.normal(scale=math.sqrt(power), size=(n, d))
    value = gaussian_channel_upper_bound(mu, np.full((n, d), s))
    assert value == pytest.approx(d / 2 * math.log2(1 + power / s**2), abs=0.02)


def test_small_closed_forms() -> None:
    # Two points +-1 in one dimension, unit noise: Cov mu = 1, so 0.5 log2(1 + 1) = 0.5 bit.
    mu = np.array([[1.0], [-1.0]])
    assert gaussian_channel_upper_bound(mu, np.ones((2, 1))) == pytest.approx(0.5, abs=1e-12)
    # Mean 0 but different noise levels: 0.5 log2(mean sigma^2) - 0.5 mean log2 sigma^2 (Jensen).
    sigma = np.array([[1.0], [2.0]])
    expected = 0.5 * math.log2(2.5) - 0.5 * (0.0 + 2.0) / 2
    assert gaussian_channel_upper_bound(np.zeros((2, 1)), sigma) == pytest.approx(expected)


@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(1, 6), st.floats(1e-3, 1e3))
@settings(max_examples=50, deadline=None)
def test_upper_bound_is_scale_invariant_and_nonnegative(
    seed: int, n: int, d: int, scale: float
) -> None:
    mu, sigma = gate_like(seed, n, d)
    value = gaussian_channel_upper_bound(mu, sigma)
    assert value >= 0.0
    assert gaussian_channel_upper_bound(scale * mu, scale * sigma) == pytest.approx(value, abs=1e-9)
    shifted = gaussian_channel_upper_bound(mu + 123.0, sigma)
    assert shifted == pytest.approx(value, abs=1e-8)


@given(st.integers(0, 2**32 - 1), st.integers(1, 200), st.integers(1, 6))
@settings(max_examples=40, deadline=None)
def test_tighter_than_the_gates_variational_bound(seed: int, n: int, d: int) -> None:
    """mean KL(p(t|x) || N(0, I)) = I + KL(p_T || N(0, I)); moment matching minimises that KL.

    So the moment-matched bound never exceeds the rate the Gaussian gate reports today.
    """
    mu, sigma = gate_like(seed, n, d)
    logvar = 2.0 * np.log(sigma)
    variational = float(gaussian_kl_bits(torch.from_numpy(mu), torch.from_numpy(logvar)).mean())
    assert gaussian_channel_upper_bound(mu, sigma) <= variational + 1e-9


@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 300),
    st.integers(1, 5),
    st.integers(1, 64),
    st.sampled_from([0.0, 1e3, 1e6]),
)
@settings(max_examples=60, deadline=None)
def test_streaming_matches_one_shot(seed: int, n: int, d: int, batch: int, offset: float) -> None:
    mu, sigma = gate_like(seed, n, d)
    mu = mu + offset  # a mean far from 0: the naive sum-of-squares formula would lose digits
    moments = RunningMoments(d)
    for start in range(0, n, batch):
        assert moments.update(mu[start : start + batch], sigma[start : start + batch]) is moments
    assert moments.count == n
    one_shot = gaussian_channel_upper_bound(mu, sigma)
    assert moments.upper_bound() == pytest.approx(one_shot, abs=1e-9)


def test_merging_accumulators_matches_one_shot() -> None:
    mu, sigma = gate_like(7, 500, 4)
    left, right = RunningMoments(4), RunningMoments(4)
    left.update(mu[:123], sigma[:123])
    right.update(mu[123:400], sigma[123:400]).update(mu[400:], sigma[400:])
    merged = left.merge(right).merge(RunningMoments(4))  # an empty one changes nothing
    assert merged.count == 500
    expected = gaussian_channel_upper_bound(mu, sigma)
    assert merged.upper_bound() == pytest.approx(expected, abs=1e-9)


def test_running_moments_validation() -> None:
    with pytest.raises(ValueError, match="no batches"):
        RunningMoments(2).upper_bound()
    with pytest.raises(ValueError, match="3 columns"):
        RunningMoments(3).update(np.zeros((4, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="dimension 2 into 3"):
        RunningMoments(3).merge(RunningMoments(2))
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        RunningMoments(0)


@pytest.mark.parametrize(
    ("mu", "sigma", "message"),
    [
        (np.zeros((3, 2)), np.ones((3, 3)), "same shape"),
        (np.zeros((3, 2)), np.zeros((3, 2)), "sigma must be positive"),
        (np.zeros(3), np.ones(3), "mu must have 2 dimension"),
        (np.full((3, 2), np.nan), np.ones((3, 2)), "finite"),
    ],
)
def test_moment_validation(mu: np.ndarray, sigma: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        gaussian_channel_upper_bound(mu, sigma)
    with pytest.raises(ValueError, match=message):
        pairwise_bracket(mu, sigma)


# --- Kolchinsky-Tracey pairwise bracket --------------------------------------------------


def test_two_separated_points_give_one_bit() -> None:
    bracket = pairwise_bracket(np.array([[-5.0], [5.0]]), np.full((2, 1), 0.05))
    assert isinstance(bracket, PairwiseBracket)
    assert bracket.lower == pytest.approx(1.0, abs=1e-6)
    assert bracket.upper == pytest.approx(1.0, abs=1e-6)
    assert bracket.n == 2 and bracket.saturated


def test_identical_and_offset_means_give_zero() -> None:
    for mu in (np.zeros((30, 3)), np.tile([1e3, -2.0, 0.5], (30, 1))):
        lower, upper, n, saturated = pairwise_bracket(mu, np.full((30, 3), 0.3))
        assert lower == pytest.approx(0.0, abs=1e-9)
        assert upper == pytest.approx(0.0, abs=1e-9)
        assert n == 30 and not saturated


def test_two_points_closed_form() -> None:
    """Two equally likely unit-variance components at distance delta, closed-form distances.

    KL = delta^2 / 2 and Bhattacharyya = delta^2 / 8, so each end is
    1 - log2(1 + exp(-distance)) bits.
    """
    delta = 1.5
    bracket = pairwise_bracket(np.array([[0.0], [delta]]), np.ones((2, 1)))
    assert bracket.upper == pytest.approx(1 - math.log2(1 + math.exp(-(delta**2) / 2)), abs=1e-12)
    assert bracket.lower == pytest.approx(1 - math.log2(1 + math.exp(-(delta**2) / 8)), abs=1e-12)
    assert not bracket.saturated


@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(1, 5), st.floats(1e-3, 1e3))
@settings(max_examples=40, deadline=None)
def test_bracket_is_ordered_scale_invariant_and_below_the_gaussian_bound(
    seed: int, n: int, d: int, scale: float
) -> None:
    mu, sigma = gate_like(seed, n, d)
    lower, upper, used, saturated = pairwise_bracket(mu, sigma, n=64)
    assert used == n
    assert 0.0 <= lower <= upper <= math.log2(n) + 1e-12
    # Both estimators bound the same I(X;T) (X uniform over the n rows): lower <= I <= upper
    # and I <= the moment-matched bound.
    assert lower <= gaussian_channel_upper_bound(mu, sigma) + 1e-9
    scaled = pairwise_bracket(scale * mu, scale * sigma, n=64)
    assert scaled.lower == pytest.approx(lower, abs=1e-9)
    assert scaled.upper == pytest.approx(upper, abs=1e-9)
    assert saturated == (lower >= math.log2(n) - 1e-2)


def test_gaussian_input_lies_inside_the_bracket() -> None:
    """For mu ~ N(0, P I) the n-point mixture's I(X;T) sits near (D/2) log2(1 + P/s^2) < log2 n."""
    n, d, s = 400, 2, 0.5
    rng = np.random.default_rng(5)
    mu = rng.normal(size=(n, d))
    bracket = pairwise_bracket(mu, np.full((n, d), s), n=n)
    reference = d / 2 * math.log2(1 + 1 / s**2)
    assert bracket.lower < reference < bracket.upper
    assert not bracket.saturated


def test_subsampling_is_seeded_and_reports_n() -> None:
    mu, sigma = gate_like(3, 300, 3)
    first = pairwise_bracket(mu, sigma, n=50, seed=1)
    assert first.n == 50
    assert pairwise_bracket(mu, sigma, n=50, seed=1) == first
    assert pairwise_bracket(mu, sigma, n=50, seed=2) != first
    assert pairwise_bracket(mu, sigma, n=1000).n == 300


def test_well_separated_subsample_saturates() -> None:
    mu = np.arange(64, dtype=float)[:, None] * 10.0
    bracket = pairwise_bracket(mu, np.full((64, 1), 0.1), n=16, seed=0)
    assert bracket.n == 16 and bracket.saturated
    assert bracket.lower == pytest.approx(4.0, abs=1e-9)


def test_bracket_parameter_validation() -> None:
    with pytest.raises(ValueError, match="n must be a positive integer"):
        pairwise_bracket(np.zeros((2, 1)), np.ones((2, 1)), n=0)
    with pytest.raises(ValueError, match="saturation_tol"):
        pairwise_bracket(np.zeros((2, 1)), np.ones((2, 1)), saturation_tol=-1.0)


def _bracket_as_first_written(mu: np.ndarray, sigma: np.ndarray) -> tuple[float, float]:
    """The bracket as first implemented: all pairs' per-dimension terms, scipy's logsumexp.

    The faster implementation in innet.info.gaussian must give the same numbers.
    """
    from scipy.special import logsumexp

    sigma2 = np.square(sigma)
    log_sigma2, inverse = np.log(sigma2), 1.0 / sigma2
    delta2 = np.square(mu[:, None, :] - mu[None, :, :])
    kl = 0.5 * np.sum(
        sigma2[:, None, :] * inverse[None, :, :] + delta2 * inverse[None, :, :] - 1.0
        + log_sigma2[None, :, :] - log_sigma2[:, None, :],
        axis=-1,
    )  # fmt: skip
    average = 0.5 * (sigma2[:, None, :] + sigma2[None, :, :])
    bhattacharyya = np.sum(
        delta2 / (8.0 * average) + 0.5 * np.log(average)
        - 0.25 * (log_sigma2[:, None, :] + log_sigma2[None, :, :]),
        axis=-1,
    )  # fmt: skip
    bits = []
    for distances in (bhattacharyya, kl):
        np.fill_diagonal(distances, 0.0)
        distances = np.maximum(distances, 0.0)
        nats = math.log(len(mu)) - float(logsumexp(-distances, axis=1).mean())
        bits.append(min(max(nats / math.log(2.0), 0.0), math.log2(len(mu))))
    return bits[0], max(bits[1], bits[0])


@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 300),
    st.integers(1, 9),
    st.sampled_from([1e-3, 1.0, 1e3]),
    st.sampled_from([0.0, 1e4]),
)
@settings(max_examples=40, deadline=None)
def test_bracket_equals_its_first_implementation(
    seed: int, n: int, d: int, scale: float, offset: float
) -> None:
    """Blocks (several once n * n * d > 2**17), symmetry and the layout change only rounding."""
    mu, sigma = gate_like(seed, n, d)
    mu = scale * mu + offset
    lower, upper = _bracket_as_first_written(mu, sigma)
    bracket = pairwise_bracket(mu, sigma, n=n)
    assert bracket.lower == pytest.approx(lower, abs=1e-12)
    assert bracket.upper == pytest.approx(upper, abs=1e-12)


# --- Monte Carlo estimate of the empirical mixture's information ---------------------------


def _quadrature_information(mu: np.ndarray, sigma: np.ndarray) -> float:
    """I(X;T) of a one-dimensional mixture by numerical integration (an independent oracle).

    ``h(T) - mean_i h(T|x_i)`` with ``h(T) = -int p log2 p`` on a fine grid (scipy's
    Simpson rule), ``p`` the equal-weight mixture of ``N(mu_i, sigma_i^2)`` from scipy.stats.
    """
    from scipy import integrate, stats

    mu, sigma = mu[:, 0], sigma[:, 0]
    grid = np.linspace((mu - 12 * sigma).min(), (mu + 12 * sigma).max(), 50_001)
    density = stats.norm.pdf(grid[None, :], mu[:, None], sigma[:, None]).mean(axis=0)
    integrand = -density * np.log2(np.where(density > 0, density, 1.0))
    marginal = float(integrate.simpson(integrand, x=grid))
    conditional = float(np.mean(0.5 * np.log2(2 * math.pi * math.e * sigma**2)))
    return marginal - conditional


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_monte_carlo_matches_numerical_integration(seed: int) -> None:
    """One-dimensional mixtures of 12 components: the estimate within 4 standard errors."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(scale=2.0, size=(12, 1))
    sigma = rng.uniform(0.3, 1.5, size=(12, 1))
    exact = _quadrature_information(mu, sigma)
    estimate = mixture_information_mc(mu, sigma, samples=4000, seed=seed)
    assert 0.3 < exact < math.log2(12) - 1  # an informative, unsaturated case
    assert abs(estimate.bits - exact) <= 4 * estimate.stderr_bits
    assert estimate.stderr_bits < 0.02 and not estimate.saturated
    lower, upper, _, _ = pairwise_bracket(mu, sigma)
    assert lower <= exact <= upper


def test_gaussian_inputs_where_moment_matching_is_exact() -> None:
    """mu ~ N(0, P I), sigma = s: (D/2) log2(1 + P/s^2) bits, far below log2 n.

    The moment-matched bound is tight here; the Monte Carlo estimate of the n-point
    mixture's information (which tends to the population's as n grows) agrees.
    """
    n, d, s = 1000, 2, 0.6
    rng = np.random.default_rng(11)
    mu = rng.normal(size=(n, d))
    sigma = np.full((n, d), s)
    reference = d / 2 * math.log2(1 + 1 / s**2)
    estimate = mixture_information_mc(mu, sigma, samples=4, seed=3)
    assert estimate.bits == pytest.approx(reference, abs=0.1)
    assert gaussian_channel_upper_bound(mu, sigma) == pytest.approx(reference, abs=0.05)
    lower, upper, _, _ = pairwise_bracket(mu, sigma, n=n)
    assert lower <= estimate.bits <= upper
    assert not estimate.saturated and estimate.ceiling_bits == pytest.approx(math.log2(n))


@pytest.mark.parametrize("k", [2, 4, 8])
def test_well_separated_components_give_log2_k(k: int) -> None:
    """k clusters of identical inputs, far apart: log2 k bits, and the moment bound is loose."""
    rng = np.random.default_rng(k)
    centres = 40.0 * rng.normal(size=(k, 3))
    mu = np.repeat(centres, 16, axis=0)  # 16 indistinguishable inputs per cluster
    sigma = np.full(mu.shape, 0.5)
    estimate = mixture_information_mc(mu, sigma, samples=8)
    lower, upper, n, _ = pairwise_bracket(mu, sigma, n=len(mu))
    assert estimate.bits == pytest.approx(math.log2(k), abs=1e-6)
    assert lower == pytest.approx(math.log2(k), abs=1e-6)
    assert upper == pytest.approx(math.log2(k), abs=1e-6)
    assert not estimate.saturated and n == 16 * k
    assert gaussian_channel_upper_bound(mu, sigma) > math.log2(k) + 5  # not the information


def test_information_above_log2_n_is_flagged_saturated() -> None:
    """A 16-dimensional channel at SNR 10^4 carries ~106 bits; 64 inputs can show 6."""
    n, d = 64, 16
    rng = np.random.default_rng(4)
    mu = rng.normal(size=(n, d))
    sigma = np.full((n, d), 0.01)
    population = d / 2 * math.log2(1 + 1 / 0.01**2)
    assert population > 100
    estimate = mixture_information_mc(mu, sigma)
    bracket = pairwise_bracket(mu, sigma, saturation_tol=SATURATION_MARGIN_BITS)
    assert estimate.saturated and bracket.saturated
    assert estimate.bits <= math.log2(n) + 1e-12 and bracket.upper <= math.log2(n) + 1e-12
    assert estimate.bits == pytest.approx(math.log2(n), abs=1e-6)


@given(st.integers(0, 2**32 - 1), st.integers(2, 120), st.integers(1, 6), st.floats(1e-3, 1e3))
@settings(max_examples=40, deadline=None)
def test_monte_carlo_lies_in_the_bracket_and_is_scale_invariant(
    seed: int, n: int, d: int, scale: float
) -> None:
    """Both estimate the same mixture information: lower - 5 s.e. <= estimate <= upper + 5 s.e."""
    mu, sigma = gate_like(seed, n, d)
    estimate = mixture_information_mc(mu, sigma, samples=32, seed=seed)
    lower, upper, _, _ = pairwise_bracket(mu, sigma, n=n)
    slack = 5 * estimate.stderr_bits + 1e-9
    assert lower - slack <= estimate.bits <= upper + slack
    assert estimate.bits <= math.log2(n) + 1e-12
    scaled = mixture_information_mc(scale * mu, scale * sigma, samples=32, seed=seed)
    assert scaled.bits == pytest.approx(estimate.bits, abs=1e-6)


def test_monte_carlo_is_seeded_and_validates() -> None:
    mu, sigma = gate_like(9, 30, 2)
    first = mixture_information_mc(mu, sigma, samples=4, seed=1)
    assert mixture_information_mc(mu, sigma, samples=4, seed=1) == first
    assert mixture_information_mc(mu, sigma, samples=4, seed=2).bits != first.bits
    assert math.isnan(mixture_information_mc(mu, sigma, samples=1).stderr_bits)
    with pytest.raises(ValueError, match="samples must be a positive integer"):
        mixture_information_mc(mu, sigma, samples=0)
    with pytest.raises(ValueError, match="saturation_margin"):
        mixture_information_mc(mu, sigma, saturation_margin=-1.0)
    with pytest.raises(ValueError, match="same shape"):
        mixture_information_mc(mu, sigma[:, :1])
