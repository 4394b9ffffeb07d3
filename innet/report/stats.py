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
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats as _scipy_stats

__all__ = [
    "CONFIDENCE",
    "PairedDifference",
    "paired_difference",
    "t_interval",
    "Equivalence",
    "equivalence_test",
    "mean_ratio",
    "first_reach",
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
    a: Sequence[float | None], b: Sequence[float | None], confidence: float = CONFIDENCE
) -> PairedDifference:
    """Mean of ``b[k] - a[k]`` over the pairs where both are known, with its t interval.

    ``a`` and ``b`` hold one value per seed, in the same seed order. A pair
    with a missing value (None or NaN) is left out (its difference is None).
    The difference of two integers (bytes) is an integer.

    >>> paired_difference([1, 2, 3], [2, 4, 6]).differences  # integers stay integers
    (1, 2, 3)
    >>> paired_difference([1.0, None], [2.0, 5.0]).n
    1
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
    return PairedDifference(
        len(known), mean, std, t_interval(known, confidence), differences, confidence
    )


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


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
