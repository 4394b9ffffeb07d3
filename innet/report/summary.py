"""The headline numbers of a run, as one JSON-ready dictionary.

For each variant the summary gives the routing, the epochs, the training
exchange (bytes actually sent, summed from the exchange records), the
simulated network time per epoch and in all, the number of links that carried
training traffic and the training bytes sent again over lossy links
(``retransmitted_bytes``, mean per seed; 0 without losses). For each
comparison ``(a, b)`` it gives ``exchange_reduction = 1 - exchange(b) /
exchange(a)``. The scenario's family adds its own fields to both (the ``inl``
family: accuracy, latent rate and their comparisons; see
:mod:`innet.families.inl.report`).

Time, per variant: ``sim_time_s_per_seed`` (the simulated training time of
each seed) and the *time to target*: with the family's primary metric (the
``inl`` family: accuracy; higher is better), the target is
:data:`TARGET_FRACTION` (90%) of the best final mean over seeds among the
variants (``time_to_target`` at the top level says which). The metric is
measured after each epoch, so a variant's time to target is the cumulative
simulated training time at the end of the first epoch whose metric, mean over
seeds, reaches the target (``time_to_target_s``; the cumulative time is also
the mean over seeds), per seed in ``time_to_target_s_per_seed``; ``None``
where it is never reached.

Seeds are paired across variants (:mod:`innet.report.stats`): per
comparison, ``sim_time_ratio`` is the geometric mean over seeds of
``time(b) / time(a)``, with its 95% interval (the t interval of the log
ratios, exponentiated: never below 0, so the change it implies never below
-100%) in ``sim_time_ratio_ci_low`` and ``sim_time_ratio_ci_high``;
``sim_time_log_ratio`` and ``train_exchange_log_ratio`` hold the whole
:meth:`~innet.report.stats.PairedRatio.to_json` (ratio, change and
reduction, each with its interval). ``sim_time_paired_delta_s`` and
``train_exchange_paired_delta_bytes`` are the mean paired difference ``b -
a`` with its 95% Student t interval
(:meth:`~innet.report.stats.PairedDifference.to_json`).

A reduction is ``None`` (``null`` in JSON) when ``a``'s value is 0. All
values are plain Python types (no numpy scalars, no NaN), so
``json.dump(summary, ..., allow_nan=False)`` works.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from innet.core.errors import InnetError
from innet.report.stats import first_reach, paired_difference, paired_log_ratio
from innet.report.tables import links_used, retransmitted_bytes, training_exchange
from innet.rundir.io import to_plain

if TYPE_CHECKING:
    from innet.report.family import FamilyReport
    from innet.rundir.io import RunData

__all__ = [
    "SCHEMA_VERSION",
    "TARGET_FRACTION",
    "build_summary",
    "time_to_target",
    "comparison_pairs",
    "reduction",
    "to_plain",
    "final_epoch_metrics",
    "mean_or_none",
    "plain_float",
]


SCHEMA_VERSION = 1
"""Version of ``summary.json``'s layout; raised whenever a key changes meaning or goes away."""

TARGET_FRACTION = 0.9
"""Time to target: the target is this fraction of the best final mean of the primary metric."""


def build_summary(run: RunData, family: FamilyReport) -> dict[str, Any]:
    """Summarise a run: per-variant numbers and the comparisons between variants.

    ``family`` is the report of the run's family (its own fields and comparisons).
    """
    seeds = run.seeds
    exchange = training_exchange(run.exchanges)
    retransmitted = retransmitted_bytes(run.exchanges)
    links = links_used(run.exchanges)
    variants = {
        variant: {
            **_variant_summary(run, variant, seeds, exchange, retransmitted, links),
            **family.variant_summary(run, variant, seeds),
        }
        for variant in run.variants
    }
    target, times = time_to_target(run.metrics, family.primary_metric, list(variants), seeds)
    for variant, entry in variants.items():
        entry["time_to_target_s"], entry["time_to_target_s_per_seed"] = times.get(
            variant, (None, [None] * len(seeds))
        )
    comparisons = [
        {
            "a": a,
            "b": b,
            "exchange_reduction": reduction(
                variants[a]["train_exchange_bytes"], variants[b]["train_exchange_bytes"]
            ),
            **_paired_core(variants[a], variants[b]),
            **family.comparison(a, b, variants[a], variants[b]),
        }
        for a, b in comparison_pairs(run.config, list(variants))
    ]
    return to_plain(
        {
            "schema_version": SCHEMA_VERSION,
            "scenario": run.scenario,
            "family": run.family_name,
            "topology": run.topology.name,
            "seeds": seeds,
            "time_to_target": target,
            "variants": variants,
            "comparisons": comparisons,
        }
    )


def _paired_core(summary_a: dict[str, Any], summary_b: dict[str, Any]) -> dict[str, Any]:
    """Ratios (log scale) and paired differences (b - a) of simulated time and training exchange."""
    time_a, time_b = summary_a["sim_time_s_per_seed"], summary_b["sim_time_s_per_seed"]
    bytes_a = summary_a["train_exchange_bytes_per_seed"]
    bytes_b = summary_b["train_exchange_bytes_per_seed"]
    time_ratio = paired_log_ratio(time_a, time_b)
    low, high = time_ratio.interval or (None, None)
    return {
        "sim_time_ratio": time_ratio.ratio,
        "sim_time_ratio_ci_low": low,
        "sim_time_ratio_ci_high": high,
        "sim_time_log_ratio": time_ratio.to_json(),
        "sim_time_paired_delta_s": paired_difference(time_a, time_b).to_json(),
        "train_exchange_log_ratio": paired_log_ratio(bytes_a, bytes_b).to_json(),
        "train_exchange_paired_delta_bytes": paired_difference(bytes_a, bytes_b).to_json(),
    }


def time_to_target(
    metrics: pd.DataFrame,
    metric: str | None,
    variants: Sequence[str],
    seeds: Sequence[int],
    fraction: float = TARGET_FRACTION,
) -> tuple[dict[str, Any] | None, dict[str, tuple[float | None, list[float | None]]]]:
    """The target and each variant's simulated training time until it reaches it.

    Returns ``(target, times)``: ``target`` is ``{"metric", "fraction_of_best",
    "best_variant", "best_final_mean", "target"}`` (None when ``metric`` is None
    or not in ``metrics``), ``times[variant]`` is ``(time on the mean curve,
    [time per seed])`` (see the module docstring; None where never reached).

    >>> metrics = pd.DataFrame({"variant": ["a", "a", "b", "b"], "seed": [0] * 4,
    ...     "epoch": [0, 1, 0, 1], "accuracy": [0.5, 0.8, 0.7, 0.75],
    ...     "sim_time_cum_s": [1.0, 2.0, 0.1, 0.2]})
    >>> target, times = time_to_target(metrics, "accuracy", ["a", "b"], [0])
    >>> round(target["target"], 6), target["best_variant"]
    (0.72, 'a')
    >>> times["a"], times["b"]
    ((2.0, [2.0]), (0.2, [0.2]))
    """
    if metric is None or metric not in metrics.columns:
        return None, {}
    finals = {}
    for variant in variants:
        final = final_epoch_metrics(metrics, variant, list(seeds))[metric]
        finals[variant] = mean_or_none(final.tolist())
    known = {variant: value for variant, value in finals.items() if value is not None}
    if not known:
        return None, {}
    best = max(known, key=lambda variant: known[variant])  # the first of equals
    target = fraction * known[best]
    times = {}
    for variant in variants:
        rows = metrics[metrics["variant"] == variant].sort_values(["seed", "epoch"])
        per_seed = []
        for seed in seeds:
            mine = rows[rows["seed"] == seed]
            per_seed.append(first_reach(mine["sim_time_cum_s"], mine[metric], target))
        curve = rows[rows["seed"].isin(list(seeds))].groupby("epoch")[[metric, "sim_time_cum_s"]]
        mean_curve = curve.mean().sort_index()
        times[variant] = (
            first_reach(mean_curve["sim_time_cum_s"], mean_curve[metric], target),
            per_seed,
        )
    return {
        "metric": metric,
        "fraction_of_best": fraction,
        "best_variant": best,
        "best_final_mean": known[best],
        "target": target,
    }, times


def comparison_pairs(config: dict[str, Any], variants: Sequence[str]) -> list[tuple[str, str]]:
    """The ``(a, b)`` pairs to compare.

    ``config["comparisons"]`` when it is given and non-empty, else the first
    variant against each other variant. Unknown names raise ``InnetError``.
    """
    configured = config.get("comparisons") or []
    if not configured:
        return [(variants[0], other) for other in variants[1:]]
    pairs = []
    for entry in configured:
        if not isinstance(entry, (list, tuple)) or len(entry) != 2:
            raise InnetError(f"config.yaml: comparisons: expected [a, b] pairs, got {entry!r}")
        a, b = str(entry[0]), str(entry[1])
        unknown = [name for name in (a, b) if name not in variants]
        if unknown:
            raise InnetError(
                f"config.yaml: comparisons: unknown variant {unknown[0]!r} "
                f"(variants: {', '.join(variants)})"
            )
        pairs.append((a, b))
    return pairs


def reduction(a: float | None, b: float | None) -> float | None:
    """``1 - b / a``; None when either value is missing or ``a`` is 0."""
    if a is None or b is None or a == 0 or _is_nan(a) or _is_nan(b):
        return None
    return 1.0 - b / a


def _variant_summary(
    run: RunData,
    variant: str,
    seeds: list[int],
    exchange: pd.Series,
    retransmitted: pd.Series,
    links: pd.Series,
) -> dict[str, Any]:
    final_epoch_metrics(run.metrics, variant, seeds)  # every seed has rows
    exchange_per_seed = [int(exchange.get((variant, seed), 0)) for seed in seeds]
    retransmitted_per_seed = [int(retransmitted.get((variant, seed), 0)) for seed in seeds]
    metrics = run.metrics[run.metrics["variant"] == variant]
    plan = run.plans.get(variant, {})
    sim_time = metrics.groupby("seed")["sim_time_s"].sum(min_count=1).reindex(seeds).tolist()
    sim_time_per_seed = [plain_float(value) for value in sim_time]
    return {
        "routing": run.variant_config(variant).get("routing") or plan.get("routing"),
        "epochs": int(metrics["epoch"].nunique()),
        "train_exchange_bytes": _exact_mean(exchange_per_seed),
        "train_exchange_bytes_per_seed": exchange_per_seed,
        "retransmitted_bytes": _exact_mean(retransmitted_per_seed),
        "retransmitted_bytes_per_seed": retransmitted_per_seed,
        "sim_time_s_per_epoch": mean_or_none(metrics["sim_time_s"].tolist()),
        "sim_time_s_total": mean_or_none(sim_time),
        "sim_time_s_per_seed": sim_time_per_seed,
        "links_used": max((int(links.get((variant, seed), 0)) for seed in seeds), default=0),
        "links_in_plan": len(plan.get("edges", [])),
    }


def final_epoch_metrics(metrics: pd.DataFrame, variant: str, seeds: list[int]) -> pd.DataFrame:
    """One metrics row per seed (in ``seeds`` order): the row of that seed's last epoch."""
    rows = metrics[metrics["variant"] == variant]
    missing = sorted(set(seeds) - set(rows["seed"].tolist()))
    if missing:
        raise InnetError(
            f"metrics.csv: no rows for variant {variant!r}, "
            f"seed{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))}"
        )
    last = rows.loc[rows.groupby("seed")["epoch"].idxmax()].set_index("seed")
    return last.loc[seeds]


def _exact_mean(values: list[int]) -> int | float:
    """Mean of integers, as an int when it is one (so it equals the table's sum / n exactly)."""
    if not values:
        return 0
    total = sum(values)
    return total // len(values) if total % len(values) == 0 else total / len(values)


def mean_or_none(values: list[float]) -> float | None:
    """The mean, or None when there are no values or one of them is NaN."""
    finite = [float(value) for value in values]
    if not finite or any(_is_nan(value) for value in finite):
        return None
    return statistics.fmean(finite)


def plain_float(value: Any) -> float | None:
    """A float, or None for NaN."""
    return None if _is_nan(value) else float(value)


def _is_nan(value: Any) -> bool:
    return isinstance(value, (float, np.floating)) and math.isnan(value)
