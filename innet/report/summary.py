"""The headline numbers of a run, as one JSON-ready dictionary.

For each variant the summary gives the final accuracy (mean and sample
standard deviation over seeds), the training exchange (bytes actually sent,
summed from the exchange records), the estimated latent rate (bits per
sample), the simulated network time per epoch, the number of links that
carried training traffic and the training bytes sent again over lossy links
(``retransmitted_bytes``, mean per seed; 0 without losses). For each comparison ``(a, b)`` it gives

- ``exchange_reduction = 1 - exchange(b) / exchange(a)``,
- ``rate_reduction = 1 - rate(b) / rate(a)``,
- ``accuracy_delta = accuracy(b) - accuracy(a)`` (means over seeds), and
  whether it lies within one standard deviation of ``a``'s accuracy.

A reduction is ``None`` (``null`` in JSON) when ``a``'s value is 0. All
values are plain Python types (no numpy scalars, no NaN), so
``json.dump(summary, ..., allow_nan=False)`` works.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from innet.errors import InnetError
from innet.report.tables import links_used, retransmitted_bytes, training_exchange
from innet.topology.model import node_key

if TYPE_CHECKING:
    from innet.report.rundir import RunData

__all__ = ["build_summary", "comparison_pairs", "reduction", "to_plain"]


def build_summary(run: RunData) -> dict[str, Any]:
    """Summarise a run: per-variant numbers and the comparisons between variants."""
    seeds = run.seeds
    exchange = training_exchange(run.exchanges)
    retransmitted = retransmitted_bytes(run.exchanges)
    links = links_used(run.exchanges)
    variants = {
        variant: _variant_summary(run, variant, seeds, exchange, retransmitted, links)
        for variant in run.variants
    }
    comparisons = [
        _comparison(a, b, variants[a], variants[b])
        for a, b in comparison_pairs(run.config, list(variants))
    ]
    return to_plain(
        {
            "scenario": run.scenario,
            "topology": run.topology.name,
            "seeds": seeds,
            "variants": variants,
            "comparisons": comparisons,
        }
    )


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


def to_plain(value: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and paths to plain JSON types; NaN to None."""
    if isinstance(value, dict):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [to_plain(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if _is_nan(value) else float(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _variant_summary(
    run: RunData,
    variant: str,
    seeds: list[int],
    exchange: pd.Series,
    retransmitted: pd.Series,
    links: pd.Series,
) -> dict[str, Any]:
    final = _final_epoch_metrics(run.metrics, variant, seeds)
    accuracy = [float(value) for value in final["accuracy"]]
    rates = [float(value) for value in final["latent_rate_bits"]]
    exchange_per_seed = [int(exchange.get((variant, seed), 0)) for seed in seeds]
    retransmitted_per_seed = [int(retransmitted.get((variant, seed), 0)) for seed in seeds]
    metrics = run.metrics[run.metrics["variant"] == variant]
    gate = run.variant_config(variant).get("gate")
    plan = run.plans.get(variant, {})
    return {
        "routing": run.variant_config(variant).get("routing") or plan.get("routing"),
        "gate": gate.get("kind") if isinstance(gate, dict) else gate,
        "beta": float(gate.get("beta", 0.0)) if isinstance(gate, dict) else None,
        "epochs": int(metrics["epoch"].nunique()),
        "accuracy_mean": statistics.fmean(accuracy),
        "accuracy_std": statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0,
        "accuracy_per_seed": accuracy,
        "train_exchange_bytes": _exact_mean(exchange_per_seed),
        "train_exchange_bytes_per_seed": exchange_per_seed,
        "retransmitted_bytes": _exact_mean(retransmitted_per_seed),
        "retransmitted_bytes_per_seed": retransmitted_per_seed,
        "latent_rate_bits": _mean_or_none(rates),
        "latent_rate_bits_per_seed": rates,
        "sim_time_s_per_epoch": _mean_or_none(metrics["sim_time_s"].tolist()),
        "sim_time_s_total": _mean_or_none(
            metrics.groupby("seed")["sim_time_s"].sum().reindex(seeds).tolist()
        ),
        "links_used": max((int(links.get((variant, seed), 0)) for seed in seeds), default=0),
        "links_in_plan": len(plan.get("edges", [])),
        "node_rates_bits": _node_rates(run.node_rates, variant),
    }


def _final_epoch_metrics(metrics: pd.DataFrame, variant: str, seeds: list[int]) -> pd.DataFrame:
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


def _node_rates(node_rates: pd.DataFrame, variant: str) -> dict[str, float | None]:
    rows = node_rates[node_rates["variant"] == variant]
    means = rows.groupby("node")["rate_bits"].mean()
    return {node: _plain_float(means[node]) for node in sorted(means.index, key=node_key)}


def _comparison(a: str, b: str, summary_a: dict, summary_b: dict) -> dict[str, Any]:
    delta = summary_b["accuracy_mean"] - summary_a["accuracy_mean"]
    return {
        "a": a,
        "b": b,
        "exchange_reduction": reduction(
            summary_a["train_exchange_bytes"], summary_b["train_exchange_bytes"]
        ),
        "rate_reduction": reduction(summary_a["latent_rate_bits"], summary_b["latent_rate_bits"]),
        "accuracy_delta": delta,
        "accuracy_std_a": summary_a["accuracy_std"],
        "accuracy_within_one_std": abs(delta) <= summary_a["accuracy_std"],
    }


def _exact_mean(values: list[int]) -> int | float:
    """Mean of integers, as an int when it is one (so it equals the table's sum / n exactly)."""
    if not values:
        return 0
    total = sum(values)
    return total // len(values) if total % len(values) == 0 else total / len(values)


def _mean_or_none(values: list[float]) -> float | None:
    finite = [float(value) for value in values]
    if not finite or any(_is_nan(value) for value in finite):
        return None
    return statistics.fmean(finite)


def _plain_float(value: Any) -> float | None:
    return None if _is_nan(value) else float(value)


def _is_nan(value: Any) -> bool:
    return isinstance(value, (float, np.floating)) and math.isnan(value)
