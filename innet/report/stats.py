"""Statistics over paired seeds: mean paired differences, t intervals, ratios, first crossings.

Seeds are *paired* across the variants of a run: seed ``k`` gives every
variant the same data split, and each node draws its initial weights from a
stream seeded by ``(k, node id)``, so a node whose module has the same shape in
two variants starts from the same weights in both. Two variants are therefore
compared seed by seed: with ``a_k`` and ``b_k`` the values of seed ``k``,

- the **paired differences** are ``d_k = b_k - a_k``;
- their **mean** is ``mean(d)`` (equal to ``mean(b) - mean(a)``);
- their **95% confidence interval** is the Student t interval with ``n - 1``
  degrees of freedom: ``mean(d) ± t_{0.975, n-1} · s_d / sqrt(n)``, with
  ``s_d`` the sample standard deviation (ddof = 1) of the ``d_k``. It assumes
  the differences are roughly normal; with 3 to 5 seeds it is wide, as it
  should be.

With one seed there is no standard deviation and no interval: both are
``None`` (``null`` in ``summary.json``, ``n/a`` in the report).

**Equivalence** within a declared margin ``δ`` is tested by two one-sided t
tests (TOST, Schuirmann 1987): ``H0: mean(d) <= -δ`` and ``H0: mean(d) >= δ``,
each at level ``α = 0.05``; the two are equivalent when both are rejected,
that is when the ``1 - 2α`` (90%) t interval lies inside ``(-δ, δ)``. The
p-value is the larger of the two one-sided ones. A difference whose 95%
interval excludes 0 can still be equivalent (small but real), and one whose
interval contains 0 need not be (too few seeds to tell).

>>> d = paired_difference([0.80, 0.90, 0.85], [0.82, 0.93, 0.85])
>>> d.n, round(d.mean, 6), round(d.std, 6)
(3, 0.016667, 0.015275)
>>> [round(end, 6) for end in d.interval]  # 0.016667 ± 4.302653 × 0.015275 / sqrt(3)
[-0.021279, 0.054612]
>>> one = paired_difference([0.8], [0.9])
>>> round(one.mean, 6), one.std, one.interval
(0.1, None, None)
>>> mean_ratio([2.0, 4.0], [1.0, 1.0])  # (1/2 + 1/4) / 2
0.375
>>> first_reach([0.1, 0.2, 0.3], [0.5, 0.8, 0.9], target=0.75)
0.2
>>> test = equivalence_test([0.01, -0.005, 0.0, 0.004], margin=0.02)
>>> test.verdict, round(test.p_value, 4)
('equivalent', 0.0056)

**Ratios and percentage changes** (``b`` against ``a``: bytes, seconds) are
taken on the log scale (:func:`paired_log_ratio`): the geometric-mean ratio
``exp(mean_k log(b_k / a_k))`` with the t interval of the ``log(b_k / a_k)``
exponentiated, so a ratio's interval is positive and a change's
(``ratio - 1``) never falls below -100%.

**Bounded quantities** (accuracy, purity, fractions) get the t interval of
their mean clipped to their range (:func:`bounded_mean`): it never claims a
mean above 1 or below 0, and covers the true mean as often as the t interval
does.

**Statistics without a closed form** get a paired percentile bootstrap
interval (:func:`paired_bootstrap`, after :func:`scipy.stats.bootstrap`).

>>> r = paired_log_ratio([100.0, 200.0], [60.0, 100.0])  # b/a: 0.6, 0.5
>>> round(r.ratio, 4), round(r.change, 4), round(r.reduction, 4)  # sqrt(0.6 · 0.5)
(0.5477, -0.4523, 0.4523)
>>> [round(end, 4) for end in r.change_interval]  # exp of the t interval of the logs, - 1
[-0.828, 0.7442]
>>> m = bounded_mean([0.97, 0.99, 1.0])
>>> round(m.mean, 4), [round(end, 4) for end in m.interval]  # the t interval: [0.9487, 1.0246]
(0.9867, [0.9487, 1.0])
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats as _scipy_stats

if TYPE_CHECKING:
    from typing_extensions import TypeIs

__all__ = [
    "CONFIDENCE",
    "PairedDifference",
    "paired_difference",
    "t_interval",
    "Equivalence",
    "equivalence_test",
    "mean_ratio",
    "first_reach",
    "PairedRatio",
    "paired_log_ratio",
    "BoundedMean",
    "bounded_mean",
    "Bootstrap",
    "paired_bootstrap",
    "UNIT_INTERVAL_METRICS",
    "NONNEGATIVE_SUFFIXES",
    "value_range",
    "mean_interval",
]

CONFIDENCE = 0.95
"""Confidence level of every interval innet reports."""


@dataclass(frozen=True)
class PairedDifference:
    """The mean of paired differences ``b - a`` over seeds, with its t interval.

    ``std`` and ``interval`` are None with fewer than two complete pairs;
    ``mean`` is None with none.
    """

    n: int
    mean: float | None
    std: float | None
    interval: tuple[float, float] | None
    differences: tuple[int | float | None, ...]
    confidence: float = CONFIDENCE

    @property
    def varies(self) -> bool:
        """Whether the differences are not all the same (their std is above 0)."""
        return bool(self.std)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: ``mean, std, n, ci_low, ci_high, confidence, interval, per_seed``.

        ``interval`` names the method (``"t"``: Student t, ``n - 1`` degrees of freedom).
        """
        low, high = self.interval if self.interval is not None else (None, None)
        return {
            "mean": self.mean,
            "std": self.std,
            "n": self.n,
            "ci_low": low,
            "ci_high": high,
            "confidence": self.confidence,
            "interval": "t",
            "per_seed": list(self.differences),
        }


def paired_difference(
    a: Sequence[float | None],
    b: Sequence[float | None],
    confidence: float = CONFIDENCE,
    *,
    bounds: tuple[float, float] | None = None,
) -> PairedDifference:
    """Mean of ``b[k] - a[k]`` over the pairs where both are known, with its t interval.

    ``a`` and ``b`` hold one value per seed, in the same seed order. A pair
    with a missing value (None or NaN) is left out (its difference is None).
    The difference of two integers (bytes) is an integer.

    ``bounds`` is the range ``[lower, upper]`` of the values themselves, for a
    bounded quantity (``(0, 1)`` for accuracy): the true mean difference then
    lies in ``[lower - upper, upper - lower]``, and the interval is clipped to
    it, which keeps its coverage (as in :func:`bounded_mean`).

    >>> paired_difference([1, 2, 3], [2, 4, 6]).differences  # integers stay integers
    (1, 2, 3)
    >>> paired_difference([1.0, None], [2.0, 5.0]).n
    1
    >>> paired_difference([0.1, 0.5], [0.9, 0.95]).interval[0] < -1  # t: 0.625 ± 12.706 · 0.247
    True
    >>> paired_difference([0.1, 0.5], [0.9, 0.95], bounds=(0, 1)).interval[0]
    -1.0
    """
    if len(a) != len(b):
        raise ValueError(f"paired values need the same length ({len(a)} and {len(b)})")
    differences = tuple(
        None if _missing(x) or _missing(y) else _minus(y, x) for x, y in zip(a, b, strict=True)
    )
    known = [value for value in differences if value is not None]
    if not known:
        return PairedDifference(0, None, None, None, differences, confidence)
    mean = statistics.fmean(known)
    std = statistics.stdev(known) if len(known) > 1 else None
    interval = t_interval(known, confidence)
    if interval is not None and bounds is not None:
        widest = float(bounds[1] - bounds[0])
        interval = (max(-widest, interval[0]), min(widest, interval[1]))
    return PairedDifference(len(known), mean, std, interval, differences, confidence)


def t_interval(
    values: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """The Student t confidence interval of the mean of ``values`` (None for fewer than 2).

    ``mean ± t_{(1 + confidence) / 2, n - 1} · s / sqrt(n)``, ``s`` the sample
    standard deviation (ddof = 1).

    >>> [round(end, 6) for end in t_interval([1.0, 3.0])]  # 2 ± 12.706205 × sqrt(2) / sqrt(2)
    [-10.706205, 14.706205]
    >>> t_interval([5.0, 5.0, 5.0])
    (5.0, 5.0)
    >>> t_interval([1.0]) is None
    True
    """
    n = len(values)
    if n < 2:
        return None
    mean = statistics.fmean(values)
    half = float(_scipy_stats.t.ppf((1 + confidence) / 2, n - 1)) * (
        statistics.stdev(values) / math.sqrt(n)
    )
    return (mean - half, mean + half)


@dataclass(frozen=True)
class PairedRatio:
    """The geometric-mean ratio ``b / a`` over paired seeds, with its 95% interval.

    ``ratio`` is ``exp(mean_k log(b_k / a_k))`` (None with no usable pair);
    ``interval`` is the Student t interval of the ``log(b_k / a_k)``,
    exponentiated (None with fewer than two usable pairs). ``excluded``
    counts the pairs left out because a value was 0 or negative (no log);
    pairs with a missing value are left out too and not counted there.
    ``per_seed`` holds ``b_k / a_k`` (None where left out).
    """

    n: int
    ratio: float | None
    interval: tuple[float, float] | None
    per_seed: tuple[float | None, ...]
    excluded: int = 0
    confidence: float = CONFIDENCE

    @property
    def change(self) -> float | None:
        """``ratio - 1``: the relative change of ``b`` against ``a`` (-0.25 is -25%)."""
        return None if self.ratio is None else self.ratio - 1

    @property
    def change_interval(self) -> tuple[float, float] | None:
        """``interval - 1``: never below -1 (-100%), since the ratio's interval is positive."""
        return None if self.interval is None else (self.interval[0] - 1, self.interval[1] - 1)

    @property
    def reduction(self) -> float | None:
        """``1 - ratio``: the fraction of ``a`` that ``b`` saves (never above 1)."""
        return None if self.ratio is None else 1 - self.ratio

    @property
    def reduction_interval(self) -> tuple[float, float] | None:
        """``1 - interval`` (ends swapped): never above 1 (100%)."""
        return None if self.interval is None else (1 - self.interval[1], 1 - self.interval[0])

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: ratio, change and reduction, each with ``_ci_low``/``_ci_high``."""
        out: dict[str, Any] = {"n": self.n, "excluded": self.excluded}
        for name, value, interval in (
            ("ratio", self.ratio, self.interval),
            ("change", self.change, self.change_interval),
            ("reduction", self.reduction, self.reduction_interval),
        ):
            low, high = interval if interval is not None else (None, None)
            out |= {name: value, f"{name}_ci_low": low, f"{name}_ci_high": high}
        return out | {
            "confidence": self.confidence,
            "interval": "t on log ratio",
            "per_seed": list(self.per_seed),
        }


def paired_log_ratio(
    a: Sequence[float | None], b: Sequence[float | None], confidence: float = CONFIDENCE
) -> PairedRatio:
    """Geometric-mean ratio ``b / a`` over seeds paired by position, with its log-scale t interval.

    A pair with a missing value (None, NaN) is left out; a pair with a value
    ``<= 0`` is left out too and counted in ``excluded`` (a ratio to or of 0
    has no logarithm: the caller says so rather than this function guessing).

    >>> r = paired_log_ratio([1.0, 1.0, 1.0], [0.5, 1.0, 2.0])
    >>> r.ratio  # exp(mean(log 0.5, 0, log 2))
    1.0
    >>> [round(end, 4) for end in r.interval]  # exp(0 ± 4.302653 · log(2) / sqrt(3)), s = log 2
    [0.1787, 5.595]
    >>> [round(end, 4) for end in r.change_interval]  # never below -1
    [-0.8213, 4.595]
    >>> paired_log_ratio([0.0, 2.0, None], [1.0, 1.0, 1.0]).excluded
    1
    """
    if len(a) != len(b):
        raise ValueError(f"paired values need the same length ({len(a)} and {len(b)})")
    per_seed: list[float | None] = []
    logs: list[float] = []
    excluded = 0
    for x, y in zip(a, b, strict=True):
        if _missing(x) or _missing(y):
            per_seed.append(None)
        elif float(x) <= 0 or float(y) <= 0:
            per_seed.append(None)
            excluded += 1
        else:
            per_seed.append(float(y) / float(x))
            logs.append(math.log(float(y)) - math.log(float(x)))
    ratio = math.exp(statistics.fmean(logs)) if logs else None
    log_interval = t_interval(logs, confidence)
    interval = None
    if log_interval is not None and ratio is not None:  # the point inside despite rounding
        low, high = math.exp(log_interval[0]), math.exp(log_interval[1])
        interval = (min(low, ratio), max(high, ratio))
    return PairedRatio(len(logs), ratio, interval, tuple(per_seed), excluded, confidence)


@dataclass(frozen=True)
class BoundedMean:
    """The mean of a bounded quantity over seeds, with a 95% interval inside its range.

    ``std`` and ``interval`` are None with fewer than two values; ``mean`` is
    None with none.
    """

    n: int
    mean: float | None
    std: float | None
    interval: tuple[float, float] | None
    lower: float = 0.0
    upper: float = 1.0
    confidence: float = CONFIDENCE

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: ``mean, std, n, ci_low, ci_high, confidence, interval, lower, upper``."""
        low, high = self.interval if self.interval is not None else (None, None)
        return {
            "mean": self.mean,
            "std": self.std,
            "n": self.n,
            "ci_low": low,
            "ci_high": high,
            "confidence": self.confidence,
            "interval": "t clipped to range",
            "lower": self.lower,
            "upper": self.upper,
        }


def bounded_mean(
    values: Sequence[float | None],
    lower: float = 0.0,
    upper: float = 1.0,
    confidence: float = CONFIDENCE,
) -> BoundedMean:
    """Mean of ``values`` in ``[lower, upper]`` with the t interval clipped to that range.

    Method: the Student t interval of the mean, intersected with
    ``[lower, upper]``. The true mean of a quantity in ``[lower, upper]`` lies
    in that range, so the clipped interval contains it exactly when the t
    interval does: clipping keeps the coverage and drops only values that
    cannot be true. The sample mean lies in both, so the point estimate is
    always inside its interval. A t interval on the logit scale was not
    chosen: it is an interval for a back-transformed logit mean, not for the
    mean, and it breaks on values at the bounds (accuracy 1.0), which would
    need an arbitrary correction. Missing values (None, NaN) are left out; a
    value outside the range is an error.

    >>> m = bounded_mean([0.8, 0.9, 1.0])
    >>> round(m.mean, 6), [round(end, 6) for end in m.interval]  # t: 0.9 ± 0.248414
    (0.9, [0.651586, 1.0])
    >>> bounded_mean([0.5]).interval is None
    True
    """
    if not lower < upper:
        raise ValueError(f"bounded_mean needs lower < upper (got {lower} and {upper})")
    known = [float(value) for value in values if not _missing(value)]
    outside = [value for value in known if not lower <= value <= upper]
    if outside:
        raise ValueError(f"value {outside[0]} lies outside [{lower}, {upper}]")
    if not known:
        return BoundedMean(0, None, None, None, lower, upper, confidence)
    mean = statistics.fmean(known)
    std = statistics.stdev(known) if len(known) > 1 else None
    interval = t_interval(known, confidence)
    if interval is not None:
        interval = (max(lower, min(interval[0], mean)), min(upper, max(interval[1], mean)))
    return BoundedMean(len(known), mean, std, interval, lower, upper, confidence)


UNIT_INTERVAL_METRICS = ("accuracy", "purity")
"""Metrics that are fractions: their means and intervals stay inside ``[0, 1]``."""

NONNEGATIVE_SUFFIXES = ("_bits", "_bytes", "_s", "loss", "_se", "max_vio_expert", "max_vio_group")
"""Name endings of metrics that cannot be negative (rates in bits, bytes, seconds, losses
that are cross-entropies or their standard errors, load violations): intervals stay ``>= 0``."""


def value_range(name: str) -> tuple[float, float] | None:
    """The range a metric called ``name`` lies in by definition; None if it has none here.

    Fractions (:data:`UNIT_INTERVAL_METRICS`, or a name ending in ``_accuracy``
    or ``_fraction``) lie in ``[0, 1]``; counts, durations, rates and losses
    (:data:`NONNEGATIVE_SUFFIXES`) in ``[0, inf)``.

    >>> value_range("accuracy"), value_range("train_exchange_bytes"), value_range("beta")
    ((0.0, 1.0), (0.0, inf), None)
    """
    if name in UNIT_INTERVAL_METRICS or name.endswith(("_accuracy", "_fraction")):
        return (0.0, 1.0)
    if name.endswith(NONNEGATIVE_SUFFIXES):
        return (0.0, math.inf)
    return None


def mean_interval(
    values: Sequence[float | None], name: str | None = None, confidence: float = CONFIDENCE
) -> tuple[float | None, tuple[float, float] | None]:
    """``(mean, 95% interval)`` of ``values``, clipped to the range of the metric ``name``.

    The t interval (:func:`t_interval`), or for a metric with a range
    (:func:`value_range`) the :func:`bounded_mean` interval. A value outside
    that range (the range does not hold for this metric) is a ``ValueError``.

    >>> mean, interval = mean_interval([0.8, 0.9, 1.0], "accuracy")
    >>> round(mean, 6), [round(end, 6) for end in interval]
    (0.9, [0.651586, 1.0])
    >>> mean_interval([0.8, 0.9, 1.0], "beta")[1][1] > 1
    True
    """
    known = [float(value) for value in values if not _missing(value)]
    bounds = value_range(name) if name is not None else None
    if bounds is not None:
        bounded = bounded_mean(known, *bounds, confidence=confidence)
        return bounded.mean, bounded.interval
    mean = statistics.fmean(known) if known else None
    return mean, t_interval(known, confidence)


@dataclass(frozen=True)
class Bootstrap:
    """A statistic of paired seeds with its paired percentile bootstrap interval.

    ``estimate`` is the statistic of the pairs as observed; ``interval`` the
    percentile interval of ``n_resamples`` resamples of whole pairs (None
    with fewer than two pairs). ``widened`` is True where the percentile
    interval missed the estimate (a skewed statistic) and was widened to it.
    """

    n: int
    estimate: float | None
    interval: tuple[float, float] | None
    n_resamples: int
    widened: bool = False
    confidence: float = CONFIDENCE

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: ``estimate, n, ci_low, ci_high, confidence, interval, n_resamples``."""
        low, high = self.interval if self.interval is not None else (None, None)
        return {
            "estimate": self.estimate,
            "n": self.n,
            "ci_low": low,
            "ci_high": high,
            "confidence": self.confidence,
            "interval": "paired percentile bootstrap",
            "n_resamples": self.n_resamples,
            "widened": self.widened,
        }


def paired_bootstrap(
    a: Sequence[float | None],
    b: Sequence[float | None],
    statistic: Callable[[Sequence[float], Sequence[float]], float],
    n_resamples: int = 9999,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Bootstrap:
    """``statistic(a, b)`` with a paired percentile bootstrap interval (seeds resampled as pairs).

    For statistics without a closed-form interval (a median, a ratio of
    means). Pairs with a missing value are left out. ``statistic`` takes two
    equally long sequences (the resampled ``a`` and ``b``) and returns a float.
    Deterministic for a given ``seed``.

    >>> ratio_of_means = lambda x, y: sum(y) / sum(x)
    >>> boot = paired_bootstrap([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0], ratio_of_means)
    >>> boot.estimate, boot.interval  # b = 2a for every seed: every resample gives 2
    (2.0, (2.0, 2.0))
    """
    if len(a) != len(b):
        raise ValueError(f"paired values need the same length ({len(a)} and {len(b)})")
    pairs = [
        (float(x), float(y)) for x, y in zip(a, b, strict=True) if not (_missing(x) or _missing(y))
    ]
    if not pairs:
        return Bootstrap(0, None, None, n_resamples, False, confidence)
    xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
    estimate = float(statistic(xs, ys))
    if len(pairs) < 2:
        return Bootstrap(1, estimate, None, n_resamples, False, confidence)
    result = _scipy_stats.bootstrap(
        (xs, ys),
        lambda x, y: float(statistic(list(x), list(y))),
        paired=True,
        vectorized=False,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    low = float(result.confidence_interval.low)
    high = float(result.confidence_interval.high)
    widened = not low <= estimate <= high
    interval = (min(low, estimate), max(high, estimate))
    return Bootstrap(len(pairs), estimate, interval, n_resamples, widened, confidence)


EQUIVALENCE_ALPHA = 0.05
"""Level of each one-sided test of the equivalence test (TOST)."""


@dataclass(frozen=True)
class Equivalence:
    """A TOST equivalence test of paired differences against ``±margin``.

    ``verdict``: ``equivalent`` (both one-sided nulls rejected), ``not shown
    equivalent``, or None with fewer than two differences. ``interval``: the
    ``1 - 2 alpha`` t interval the verdict amounts to.
    """

    margin: float
    alpha: float
    n: int
    p_value: float | None
    interval: tuple[float, float] | None
    verdict: str | None

    def to_json(self) -> dict[str, Any]:
        low, high = self.interval if self.interval is not None else (None, None)
        return {
            "test": "TOST",
            "margin": self.margin,
            "alpha": self.alpha,
            "n": self.n,
            "p_value": self.p_value,
            "ci_low": low,
            "ci_high": high,
            "confidence": 1 - 2 * self.alpha,
            "verdict": self.verdict,
        }


def equivalence_test(
    differences: Sequence[float | None], margin: float, alpha: float = EQUIVALENCE_ALPHA
) -> Equivalence:
    """TOST of the mean of ``differences`` (missing ones left out) against ``±margin``.

    >>> equivalence_test([0.05, 0.06, 0.04], margin=0.02).verdict  # clearly outside
    'not shown equivalent'
    >>> equivalence_test([0.01], margin=0.02).verdict is None
    True
    """
    known = [float(value) for value in differences if not _missing(value)]
    n = len(known)
    if n < 2:
        return Equivalence(margin, alpha, n, None, None, None)
    mean, std = statistics.fmean(known), statistics.stdev(known)
    if std == 0:
        p_value = 0.0 if abs(mean) < margin else 1.0
    else:
        error = std / math.sqrt(n)
        p_lower = float(_scipy_stats.t.sf((mean + margin) / error, n - 1))  # H0: mean <= -margin
        p_upper = float(_scipy_stats.t.cdf((mean - margin) / error, n - 1))  # H0: mean >= margin
        p_value = max(p_lower, p_upper)
    verdict = "equivalent" if p_value < alpha else "not shown equivalent"
    return Equivalence(margin, alpha, n, p_value, t_interval(known, 1 - 2 * alpha), verdict)


def mean_ratio(a: Sequence[float | None], b: Sequence[float | None]) -> float | None:
    """The mean over seeds of ``b[k] / a[k]``; None if a value is missing or some ``a[k]`` is 0.

    >>> mean_ratio([1.0, 0.0], [1.0, 1.0]) is None
    True
    """
    if len(a) != len(b) or not a:
        return None
    ratios = []
    for x, y in zip(a, b, strict=True):
        if _missing(x) or _missing(y) or float(x) == 0:
            return None
        ratios.append(float(y) / float(x))
    return statistics.fmean(ratios)


def first_reach(
    times: Sequence[float], values: Sequence[float | None], target: float
) -> float | None:
    """The first of ``times`` at which ``values`` reaches ``target`` (``>=``); None if never.

    >>> first_reach([1.0, 2.0], [0.1, 0.2], target=0.5) is None
    True
    """
    for time, value in zip(times, values, strict=True):
        if not _missing(value) and float(value) >= target:
            return float(time)
    return None


def _minus(y: Any, x: Any) -> int | float:
    if isinstance(x, int) and isinstance(y, int):
        return int(y) - int(x)
    return float(y) - float(x)


def _missing(value: Any) -> TypeIs[None]:
    """None or NaN (typed as None: what is not missing is a number)."""
    return value is None or (isinstance(value, float) and math.isnan(value))
