"""Deterministic skew workloads: which source sends how many tokens, which experts are hot.

A workload is a function of the step only (no randomness), so every router
and seed sees the same skew. Per step it gives:

- the share of the step's tokens each source sends (:func:`source_shares`);
- a bias added to every router logit (:func:`expert_bias`), the log of the
  popularity of each expert.

Kinds (:data:`WORKLOADS`): ``balanced`` (equal shares, no bias);
``hot_experts`` (Zipf popularity, expert of rank ``r`` gets ``r^-s``);
``hot_source`` (the first source sends ``hot`` times the others' share);
``rotating`` (a Zipf hotspot whose ranking rotates by one expert every
``period`` steps); ``bursts`` (every ``period`` steps, one source, in turn,
sends ``hot`` times the others' share for ``period // 4`` steps).

>>> source_shares("hot_source", 0, 4, hot=5.0).round(3).tolist()
[0.625, 0.125, 0.125, 0.125]
>>> expert_bias("hot_experts", 0, 3, zipf=1.0).round(3).tolist()
[0.0, -0.693, -1.099]
"""

from __future__ import annotations

import numpy as np

from innet.core.registry import Registry

__all__ = ["WORKLOADS", "source_shares", "expert_bias", "split_counts"]

WORKLOADS: Registry[str] = Registry("workload")
"""The workload kinds, each with a one-line description (the functions below branch on them)."""
WORKLOADS.register("balanced", "equal shares, no bias")
WORKLOADS.register("hot_experts", "Zipf popularity of the experts")
WORKLOADS.register("hot_source", "the first source sends hot times the others' share")
WORKLOADS.register("rotating", "a Zipf hotspot rotating by one expert every period steps")
WORKLOADS.register("bursts", "every period steps, one source in turn sends hot times more")


def source_shares(
    kind: str, step: int, sources: int, *, hot: float = 4.0, period: int = 20
) -> np.ndarray:
    """The fraction of the step's tokens each source sends (sums to 1)."""
    weights = np.ones(sources)
    if kind == "hot_source":
        weights[0] = hot
    elif kind == "bursts" and step % period < max(1, period // 4):
        weights[(step // period) % sources] = hot
    return weights / weights.sum()


def expert_bias(
    kind: str, step: int, experts: int, *, zipf: float = 1.2, period: int = 20
) -> np.ndarray:
    """Log-popularity added to every token's router logits for each expert."""
    if kind not in ("hot_experts", "rotating"):
        return np.zeros(experts)
    bias = -zipf * np.log(np.arange(1, experts + 1)) + 0.0  # no -0.0
    if kind == "rotating":
        bias = np.roll(bias, step // period)
    return bias


def split_counts(total: int, shares: np.ndarray) -> np.ndarray:
    """``total`` tokens split by ``shares`` into integers (largest remainders; sums to ``total``).

    >>> split_counts(10, np.array([0.5, 0.25, 0.25])).tolist()
    [5, 3, 2]
    """
    raw = total * shares
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts
