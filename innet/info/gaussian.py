"""Rate estimates for a Gaussian gate ``T = mu(X) + sigma(X) * eps``.

A Gaussian gate sends ``T = mu + sigma * eps`` with ``eps ~ N(0, I)``, where
``mu`` and ``sigma`` (``N x D`` arrays over an evaluation set of ``N`` inputs)
depend on the input. Its rate is the mutual information ``I(X;T)`` between
which input was sent (uniform over the ``N`` rows) and what arrived: the law
of ``T`` is a mixture of ``N`` Gaussians with diagonal covariances, whose
entropy has no closed form. Two quantities go by that name, and the
estimators here say which one they estimate:

- the information of the *empirical mixture* over ``n`` evaluation inputs
  (``X`` uniform over them), which cannot exceed ``log2 n``: the
  Kolchinsky–Tracey bracket and the Monte Carlo estimate below are both of
  this quantity, computed on the same ``n`` rows, so the Monte Carlo value
  lies inside the bracket up to its standard error. Within
  :data:`SATURATION_MARGIN_BITS` of ``log2 n`` they are *saturated*: the
  ``n`` inputs are nearly all told apart, and the gate's information about a
  fresh input may be far larger than ``log2 n``.
- the *population* ``I(Z;T)`` of the gate's channel over the input
  distribution, of which the moment-matched Gaussian value is an upper bound
  (with the evaluation set standing for the population): loose whenever
  ``mu`` is far from Gaussian, e.g. clustered by class.

The estimators:

- :func:`gaussian_channel_upper_bound` replaces the mixture by a single
  Gaussian with the same covariance (the Gaussian has the largest entropy for
  a given covariance), giving
  ``0.5 log2 det(Cov mu + diag E sigma^2) - 0.5 E sum_d log2 sigma_d^2``
  bits. It needs only four running sums, so it can be streamed batch by batch
  (:class:`RunningMoments`); it is tight when ``mu`` is itself Gaussian.
- :func:`pairwise_bracket` applies Kolchinsky & Tracey's pairwise-distance
  bounds for mixture entropies (Entropy 19(7):361, 2017) to a subsample of
  ``n`` points: the Bhattacharyya distance gives a lower bound and the
  Kullback–Leibler divergence an upper bound. Both are at most ``log2 n``
  (a subsample of ``n`` points cannot show more), which is flagged.
- :func:`mixture_information_mc` estimates the same mixture information by
  Monte Carlo: draw ``t ~ p(t|x_i)`` for every one of the ``n`` inputs and
  average ``log2 p(t|x_i) - log2 mean_j p(t|x_j)``. It is unbiased, every
  term is at most ``log2 n``, and it comes with its standard error.

Both are in bits and invariant under rescaling ``(mu, sigma) -> (c mu, c
sigma)``. Arrays are numpy; a gate's torch tensors are converted with
``.detach().cpu().numpy()`` (``sigma = exp(0.5 * logvar)``).

>>> import numpy as np
>>> mu = np.array([[-5.0], [5.0]])
>>> sigma = np.full((2, 1), 0.05)
>>> bracket = pairwise_bracket(mu, sigma)
>>> float(bracket.lower), float(bracket.upper), bracket.n, bracket.saturated
(1.0, 1.0, 2, True)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from innet.info._validate import as_float_array, as_positive_number

__all__ = [
    "SATURATION_MARGIN_BITS",
    "RunningMoments",
    "PairwiseBracket",
    "MixtureInformation",
    "gaussian_channel_upper_bound",
    "pairwise_bracket",
    "mixture_information_mc",
]

_LN2 = math.log(2.0)
_BLOCK_ELEMENTS = 1 << 17
"""How many float64 values one block of pairwise differences may hold (1 MiB: it stays in cache)."""
SATURATION_MARGIN_BITS = 1.0
"""A sample-based estimate within this many bits of ``log2 n`` is *saturated*: on average each
of the ``n`` inputs is confused with fewer than two others, so the estimate says more about
``n`` than about the gate (whose information may exceed ``log2 n``)."""


def gaussian_channel_upper_bound(mu: ArrayLike, sigma: ArrayLike) -> float:
    """Moment-matched Gaussian upper bound on ``I(X;T)``, ``T = mu + sigma * eps``, in bits.

    ``mu``, ``sigma``: ``N x D`` arrays (``sigma > 0``), one row per input of
    the evaluation set, each input equally likely. Returns
    ``0.5 log2 det(C + diag(mean sigma^2)) - 0.5 mean(sum_d log2 sigma_d^2)``
    where ``C`` is the covariance of the rows of ``mu`` (divided by ``N``: the
    inputs *are* the population). It is at least 0, exactly 0 when every row
    is the same, and equal to ``(D/2) log2(1 + P/s^2)`` in the limit of
    ``mu ~ N(0, P I)``, ``sigma = s``.

    >>> import numpy as np
    >>> float(gaussian_channel_upper_bound(np.zeros((5, 3)), np.ones((5, 3))))
    0.0
    >>> mu = np.array([[1.0], [-1.0]])  # variance 1 through noise variance 1: 0.5 log2(2)
    >>> round(gaussian_channel_upper_bound(mu, np.ones((2, 1))), 12)
    0.5
    """
    mean, sigma2 = _check_moments(mu, sigma)
    centred = mean - mean.mean(axis=0)
    covariance = centred.T @ centred / mean.shape[0]
    return _upper_bound_bits(
        covariance, sigma2.mean(axis=0), float(np.log(sigma2).sum(axis=1).mean())
    )


class RunningMoments:
    """Streams :func:`gaussian_channel_upper_bound` over batches of ``(mu, sigma)``.

    Keeps the count, the mean of ``mu`` and its centred sum of outer products
    (merged batch by batch with Chan et al.'s pairwise update, which does not
    lose precision when the mean is large compared with the spread), the sum
    of ``sigma^2`` and the sum of ``sum_d log sigma_d^2``. Memory is ``O(D^2)``
    however many batches are fed. :meth:`merge` combines accumulators fed on
    different workers. The value equals the one-shot function's on the
    concatenated batches up to float rounding.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> mu, sigma = rng.normal(size=(100, 3)), rng.uniform(0.5, 2.0, size=(100, 3))
    >>> moments = RunningMoments(3)
    >>> for start in range(0, 100, 32):
    ...     _ = moments.update(mu[start:start + 32], sigma[start:start + 32])
    >>> moments.count, abs(moments.upper_bound() - gaussian_channel_upper_bound(mu, sigma)) < 1e-9
    (100, True)
    """

    def __init__(self, dim: int) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.dim = int(dim)
        self.count = 0
        self.mean = np.zeros(self.dim)
        self.centred_outer = np.zeros((self.dim, self.dim))
        self.sum_sigma2 = np.zeros(self.dim)
        self.sum_log_sigma2 = 0.0

    def update(self, mu: ArrayLike, sigma: ArrayLike) -> RunningMoments:
        """Add a batch (``B x D`` arrays, as for the one-shot function); returns ``self``."""
        mean, sigma2 = _check_moments(mu, sigma)
        if mean.shape[1] != self.dim:
            raise ValueError(f"mu must have {self.dim} columns, got shape {mean.shape}")
        batch = RunningMoments(self.dim)
        batch.count = mean.shape[0]
        batch.mean = mean.mean(axis=0)
        centred = mean - batch.mean
        batch.centred_outer = centred.T @ centred
        batch.sum_sigma2 = sigma2.sum(axis=0)
        batch.sum_log_sigma2 = float(np.log(sigma2).sum())
        return self.merge(batch)

    def merge(self, other: RunningMoments) -> RunningMoments:
        """Fold the batches seen by ``other`` into ``self``; returns ``self``."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge moments of dimension {other.dim} into {self.dim}")
        total = self.count + other.count
        if other.count == 0:
            return self
        delta = other.mean - self.mean
        self.centred_outer = (
            self.centred_outer
            + other.centred_outer
            + np.outer(delta, delta) * (self.count * other.count / total)
        )
        self.mean = self.mean + delta * (other.count / total)
        self.sum_sigma2 = self.sum_sigma2 + other.sum_sigma2
        self.sum_log_sigma2 += other.sum_log_sigma2
        self.count = total
        return self

    def upper_bound(self) -> float:
        """:func:`gaussian_channel_upper_bound` of everything fed so far, in bits."""
        if self.count == 0:
            raise ValueError("no batches have been fed to RunningMoments")
        return _upper_bound_bits(
            self.centred_outer / self.count,
            self.sum_sigma2 / self.count,
            self.sum_log_sigma2 / self.count,
        )


class PairwiseBracket(NamedTuple):
    """The result of :func:`pairwise_bracket`; unpacks as ``lower, upper, n, saturated``.

    ``lower`` (Bhattacharyya) and ``upper`` (Kullback–Leibler) bracket
    ``I(X;T)`` in bits over the ``n`` subsampled inputs. ``saturated``: the
    lower end reached ``log2 n`` (within the tolerance), i.e. the sampled
    points are all told apart and the estimate is capped by ``n``, not by
    the gate: use more points (the gate's rate may well exceed ``log2 n``).
    """

    lower: float
    upper: float
    n: int
    saturated: bool


def pairwise_bracket(
    mu: ArrayLike,
    sigma: ArrayLike,
    n: int = 512,
    seed: int = 0,
    saturation_tol: float = 1e-2,
) -> PairwiseBracket:
    """Kolchinsky–Tracey bracket on ``I(X;T)`` for ``T = mu + sigma * eps``, in bits.

    ``mu``, ``sigma``: ``N x D`` arrays (``sigma > 0``). When ``N > n``, ``n``
    rows are drawn without replacement with ``numpy.random.default_rng(seed)``;
    otherwise all ``N`` are used (the ``n`` returned is the number used). With
    each of those inputs equally likely and ``p_i = N(mu_i, diag sigma_i^2)``,

    ``I = log n - mean_i log sum_j exp(-d(p_i, p_j))``

    is a lower bound on ``I(X;T)`` for ``d`` the Bhattacharyya distance and an
    upper bound for ``d`` the KL divergence ``D(p_i || p_j)``. Both lie in
    ``[0, log2 n]``; ``saturated`` is set when the lower one is within
    ``saturation_tol`` bits of ``log2 n``. Cost: ``O(n^2 D)`` time, computed in
    blocks of at most 1 MiB.

    >>> import numpy as np
    >>> lower, upper, n, saturated = pairwise_bracket(np.zeros((4, 2)), np.ones((4, 2)))
    >>> float(lower), float(upper), n, saturated
    (0.0, 0.0, 4, False)
    """
    mean, sigma2 = _check_moments(mu, sigma)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    tol = as_positive_number(saturation_tol, "saturation_tol", allow_zero=True)
    if mean.shape[0] > n:
        rows = np.random.default_rng(seed).choice(mean.shape[0], size=int(n), replace=False)
        mean, sigma2 = mean[rows], sigma2[rows]
    kl, bhattacharyya = _pairwise_distances(mean, sigma2)
    count = mean.shape[0]
    ceiling = math.log2(count)
    lower = _pairwise_bits(bhattacharyya, ceiling)
    upper = max(_pairwise_bits(kl, ceiling), lower)  # KL >= Bhattacharyya: only rounding
    return PairwiseBracket(
        lower=lower, upper=upper, n=count, saturated=bool(lower >= ceiling - tol)
    )


class MixtureInformation(NamedTuple):
    """The result of :func:`mixture_information_mc`, in bits.

    ``bits``: the Monte Carlo estimate of ``I(X;T)`` with ``X`` uniform over the
    ``n`` inputs (the empirical mixture's information, at most ``ceiling_bits
    = log2 n``); ``stderr_bits``: its standard error (0 with one draw per
    input: no within-input variance to estimate, see the function);
    ``samples``: draws per input; ``saturated``: ``bits`` is within the margin
    of ``log2 n`` (the gate may carry more than ``n`` inputs can show).
    """

    bits: float
    stderr_bits: float
    n: int
    samples: int
    ceiling_bits: float
    saturated: bool


def mixture_information_mc(
    mu: ArrayLike,
    sigma: ArrayLike,
    samples: int = 16,
    seed: int = 0,
    saturation_margin: float = SATURATION_MARGIN_BITS,
) -> MixtureInformation:
    """Monte Carlo ``I(X;T)`` in bits, ``X`` uniform over the ``n`` rows, ``T = mu + sigma eps``.

    ``mu``, ``sigma``: ``n x D`` arrays (``sigma > 0``), every row used. For
    each row ``i``, ``samples`` draws ``t = mu_i + sigma_i * eps`` (from
    ``numpy.random.default_rng(seed)``) give the terms

    ``log2 p(t|x_i) - log2 (1/n) sum_j p(t|x_j)``,

    whose mean is an unbiased estimate of the mixture's information (the same
    quantity :func:`pairwise_bracket` brackets on the same rows). Each term is
    at most ``log2 n``. Every row is visited, so the estimate is a stratified
    mean: its standard error is ``sqrt(sum_i v_i / samples) / n``, with ``v_i``
    the sample variance of row ``i``'s terms (at least 2 draws per row are
    needed for it; with 1 it is reported as NaN). ``saturated``: the estimate
    is within ``saturation_margin`` bits of ``log2 n``. Cost: ``O(n^2 D
    samples)``, in blocks of at most 1 MiB.

    >>> import numpy as np
    >>> mu, sigma = np.array([[-50.0], [50.0]]), np.ones((2, 1))
    >>> estimate = mixture_information_mc(mu, sigma)
    >>> round(estimate.bits, 9), estimate.n, estimate.saturated
    (1.0, 2, True)
    """
    mean, sigma2 = _check_moments(mu, sigma)
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    margin = as_positive_number(saturation_margin, "saturation_margin", allow_zero=True)
    count, dim = mean.shape
    mean = mean - mean.mean(axis=0)  # centred: the products below lose less to rounding
    noise = np.random.default_rng(seed).standard_normal((count, int(samples), dim))
    draws = (mean[:, None, :] + np.sqrt(sigma2)[:, None, :] * noise).reshape(-1, dim)
    owner = np.repeat(np.arange(count), int(samples))
    terms = np.empty(len(draws))
    block = max(1, _BLOCK_ELEMENTS // count)
    for start in range(0, len(draws), block):
        rows = slice(start, min(start + block, len(draws)))
        log_p = _log_densities(draws[rows], mean, sigma2)  # (b, n), nats, up to a constant
        peak = log_p.max(axis=1, keepdims=True)
        log_mean = np.log(np.exp(log_p - peak).mean(axis=1)) + peak[:, 0]
        own = log_p[np.arange(log_p.shape[0]), owner[rows]]
        terms[rows] = np.minimum(own - log_mean, math.log(count)) / _LN2
    per_row = terms.reshape(count, int(samples))
    stderr = (
        math.sqrt(float(per_row.var(axis=1, ddof=1).sum()) / samples) / count
        if samples > 1
        else math.nan
    )
    bits = float(per_row.mean())
    ceiling = math.log2(count)
    return MixtureInformation(
        bits=bits,
        stderr_bits=stderr,
        n=count,
        samples=int(samples),
        ceiling_bits=ceiling,
        saturated=bool(bits >= ceiling - margin),
    )


def _log_densities(
    draws: NDArray[np.float64], mean: NDArray[np.float64], sigma2: NDArray[np.float64]
) -> NDArray[np.float64]:
    """``ln N(t_a; mean_j, diag sigma2_j) + (D/2) ln 2 pi`` for every draw ``a`` and row ``j``.

    ``-0.5 [sum_d (t_d - m_jd)^2 / s_jd + sum_d ln s_jd]``, the square expanded
    into one product of ``[t^2, t]`` with ``[1 / s, -2 m / s]``. ``numpy.einsum``
    computes it without a threaded BLAS, which crawls on a busy machine.
    """
    inverse = 1.0 / sigma2
    features = np.hstack([np.square(draws), draws])
    weights = np.hstack([inverse, -2.0 * mean * inverse])
    quadratic = np.einsum("ad,jd->aj", features, weights)
    quadratic += (np.square(mean) * inverse).sum(axis=1)[None, :]
    return -0.5 * (np.maximum(quadratic, 0.0) + np.log(sigma2).sum(axis=1)[None, :])


def _pairwise_distances(
    mean: NDArray[np.float64], sigma2: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``D(p_i || p_j)`` and the Bhattacharyya distance ``B(p_i, p_j)`` of every pair, in nats.

    With ``s`` the variances and ``L_i = sum_d ln s_id``:

    - ``D(p_i || p_j) = 0.5 [sum_d (s_id + (m_id - m_jd)^2) / s_jd - D + L_j - L_i]``;
    - ``B(p_i, p_j) = sum_d (m_id - m_jd)^2 / (8 a_d) + 0.5 sum_d ln a_d - 0.25 (L_i + L_j)``,
      ``a = (s_i + s_j) / 2``.

    The squared differences and ``a`` are symmetric in ``(i, j)``: each block of
    rows is computed against the columns from its first row on only, and gives
    both ``(i, j)`` and ``(j, i)``. Arrays are laid out dimension first, so the
    sums over ``d`` add whole planes, and blocks are small enough to stay in cache.
    """
    count, dim = mean.shape
    log_det = np.log(sigma2).sum(axis=1)
    means = np.ascontiguousarray(mean.T)  # (D, n)
    variances = np.ascontiguousarray(sigma2.T)
    inverse = 1.0 / variances
    kl = np.empty((count, count))
    bhattacharyya = np.empty((count, count))
    block = max(1, _BLOCK_ELEMENTS // (count * dim))
    for start in range(0, count, block):
        rows, cols = slice(start, min(start + block, count)), slice(start, count)
        delta2 = np.square(means[:, rows, None] - means[:, None, cols])  # (D, b, n - start)
        forward = delta2 + variances[:, rows, None]
        forward *= inverse[:, None, cols]
        kl[rows, cols] = 0.5 * (
            forward.sum(axis=0) - dim + (log_det[None, cols] - log_det[rows, None])
        )
        backward = np.add(delta2, variances[:, None, cols], out=forward)
        backward *= inverse[:, rows, None]
        kl[cols, rows] = (
            0.5 * (backward.sum(axis=0) - dim + (log_det[rows, None] - log_det[None, cols])).T
        )
        average = variances[:, rows, None] + variances[:, None, cols]
        average *= 0.5
        log_average = np.log(average).sum(axis=0)
        ratio = np.divide(delta2, average, out=delta2)
        distance = (
            0.125 * ratio.sum(axis=0)
            + 0.5 * log_average
            - 0.25 * (log_det[rows, None] + log_det[None, cols])
        )
        bhattacharyya[rows, cols] = distance
        bhattacharyya[cols, rows] = distance.T
    return kl, bhattacharyya


def _pairwise_bits(distances: NDArray[np.float64], ceiling: float) -> float:
    """``log2 n - mean_i log2 sum_j exp(-d_ij)``, clipped into ``[0, log2 n]``.

    The diagonal is 0 exactly in theory; it is set to 0 so that rounding in
    the distance formulas cannot move the result outside its range. Every row's
    largest ``-d_ij`` is then 0, so its log-sum-exp is computed as
    ``scipy.special.logsumexp`` computes it (the ``m`` terms equal to the
    maximum apart: ``log1p(sum of the others' exp / m) + log m``), without its
    general-purpose overhead.
    """
    np.fill_diagonal(distances, 0.0)
    distances = np.maximum(distances, 0.0)  # divergences are >= 0; remove rounding error
    at_max = distances == 0.0
    terms = np.exp(-distances)
    terms[at_max] = 0.0
    count = at_max.sum(axis=1).astype(np.float64)
    log_sums = np.log1p(terms.sum(axis=1) / count) + np.log(count)
    nats = math.log(distances.shape[0]) - float(log_sums.mean())
    return min(max(nats / _LN2, 0.0), ceiling)


def _check_moments(
    mu: ArrayLike, sigma: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``mu`` and ``sigma^2`` as ``N x D`` float64 arrays, checked."""
    mean = as_float_array(mu, "mu", ndim=(2,))
    scale = as_float_array(sigma, "sigma", ndim=(2,))
    if mean.shape != scale.shape:
        raise ValueError(
            f"mu and sigma must have the same shape, got {mean.shape} and {scale.shape}"
        )
    variance = np.square(scale)
    if np.any(variance <= 0):
        raise ValueError("sigma must be positive everywhere (it is a standard deviation)")
    return mean, variance


def _upper_bound_bits(
    covariance: NDArray[np.float64], mean_sigma2: NDArray[np.float64], mean_log_det: float
) -> float:
    """``0.5 (log det(covariance + diag mean_sigma2) - mean_log_det) / ln 2``, at least 0.

    The matrix is positive definite (``mean_sigma2 > 0``), so its log
    determinant comes from a Cholesky factor. The exact value is ``>= 0``
    (log det is concave, and Cov adds a positive semi-definite term); a tiny
    negative from rounding is returned as 0.
    """
    total = covariance + np.diag(mean_sigma2)
    factor = np.linalg.cholesky(0.5 * (total + total.T))
    log_det = 2.0 * float(np.log(np.diag(factor)).sum())
    return max(0.5 * (log_det - mean_log_det) / _LN2, 0.0)
