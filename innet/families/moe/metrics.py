"""Load-skew metrics of one routing step, at expert or group level.

``loads`` are the tokens each expert (or group of experts) received in a
step. MaxVio is ``(max - mean) / mean`` (0 when balanced), max/mean its ratio
form, CV the coefficient of variation (population standard deviation over
mean), Gini the Gini coefficient (0 balanced, ``1 - 1/n`` when one bin takes
everything), dead the number of bins that received nothing, and p50/p90/p95
percentiles of the loads divided by the mean.

>>> m = skew([4, 4, 4, 4])
>>> m["max_vio"], m["gini"], m["dead"]
(0.0, 0.0, 0)
>>> skew([8, 0, 0, 0])["max_vio"], skew([8, 0, 0, 0])["gini"]
(3.0, 0.75)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["SKEW_METRICS", "STEP_COLUMNS", "skew", "max_vio", "group_loads"]

SKEW_METRICS = ("max_vio", "max_mean", "cv", "gini", "dead", "p50", "p90", "p95")

STEP_COLUMNS = (
    "variant", "seed", "epoch", "step", "layer",
    *(f"expert_{name}" for name in SKEW_METRICS),
    *(f"group_{name}" for name in SKEW_METRICS),
    "cross_group_dispatch_bytes", "dispatch_bytes",
)  # fmt: skip
"""Columns of ``moe_steps.csv`` (one row per training step and layer)."""


def max_vio(loads: Sequence[float] | np.ndarray) -> float:
    """``(max - mean) / mean`` of ``loads`` (0 for no load at all).

    >>> max_vio([3, 1])
    0.5
    """
    loads = np.asarray(loads, dtype=float)
    mean = loads.mean()
    return float((loads.max() - mean) / mean) if mean > 0 else 0.0


def skew(loads: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Every metric of :data:`SKEW_METRICS` for one step's ``loads``."""
    loads = np.asarray(loads, dtype=float)
    mean = loads.mean()
    if mean <= 0:
        return {
            "max_vio": 0.0,
            "max_mean": 1.0,
            "cv": 0.0,
            "gini": 0.0,
            "dead": len(loads),
            "p50": 0.0,
            "p90": 0.0,
            "p95": 0.0,
        }
    ordered = np.sort(loads)
    n = len(loads)
    gini = float((2 * np.arange(1, n + 1) - n - 1) @ ordered / (n * ordered.sum()))
    p50, p90, p95 = np.percentile(loads, [50, 90, 95]) / mean
    return {
        "max_vio": max_vio(loads),
        "max_mean": float(loads.max() / mean),
        "cv": float(loads.std() / mean),
        "gini": gini,
        "dead": int((loads == 0).sum()),
        "p50": float(p50),
        "p90": float(p90),
        "p95": float(p95),
    }


def group_loads(loads: np.ndarray, group_of: np.ndarray, groups: int) -> np.ndarray:
    """Tokens per group from tokens per expert.

    >>> group_loads(np.array([1, 2, 3, 4]), np.array([0, 0, 1, 1]), 2).tolist()
    [3, 7]
    """
    return np.bincount(group_of, weights=loads, minlength=groups).astype(loads.dtype)
