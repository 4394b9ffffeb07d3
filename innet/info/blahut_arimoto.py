"""Channel capacity and rate–distortion by the Blahut–Arimoto algorithm.

A discrete memoryless channel is a matrix whose row ``x`` is the distribution
``p(y|x)`` of what comes out when ``x`` goes in. Its *capacity* is the most
information one use of it can carry: the largest mutual information
``I(X;Y)`` over input distributions ``p(x)``. :func:`channel_capacity` finds
that distribution by alternating maximisation (Blahut 1972, Arimoto 1972)
and stops once a certified bracket ``[lower, upper]`` on the capacity is
narrower than ``tol``: ``lower`` is ``I(X;Y)`` at the returned input
distribution (achievable) and ``upper = max_x D(p(y|x) || p(y))`` (an upper
bound for any input distribution).

*Rate–distortion* is the dual question for compression: how few bits per
symbol ``R(D)`` a source ``p(x)`` can be described with when reproducing
``x`` as ``x̂`` costs ``d(x, x̂)`` and the average cost may be at most ``D``.
The curve is traced by its slope: at slope ``s >= 0`` (bits per unit of
distortion) the optimal *test channel* is ``q(x̂|x) ∝ q(x̂) 2^(-s d(x, x̂))``
(the base-2 exponent convention, so that ``-dR/dD = s`` with ``R`` in bits),
and :func:`rate_distortion` iterates it to a point ``(R, D)`` of the curve,
again with a certified gap: the returned pair is achievable, and the line of
slope ``-s`` through it lies at most ``gap`` bits above the true curve.

>>> round(channel_capacity([[0.89, 0.11], [0.11, 0.89]]).capacity, 6)  # BSC(0.11)
0.500084
>>> point = rate_distortion([0.7, 0.3], [[0, 1], [1, 0]], slope=2.0)  # Bernoulli, Hamming
>>> round(point.rate, 6), round(point.distortion, 6)
(0.159363, 0.2)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from innet.info._validate import (
    as_float_array,
    as_positive_number,
    as_stochastic,
    log_of_base,
)
from innet.info.entropy import _divergences_from_mixture, mixture_mutual_information

__all__ = [
    "ChannelCapacity",
    "RateDistortionPoint",
    "RateDistortionCurve",
    "channel_capacity",
    "rate_distortion",
    "rate_distortion_curve",
    "distortion_lower_bound",
]

_LN2 = math.log(2.0)


@dataclass(frozen=True, eq=False)
class ChannelCapacity:
    """The result of :func:`channel_capacity`; arrays are read-only.

    ``capacity``: ``I(X;Y)`` at ``input_distribution``, in units of ``base``
    (bits by default); a lower bound on the true capacity, and within ``gap``
    of it. ``upper_bound = capacity + gap``: an upper bound on the capacity.
    ``input_distribution``: the optimising ``p(x)``; ``output_distribution``:
    the ``p(y)`` it induces. ``iterations``: Blahut–Arimoto updates made.
    ``converged``: whether ``gap <= tol`` was reached within ``max_iter``.
    """

    capacity: float
    upper_bound: float
    gap: float
    input_distribution: NDArray[np.float64]
    output_distribution: NDArray[np.float64]
    iterations: int
    converged: bool
    base: float = 2

    @property
    def nats(self) -> float:
        """The capacity in nats."""
        return self.capacity * math.log(self.base)

    @property
    def bits(self) -> float:
        """The capacity in bits."""
        return self.capacity * math.log(self.base) / _LN2


@dataclass(frozen=True, eq=False)
class RateDistortionPoint:
    """The result of :func:`rate_distortion`; arrays are read-only.

    ``rate``: ``I(X;X̂)`` of ``test_channel`` in bits; ``distortion``: its
    expected distortion. The pair is achievable, so it lies on or above the
    rate–distortion curve, and ``R(D') + s D' >= rate + s distortion - gap``
    for every ``D'`` (``s = slope``): within ``gap`` bits of optimal along
    the slope. ``test_channel[x, x̂] = q(x̂|x)``; ``output_distribution`` is
    ``q(x̂)``. ``iterations``, ``converged`` as for :class:`ChannelCapacity`.
    """

    rate: float
    distortion: float
    slope: float
    gap: float
    test_channel: NDArray[np.float64]
    output_distribution: NDArray[np.float64]
    iterations: int
    converged: bool

    @property
    def rate_nats(self) -> float:
        """The rate in nats."""
        return self.rate * _LN2


@dataclass(frozen=True, eq=False)
class RateDistortionCurve:
    """Points of a rate–distortion curve, one per slope (in the order given).

    ``rates`` (bits), ``distortions`` and ``slopes`` are read-only arrays;
    ``points`` holds the full :class:`RateDistortionPoint` of each.
    """

    slopes: NDArray[np.float64]
    rates: NDArray[np.float64]
    distortions: NDArray[np.float64]
    points: tuple[RateDistortionPoint, ...]


def channel_capacity(
    channel: ArrayLike, tol: float = 1e-12, max_iter: int = 100_000, base: float = 2
) -> ChannelCapacity:
    """Capacity of the discrete memoryless channel ``channel[x, y] = p(y|x)``.

    Rows must be non-negative and sum to 1 (within 1e-5; they are then
    renormalised), else ``ValueError``. Starting from the uniform input, the
    Blahut–Arimoto update ``p(x) <- p(x) exp(D(p(y|x) || p(y))) / Z`` runs
    until ``upper - lower <= tol`` (in units of ``base``) or ``max_iter``
    updates. Symmetric channels converge at once; others linearly, except when
    several inputs are nearly equivalent (then slowly: check ``converged``).

    >>> bec = channel_capacity([[0.7, 0.3, 0.0], [0.0, 0.3, 0.7]])  # erasure 0.3
    >>> round(bec.capacity, 9), bec.input_distribution.tolist(), bec.converged
    (0.7, [0.5, 0.5], True)
    >>> z = channel_capacity([[1.0, 0.0], [0.5, 0.5]])  # Z-channel
    >>> abs(z.capacity - math.log2(5 / 4)) < 1e-9, round(float(z.input_distribution[1]), 6)
    (True, 0.4)
    >>> round(z.nats, 6) == round(math.log(5 / 4), 6)
    True
    """
    log_base = log_of_base(base)
    tol = as_positive_number(tol, "tol", allow_zero=True)
    max_iter = _as_iterations(max_iter)
    p_y_x = as_stochastic(channel, "channel", ndim=(2,))
    n_inputs = p_y_x.shape[0]
    p_x = np.full(n_inputs, 1.0 / n_inputs)
    iterations = 0
    while True:
        p_y = p_x @ p_y_x
        divergences = _divergences_from_mixture(p_y_x, p_x)
        lower = max(float(p_x @ divergences), 0.0)  # I(X;Y) at p_x
        upper = max(float(divergences.max()), lower)
        converged = upper - lower <= tol * log_base
        if converged or iterations >= max_iter:
            break
        weights = p_x * np.exp(divergences - upper)
        p_x = weights / weights.sum()
        iterations += 1
    return ChannelCapacity(
        capacity=lower / log_base,
        upper_bound=upper / log_base,
        gap=(upper - lower) / log_base,
        input_distribution=_frozen(p_x),
        output_distribution=_frozen(p_y),
        iterations=iterations,
        converged=bool(converged),
        base=base,
    )


def rate_distortion(
    source: ArrayLike,
    distortion: ArrayLike,
    slope: float,
    tol: float = 1e-12,
    max_iter: int = 100_000,
) -> RateDistortionPoint:
    """The point of the rate–distortion curve of ``source`` where ``-dR/dD = slope``.

    ``source``: the distribution ``p(x)`` (length ``n``); ``distortion``: the
    ``n x m`` matrix ``d(x, x̂)`` of finite costs (``m`` reproduction symbols);
    ``slope``: ``s >= 0`` in bits per unit of distortion (``s = 0`` gives rate
    0 at the smallest distortion a constant reproduction achieves; large
    ``s``, low distortion and high rate). The test channel is
    ``q(x̂|x) ∝ q(x̂) 2^(-s d(x, x̂))`` and the update ``q(x̂) <- sum_x p(x)
    q(x̂|x)`` runs from uniform ``q`` until the certified gap is at most
    ``tol`` bits or ``max_iter`` updates. The gap is a worst case over all
    reproduction symbols, including ones the optimum uses with tiny
    probability, and those converge slowly: on fine grids (a discretised
    continuous source) ``rate`` and ``distortion`` are usually accurate long
    before ``gap`` reaches a small ``tol``, so cap ``max_iter`` there.

    For a Bernoulli(p) source with Hamming distortion and ``s`` above
    ``log2((1 - p) / p)`` (p <= 1/2), the point is ``D = 1 / (1 + 2^s)``,
    ``R = H(p) - H(D)``:

    >>> hamming = [[0, 1], [1, 0]]
    >>> point = rate_distortion([0.7, 0.3], hamming, slope=5.0)
    >>> round(point.rate, 6), round(point.distortion, 6), point.converged
    (0.685382, 0.030303, True)
    >>> flat = rate_distortion([0.7, 0.3], hamming, slope=1.0)  # below the critical slope
    >>> round(flat.rate, 6), round(flat.distortion, 6)
    (0.0, 0.3)
    """
    p_x = as_stochastic(source, "source", ndim=(1,))
    cost = as_float_array(distortion, "distortion", ndim=(2,))
    if cost.shape[0] != p_x.shape[0]:
        raise ValueError(
            f"distortion must have one row per source symbol ({p_x.shape[0]}), "
            f"got shape {cost.shape}"
        )
    s = as_positive_number(slope, "slope", allow_zero=True)
    tol = as_positive_number(tol, "tol", allow_zero=True)
    max_iter = _as_iterations(max_iter)
    # 2^(-s d) with each row shifted so its largest entry is 1: q(x̂|x) is unchanged.
    kernel = np.exp2(-s * (cost - cost.min(axis=1, keepdims=True)))
    q = np.full(cost.shape[1], 1.0 / cost.shape[1])
    iterations = 0
    while True:
        partition = kernel @ q  # Z_x = sum_x̂ q(x̂) 2^(-s d(x, x̂)) (shifted)
        ratio = (p_x / partition) @ kernel  # c(x̂); sum_x̂ q(x̂) c(x̂) = 1
        # Blahut's bracket on min(I + s D), in nats: max log c - sum q c log c.
        with np.errstate(divide="ignore"):
            largest = float(np.log(ratio).max())
        gap = max(largest - float((q * ratio) @ _safe_log(ratio)), 0.0)
        converged = gap <= tol * _LN2
        if converged or iterations >= max_iter:
            break
        q = q * ratio
        q /= q.sum()
        iterations += 1
    test_channel = q * kernel / partition[:, None]
    test_channel /= test_channel.sum(axis=1, keepdims=True)
    rate = mixture_mutual_information(test_channel, p_x)
    expected = float(p_x @ (test_channel * cost).sum(axis=1))
    return RateDistortionPoint(
        rate=rate,
        distortion=expected,
        slope=s,
        gap=gap / _LN2,
        test_channel=_frozen(test_channel),
        output_distribution=_frozen(p_x @ test_channel),
        iterations=iterations,
        converged=bool(converged),
    )


def rate_distortion_curve(
    source: ArrayLike,
    distortion: ArrayLike,
    slopes: Sequence[float] | ArrayLike,
    tol: float = 1e-12,
    max_iter: int = 100_000,
) -> RateDistortionCurve:
    """:func:`rate_distortion` at each of ``slopes``, collected into arrays.

    Larger slopes give lower distortion and higher rate.

    >>> curve = rate_distortion_curve([0.5, 0.5], [[0, 1], [1, 0]], [1.0, 2.0, 4.0])
    >>> curve.distortions.round(4).tolist(), bool(all(curve.rates[:-1] < curve.rates[1:]))
    ([0.3333, 0.2, 0.0588], True)
    """
    values = as_float_array(slopes, "slopes", ndim=(1,))
    points = tuple(
        rate_distortion(source, distortion, float(s), tol=tol, max_iter=max_iter) for s in values
    )
    return RateDistortionCurve(
        slopes=_frozen(values),
        rates=_frozen(np.array([p.rate for p in points])),
        distortions=_frozen(np.array([p.distortion for p in points])),
        points=points,
    )


def distortion_lower_bound(curve: RateDistortionCurve, rate: float) -> float:
    """A certified lower bound on the distortion-rate function ``D(R)`` at ``rate`` bits.

    Each point of ``curve`` (slope ``s > 0``, rate ``R_s``, distortion
    ``D_s``, gap ``g_s``) gives a support line of the convex curve:
    ``R(D) + s D >= R_s + s D_s - g_s`` for every ``D``, hence ``D(R) >=
    (R_s + s D_s - g_s - R) / s``. The bound is the largest of these lines
    at ``rate`` (and never below 0); it approaches ``D(R)`` as the slopes
    get denser. No achievable pair ``(R, D)`` (any test channel, e.g. a
    trained gate, on the same source and distortion) lies below it.

    For a Bernoulli(0.3) source with Hamming distortion, ``D(R)`` solves
    ``R = H(0.3) - H(D)``; at ``R = 0.412295`` bits it is 0.1:

    >>> slopes = np.linspace(1.3, 8.0, 400)
    >>> curve = rate_distortion_curve([0.7, 0.3], [[0, 1], [1, 0]], slopes)
    >>> round(distortion_lower_bound(curve, 0.412295), 3)
    0.1
    >>> distortion_lower_bound(curve, 5.0)  # above H(0.3): zero distortion is reachable
    0.0
    """
    r = float(rate)
    if not math.isfinite(r) or r < 0:
        raise ValueError(f"rate must be a finite number >= 0, got {rate!r}")
    bounds = [
        (point.rate + point.slope * point.distortion - point.gap - r) / point.slope
        for point in curve.points
        if point.slope > 0
    ]
    if not bounds:
        raise ValueError("the curve needs at least one point with a positive slope")
    return max(max(bounds), 0.0)


def _as_iterations(max_iter: int) -> int:
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 0:
        raise ValueError(f"max_iter must be a non-negative integer, got {max_iter!r}")
    return int(max_iter)


def _safe_log(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.log(np.where(x > 0, x, 1.0))


def _frozen(array: NDArray[np.float64]) -> NDArray[np.float64]:
    out = np.array(array, dtype=np.float64)
    out.setflags(write=False)
    return out
