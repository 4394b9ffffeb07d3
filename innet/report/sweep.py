"""The tables, report and trade-off figures of a sweep, from its points' run directories.

A sweep's run directory holds one complete run directory per point
(:mod:`innet.sweeps`). :func:`write_sweep_report` reads them back and writes,
beside them:

- ``metrics.csv``: every point's ``metrics.csv``, with a ``point`` column and
  one column per swept key in front;
- ``runs.csv``: one row per point, variant and seed: the final epoch's
  family metrics, the training exchange (bytes) and the simulated training
  time of that seed;
- ``sweep.csv``: one row per point and variant: for each of those numbers
  the mean over seeds and its 95% Student t interval (``_ci_low``,
  ``_ci_high``; empty with one seed, :func:`innet.report.stats.t_interval`);
- ``sweep.json`` (the keys, the points and the primary metric), ``report.md``
  and ``figures/sweep_*.png``: the family's primary metric (``inl``:
  accuracy) against each swept key, against the training exchange, against
  the simulated time and against each of the family's trade-off metrics
  (:meth:`~innet.families.FamilyReport.tradeoffs`; ``inl``: the latent rate,
  the beta curve). Each line is one variant (and one setting of the other
  swept keys); the band is the 95% t interval over seeds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from innet.records import FIGURES_DIR, METRICS_FILE, REPORT_FILE
from innet.report.figures import save_figure
from innet.report.markdown import MISSING, format_bytes, format_seconds
from innet.report.mdtable import markdown_table
from innet.report.rundir import RunData, load_run
from innet.report.stats import CONFIDENCE, t_interval
from innet.report.summary import final_epoch_metrics

if TYPE_CHECKING:
    from innet.sweeps import SweepPoint

__all__ = [
    "RUNS_FILE",
    "SWEEP_FILE",
    "SWEEP_JSON",
    "BYTES_COLUMN",
    "TIME_COLUMN",
    "sweep_runs",
    "aggregate",
    "write_sweep_report",
    "sweep_figure_name",
    "tradeoff_figure",
    "rebuild_sweep_report",
]

RUNS_FILE = "runs.csv"
SWEEP_FILE = "sweep.csv"
SWEEP_JSON = "sweep.json"
BYTES_COLUMN = "train_exchange_bytes"
TIME_COLUMN = "sim_time_s"
_MARKED_POINTS_MAX = 8  # lines with more points leave their markers unnamed
_UNIT_SUFFIXES = {"_bits": "bits per sample", "_bytes": "bytes", "_s": "s"}
_AXIS_LABELS = {
    BYTES_COLUMN: "training exchange per seed (bytes)",
    TIME_COLUMN: "simulated training time per seed (s)",
}


def sweep_figure_name(metric: str, against: str) -> str:
    """``sweep_accuracy_vs_gate.beta.png``."""
    return f"sweep_{metric}_vs_{against}.png"


def sweep_runs(runs: list[tuple[SweepPoint, RunData]]) -> pd.DataFrame:
    """One row per point, variant and seed: the swept values, final metrics, bytes and time."""
    rows = []
    for point, run in runs:
        names = run.family.report.metric_names
        exchange = run.exchanges.groupby(["variant", "seed"])["nbytes"].sum()
        times = run.metrics.groupby(["variant", "seed"])["sim_time_s"].sum(min_count=1)
        for variant in run.variants:
            final = final_epoch_metrics(run.metrics, variant, run.seeds)
            for seed in run.seeds:
                rows.append({
                    "point": point.name, **point.values, "variant": variant, "seed": seed,
                    **{name: final.loc[seed, name] for name in names},
                    BYTES_COLUMN: int(exchange.get((variant, seed), 0)),
                    TIME_COLUMN: times.get((variant, seed), math.nan),
                })  # fmt: skip
    return pd.DataFrame(rows)


def aggregate(runs: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    """Per point and variant: the mean of each value column over seeds and its 95% t interval.

    >>> runs = pd.DataFrame({"point": ["p0"] * 3, "beta": [0.1] * 3, "variant": ["d"] * 3,
    ...                      "seed": [0, 1, 2], "accuracy": [0.8, 0.9, 1.0]})
    >>> row = aggregate(runs, ["beta"], ["accuracy"]).iloc[0]
    >>> float(round(row["accuracy_mean"], 6)), int(row["seeds"])
    (0.9, 3)
    >>> float(round(row["accuracy_ci_high"] - 0.9, 6))  # t_{0.975, 2} * 0.1 / sqrt(3)
    0.248414
    """
    rows = []
    for (point, variant), group in runs.groupby(["point", "variant"], sort=False):
        row: dict[str, Any] = {"point": point, **group.iloc[0][keys].to_dict(),
                               "variant": variant, "seeds": len(group)}  # fmt: skip
        for column in values:
            known = [float(value) for value in group[column] if pd.notna(value)]
            interval = t_interval(known)
            row[f"{column}_mean"] = float(np.mean(known)) if known else math.nan
            row[f"{column}_ci_low"] = interval[0] if interval else math.nan
            row[f"{column}_ci_high"] = interval[1] if interval else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def write_sweep_report(directory: Path, scenario: str, points: list[SweepPoint]) -> None:
    """Write the sweep's tables, ``report.md`` and figures from ``directory/points/*``.

    Running it again on the same directory gives the same files (``run_sim.py
    report`` does, after rebuilding each point's report).
    """
    from innet.sweeps import POINTS_DIR

    runs = [(point, load_run(directory / POINTS_DIR / point.name)) for point in points]
    keys = list(points[0].values)
    first = runs[0][1]
    family = first.family.report
    metrics = pd.concat(
        [run.metrics.assign(point=point.name, **point.values) for point, run in runs],
        ignore_index=True,
    )
    front = ["point", *keys]
    metrics[front + [c for c in metrics.columns if c not in front]].to_csv(
        directory / METRICS_FILE, index=False
    )
    table = sweep_runs(runs)
    table.to_csv(directory / RUNS_FILE, index=False)
    primary = family.primary_metric
    values = [*_ordered(family.metric_names, primary), BYTES_COLUMN, TIME_COLUMN]
    summary = aggregate(table, keys, values)
    summary.to_csv(directory / SWEEP_FILE, index=False)
    record = {
        "scenario": scenario,
        "family": first.config.get("family", "inl"),
        "primary_metric": primary,
        "keys": keys,
        "points": [{"point": point.name, **point.values} for point in points],
        "variants": runs[0][1].variants,
        "seeds": runs[0][1].seeds,
        "confidence": CONFIDENCE,
        "interval": "t",
    }
    (directory / SWEEP_JSON).write_text(json.dumps(record, indent=2) + "\n")
    figures: list[tuple[str, str]] = []
    if (first.config.get("report") or {}).get("figures", True) and primary is not None:
        out = directory / FIGURES_DIR
        out.mkdir(exist_ok=True)
        axes = [*keys, BYTES_COLUMN, TIME_COLUMN, *family.tradeoffs()]
        for against in axes:
            name = sweep_figure_name(primary, against)
            save_figure(tradeoff_figure(summary, keys, primary, against), out / name)
            figures.append((name, f"{primary} against {_axis_label(against)}"))
    (directory / REPORT_FILE).write_text(_report(record, summary, keys, primary, figures))


def tradeoff_figure(summary: pd.DataFrame, keys: list[str], metric: str, against: str) -> Figure:
    """``metric`` (mean, 95% band over seeds) against a swept key or a measured column.

    One line per variant and setting of the swept keys other than the one the
    line runs along: ``against`` itself, or for a measured column the first
    swept key (each marker then names its value).
    """
    figure = Figure(figsize=(7.0, 4.6), layout="constrained")
    ax = figure.add_subplot()
    swept = against in keys
    x_column = against if swept else f"{against}_mean"
    along = against if swept else keys[0]
    others = [key for key in keys if key != along]
    groups = (
        summary.groupby(["variant", *others], sort=False)
        if others
        else summary.groupby("variant", sort=False)
    )
    numeric = pd.to_numeric(summary[x_column], errors="coerce").notna().all()
    named = False  # whether some markers name their value of ``along``
    positions = {value: i for i, value in enumerate(dict.fromkeys(summary[x_column]))}
    for label, group in groups:
        parts = label if isinstance(label, tuple) else (label,)
        name = ", ".join([str(parts[0]), *(f"{k}={v}" for k, v in zip(others, parts[1:],
                                                                      strict=True))])  # fmt: skip
        group = group.sort_values(x_column, key=None if numeric else lambda s: s.map(positions))
        x = group[x_column].astype(float) if numeric else group[x_column].map(positions)
        mean = group[f"{metric}_mean"].to_numpy(dtype=float)
        (line,) = ax.plot(x, mean, marker="o", markersize=4, label=name)
        distinct = len(set(np.round(np.asarray(x, dtype=float), 12))) == len(group)
        if not swept and distinct and len(group) <= _MARKED_POINTS_MAX:
            named = True
            for x_at, y_at, value in zip(x, mean, group[along], strict=True):
                ax.annotate(f"{value}", (x_at, y_at), xytext=(3, 3), textcoords="offset points",
                            fontsize=7, color=line.get_color())  # fmt: skip
        low = group[f"{metric}_ci_low"].to_numpy(dtype=float)
        high = group[f"{metric}_ci_high"].to_numpy(dtype=float)
        if np.isfinite(low).any():
            if distinct:
                ax.fill_between(x, low, high, color=line.get_color(), alpha=0.18, linewidth=0)
            else:  # points on top of each other: the interval of each as a bar
                ax.errorbar(x, mean, yerr=[mean - low, high - mean], fmt="none",
                            ecolor=line.get_color(), capsize=3, alpha=0.6)  # fmt: skip
    if not numeric:
        ax.set_xticks(list(positions.values()), [str(value) for value in positions])
    else:
        _scale(ax, summary[x_column].astype(float).to_numpy())
    ax.set_xlabel(_axis_label(against, swept=swept))
    if against == BYTES_COLUMN and ax.get_xscale() == "linear":
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: format_bytes(value)))
    ax.set_ylabel(f"final {metric} (mean over seeds)")
    seeds = int(summary["seeds"].max())
    notes = [f"marker labels: {along}"] if named else []
    if seeds > 1:
        notes.append(f"bands or bars: {CONFIDENCE:.0%} t interval over {seeds} seeds")
    title = f"{metric} against {_axis_label(against, units=False)}"
    ax.set_title("\n".join([title, "; ".join(notes)]) if notes else title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure


def _scale(ax: Any, values: np.ndarray) -> None:
    """A log axis (symmetric-log when 0 is among the values) for values over decades."""
    finite = values[np.isfinite(values)]
    positive = finite[finite > 0]
    if positive.size < 2 or (finite < 0).any() or positive.max() < 20 * positive.min():
        return
    if (finite == 0).any():
        ax.set_xscale("symlog", linthresh=float(positive.min()))
    else:
        ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))


def _axis_label(column: str, *, units: bool = True, swept: bool = False) -> str:
    """An axis label with its unit; a swept key's values are as the scenario sets them."""
    if column in _AXIS_LABELS:
        text = _AXIS_LABELS[column]
        return text if units else text.split(" (")[0]
    if swept:
        return f"{column} (as set in the scenario)" if units else column
    for suffix, unit in _UNIT_SUFFIXES.items():  # a family's metric: its unit from its name
        if column.endswith(suffix):
            name = column.removesuffix(suffix).replace("_", " ")
            return f"{name} ({unit})" if units else name
    return column.replace("_", " ") + (" (dimensionless)" if units else "")


def _ordered(names: tuple[str, ...], primary: str | None) -> list[str]:
    """The family's metrics with the primary one first."""
    return sorted(names, key=lambda name: name != primary)


def _report(record: dict[str, Any], summary: pd.DataFrame, keys: list[str],
            primary: str | None, figures: list[tuple[str, str]]) -> str:  # fmt: skip
    """``report.md`` of a sweep: what was swept, the aggregated table, the figures."""
    seeds = record["seeds"]
    lines = [
        f"# Sweep of {record['scenario']}",
        "",
        f"{len(record['points'])} points ({', '.join(keys)}) x {len(record['variants'])} "
        f"variants x {len(seeds)} seeds; every point is a complete run in `points/<point>/` "
        "with its own report. Means over seeds with the 95% Student t interval "
        "(n/a with one seed); the training exchange and the simulated time are per seed.",
        "",
    ]
    headers = ["point", *keys, "variant"]
    if primary is not None:
        headers.append(f"{primary} [95% CI]")
    headers += ["training exchange", "simulated time"]
    rows = []
    for _, row in summary.iterrows():
        cells = [str(row["point"]), *(str(row[key]) for key in keys), str(row["variant"])]
        if primary is not None:
            cells.append(_with_interval(row, primary))
        cells += [format_bytes(row[f"{BYTES_COLUMN}_mean"]),
                  format_seconds(row[f"{TIME_COLUMN}_mean"])]  # fmt: skip
        rows.append(cells)
    align = ["left"] * (len(keys) + 2) + ["right"] * (len(headers) - len(keys) - 2)
    lines += [markdown_table(headers, rows, align), "", "## Figures", ""]
    lines += [f"![{text}]({FIGURES_DIR}/{name})" for name, text in figures] or ["(none drawn)"]
    return "\n".join(lines) + "\n"


def _with_interval(row: pd.Series, metric: str) -> str:
    mean, low, high = (row[f"{metric}_{part}"] for part in ("mean", "ci_low", "ci_high"))
    if not np.isfinite(mean):
        return MISSING
    if not np.isfinite(low):
        return f"{mean:.3f} [{MISSING}]"
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def rebuild_sweep_report(directory: Path) -> None:
    """Rebuild every point's report, then the sweep's tables, report and figures."""
    from innet.report.rundir import read_json, write_report
    from innet.sweeps import POINTS_DIR, SweepPoint

    record = read_json(directory / SWEEP_JSON)
    keys = list(record["keys"])
    points = [
        SweepPoint(str(entry["point"]), {key: entry[key] for key in keys})
        for entry in record["points"]
    ]
    for point in points:
        write_report(directory / POINTS_DIR / point.name)
    write_sweep_report(directory, str(record["scenario"]), points)
