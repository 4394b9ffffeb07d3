"""The tables, report and trade-off figures of a sweep, from its points' run directories.

A sweep's run directory holds one complete run directory per point
(:mod:`innet.app.sweeps`). :func:`write_sweep_report` reads them back and writes,
beside them:

- ``metrics.csv``: every point's ``metrics.csv``, with a ``point`` column and
  one column per swept key in front;
- ``runs.csv``: one row per point, variant and seed: the final epoch's
  family metrics, the training exchange (bytes) and the simulated training
  time of that seed;
- ``sweep.csv``: one row per point and variant: for each of those numbers
  the mean over seeds and its 95% interval (``_ci_low``, ``_ci_high``; empty
  with one seed): the Student t interval, clipped to the number's range
  where it has one (accuracy in [0, 1]; bytes, seconds, rates and losses
  >= 0; :func:`innet.report.stats.mean_interval`), so no interval claims a
  value the number cannot take;
- ``sweep.json`` (the keys, the points, the primary metric and the swept
  values some variants set themselves), ``report.md`` and
  ``figures/sweep_*.png``: the family's primary metric (``inl``: accuracy)
  against each swept key, against the training exchange, against the
  simulated time and against each of the family's trade-off metrics
  (:meth:`~innet.families.FamilyReport.tradeoffs`; ``inl``: the latent rate,
  the beta curve). Each line is one variant (and one setting of the other
  swept keys); the band is the 95% interval over seeds. Where no line's
  measured value changes along the sweep (the bytes of a routing do not
  change with beta), the figure says so and plots the metric against the
  swept key, each line's constant value in the legend.

A variant that sets a swept key itself keeps its own value at every point
(:func:`innet.app.sweeps.variant_own_values`); its rows carry that value.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from innet.core.errors import InnetError
from innet.families import FAMILIES
from innet.families.runs import open_run
from innet.report.figures import save_figure
from innet.report.markdown import MISSING, format_bytes, format_seconds
from innet.report.mdtable import markdown_table
from innet.report.stats import CONFIDENCE, mean_interval
from innet.report.summary import final_epoch_metrics
from innet.rundir.io import RunData
from innet.rundir.layout import FIGURES_DIR, METRICS_FILE, REPORT_FILE

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "POINTS_DIR",
    "FAILED_SUFFIX",
    "SweepPoint",
    "flow_yaml",
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


POINTS_DIR = "points"
"""The folder of a sweep's run directory that holds one run directory per point."""
FAILED_SUFFIX = ".failed.json"
"""``points/<point>.failed.json``: a point that failed, its error and traceback."""


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep: its name (``p00``) and the value of each swept key."""

    name: str
    values: dict[str, Any]

    def overrides(self) -> list[str]:
        """The point as ``--set`` overrides, ``KEY=VALUE`` with the value as YAML."""
        return [f"{key}={flow_yaml(value)}" for key, value in self.values.items()]

    def describe(self) -> str:
        """``gate.beta=0.001, training.lr=0.01``."""
        return ", ".join(f"{key}={flow_yaml(value)}" for key, value in self.values.items())

    def values_for(self, variant: str, own: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """The swept values as ``variant`` ran them: the point's, but its own where it sets one.

        >>> SweepPoint("p00", {"gate.beta": 0.0}).values_for("r", {"r": {"gate.beta": 0.01}})
        {'gate.beta': 0.01}
        """
        return self.values | dict(own.get(variant, {}))


def flow_yaml(value: Any) -> str:
    """``value`` as flow YAML that reads back as itself (``0.001``, ``[1, 2]``, ``'a b'``)."""
    text = yaml.safe_dump([value], default_flow_style=True, width=1_000_000).strip()
    return text[1:-1]


def sweep_figure_name(metric: str, against: str) -> str:
    """``sweep_accuracy_vs_gate.beta.png``."""
    return f"sweep_{metric}_vs_{against}.png"


def sweep_runs(
    runs: list[tuple[SweepPoint, RunData]], own: Mapping[str, Mapping[str, Any]] | None = None
) -> pd.DataFrame:
    """One row per point, variant and seed: the swept values, final metrics, bytes and time.

    The swept values are those the variant ran with: the point's, or the
    variant's own where it sets a swept key itself (``own``).
    """
    own = own or {}
    rows = []
    for point, run in runs:
        names = FAMILIES.get(run.family_name).report.metric_names
        exchange = run.exchanges.groupby(["variant", "seed"])["nbytes"].sum()
        times = run.metrics.groupby(["variant", "seed"])["sim_time_s"].sum(min_count=1)
        for variant in run.variants:
            final = final_epoch_metrics(run.metrics, variant, run.seeds)
            for seed in run.seeds:
                rows.append(
                    {
                        "point": point.name,
                        **point.values_for(variant, own),
                        "variant": variant,
                        "seed": seed,
                        **{name: final.loc[seed, name] for name in names},
                        BYTES_COLUMN: int(exchange.get((variant, seed), 0)),
                        TIME_COLUMN: times.get((variant, seed), math.nan),
                    }
                )
    return pd.DataFrame(rows)


def aggregate(runs: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    """Per point and variant: the mean of each value column over seeds and its 95% interval.

    The interval is :func:`~innet.report.stats.mean_interval`'s: the Student
    t interval, clipped to the column's range where it has one (accuracy: 1
    at most).

    >>> runs = pd.DataFrame({"point": ["p0"] * 3, "beta": [0.1] * 3, "variant": ["d"] * 3,
    ...                      "seed": [0, 1, 2], "accuracy": [0.8, 0.9, 1.0]})
    >>> row = aggregate(runs, ["beta"], ["accuracy"]).iloc[0]
    >>> float(round(row["accuracy_mean"], 6)), int(row["seeds"])
    (0.9, 3)
    >>> float(round(0.9 - row["accuracy_ci_low"], 6))  # t_{0.975, 2} * 0.1 / sqrt(3)
    0.248414
    >>> float(row["accuracy_ci_high"])  # 0.9 + 0.248414, clipped: an accuracy is at most 1
    1.0
    """
    rows = []
    for (point, variant), group in runs.groupby(["point", "variant"], sort=False):
        row: dict[str, Any] = {
            "point": point,
            **group.iloc[0][keys].to_dict(),
            "variant": variant,
            "seeds": len(group),
        }
        for column in values:
            known = [float(value) for value in group[column] if pd.notna(value)]
            try:
                mean, interval = mean_interval(known, column)
            except ValueError as error:
                raise InnetError(f"{SWEEP_FILE}: {column}: {error}") from None
            row[f"{column}_mean"] = mean if mean is not None else math.nan
            row[f"{column}_ci_low"] = interval[0] if interval else math.nan
            row[f"{column}_ci_high"] = interval[1] if interval else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def write_sweep_report(
    directory: Path,
    scenario: str,
    points: list[SweepPoint],
    own: Mapping[str, Mapping[str, Any]] | None = None,
    failed: Mapping[str, str] | None = None,
) -> None:
    """Write the sweep's tables, ``report.md`` and figures from ``directory/points/*``.

    ``own``: the swept keys some variants set themselves, with their values
    (:func:`innet.app.sweeps.variant_own_values`); their rows carry those values.
    ``failed``: the points that failed, with their error: the tables hold the
    other points, ``sweep.json`` and ``report.md`` name them. ``sweep.json`` is
    written last (whole or absent): a sweep directory without it is unfinished.

    Running it again on the same directory gives the same files (``run_sim.py
    report`` does, after rebuilding each point's report).
    """
    failed = dict(failed or {})
    runs = [
        (point, open_run(directory / POINTS_DIR / point.name)[0])
        for point in points
        if point.name not in failed
    ]
    keys = list(points[0].values)
    first = runs[0][1]
    family = FAMILIES.get(first.family_name).report
    own = {variant: dict(values) for variant, values in (own or {}).items()}
    metrics = pd.concat(
        [_tagged(run.metrics, point, own) for point, run in runs], ignore_index=True
    )
    front = ["point", *keys]
    metrics[front + [c for c in metrics.columns if c not in front]].to_csv(
        directory / METRICS_FILE, index=False
    )
    table = sweep_runs(runs, own)
    table.to_csv(directory / RUNS_FILE, index=False)
    primary = family.primary_metric
    values = [*_ordered(family.metric_names, primary), BYTES_COLUMN, TIME_COLUMN]
    summary = aggregate(table, keys, values)
    summary.to_csv(directory / SWEEP_FILE, index=False)
    record = {
        "scenario": scenario,
        "family": first.family_name,
        "primary_metric": primary,
        "keys": keys,
        "points": [{"point": point.name, **point.values} for point in points],
        "variants": runs[0][1].variants,
        "seeds": runs[0][1].seeds,
        "variant_own_values": own,
        "confidence": CONFIDENCE,
        "interval": "t, clipped to the range of a bounded number",
        "failed": failed,
    }
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
    partial = directory / f".{SWEEP_JSON}.partial-{os.getpid()}"
    partial.write_text(json.dumps(record, indent=2) + "\n")
    partial.replace(directory / SWEEP_JSON)


def _tagged(metrics: pd.DataFrame, point: SweepPoint, own: Mapping[str, Any]) -> pd.DataFrame:
    """A point's metrics with a ``point`` column and its swept values (a variant's own ones)."""
    ran = {variant: point.values_for(variant, own) for variant in metrics["variant"].unique()}
    columns = {key: metrics["variant"].map(lambda v, k=key: ran[v][k]) for key in point.values}
    return metrics.assign(point=point.name, **columns)


def tradeoff_figure(summary: pd.DataFrame, keys: list[str], metric: str, against: str) -> Figure:
    """``metric`` (mean, 95% band over seeds) against a swept key or a measured column.

    One line per variant and setting of the swept keys other than the one the
    line runs along: ``against`` itself, or for a measured column the first
    swept key (each marker then names its value). Where no line's measured
    value changes along the sweep, the lines would stand on top of
    themselves: the metric is drawn against the swept key instead, the title
    says so and the legend gives each line's value. A line whose swept value
    does not change (a variant that sets the key itself) says so in the legend.
    """
    figure = Figure(figsize=(7.0, 4.6), layout="constrained")
    ax = figure.add_subplot()
    axis = _XAxis.of(summary, keys, against)
    named = _draw_lines(ax, summary, axis, metric)
    _label_axes(ax, summary, axis, metric, named)
    return figure


@dataclass(frozen=True)
class _XAxis:
    """What a trade-off figure's x axis shows and how its lines run along it."""

    against: str  # the swept key or measured column asked for
    along: str  # the swept key each line runs along
    others: list[str]  # the other swept keys: one line per setting of them
    constant: dict[Any, float] | None  # each line's measured value, where none changes
    by_key: bool  # whether the x axis is the swept key
    column: str  # the column of ``summary`` on the x axis
    numeric: bool
    positions: dict[Any, int]  # x positions of the values of a non-numeric column

    @classmethod
    def of(cls, summary: pd.DataFrame, keys: list[str], against: str) -> _XAxis:
        swept = against in keys
        along = against if swept else keys[0]
        others = [key for key in keys if key != along]
        constant = None if swept else _constant_lines(summary, others, f"{against}_mean")
        by_key = swept or constant is not None
        column = along if by_key else f"{against}_mean"
        numeric = bool(pd.to_numeric(summary[column], errors="coerce").notna().all())
        positions = {value: i for i, value in enumerate(dict.fromkeys(summary[column]))}
        return cls(against, along, others, constant, by_key, column, numeric, positions)

    def shown(self, *, units: bool = True) -> str:
        """The x axis's label."""
        return _axis_label(
            self.column if self.by_key else self.against, units=units, swept=self.by_key and units
        )


def _draw_lines(ax: Any, summary: pd.DataFrame, axis: _XAxis, metric: str) -> bool:
    """Draw every line of the figure; whether some markers name their value of ``along``."""
    several = summary[axis.along].nunique() > 1
    named = False
    for label, group in _lines(summary, axis.others):
        said = []  # a variant that keeps its own value; the constant measured value
        if several and group[axis.along].nunique() == 1:
            said.append(f"{axis.along}={group[axis.along].iloc[0]} at every point")
        if axis.constant is not None:
            said.append(_shown(axis.against, axis.constant[label]))
        name = _line_name(label, axis.others) + (f" ({'; '.join(said)})" if said else "")
        order = None if axis.numeric else (lambda s: s.map(axis.positions))
        group = group.sort_values(axis.column, key=order)
        x = (
            group[axis.column].astype(float)
            if axis.numeric
            else group[axis.column].map(axis.positions)
        )
        named |= _draw_line(ax, group, x, metric, name, None if axis.by_key else axis.along)
    return named


def _label_axes(ax: Any, summary: pd.DataFrame, axis: _XAxis, metric: str, named: bool) -> None:
    """Ticks, scale, labels, title (with its notes), grid and legend."""
    if not axis.numeric:
        ax.set_xticks(list(axis.positions.values()), [str(value) for value in axis.positions])
    else:
        _scale(ax, summary[axis.column].astype(float).to_numpy())
    ax.set_xlabel(axis.shown())
    if axis.against == BYTES_COLUMN and not axis.by_key and ax.get_xscale() == "linear":
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: format_bytes(value)))
    ax.set_ylabel(f"final {metric} (mean over seeds)")
    notes = [f"marker labels: {axis.along}"] if named else []
    if axis.constant is not None:
        notes.append(
            f"{_axis_label(axis.against, units=False)}: the same at every "
            f"{axis.along} (values in the legend)"
        )
    seeds = int(summary["seeds"].max())
    if seeds > 1:
        notes.append(f"bands or bars: {CONFIDENCE:.0%} interval over {seeds} seeds")
    title = f"{metric} against {axis.shown(units=False)}"
    ax.set_title("\n".join([title, *notes]), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _lines(summary: pd.DataFrame, others: list[str]) -> Any:
    """The figure's lines: one per variant and setting of the ``others`` swept keys."""
    return summary.groupby(["variant", *others] if others else "variant", sort=False)


def _line_name(label: Any, others: list[str]) -> str:
    parts = label if isinstance(label, tuple) else (label,)
    settings = (f"{key}={value}" for key, value in zip(others, parts[1:], strict=True))
    return ", ".join([str(parts[0]), *settings])


def _constant_lines(
    summary: pd.DataFrame, others: list[str], column: str
) -> dict[Any, float] | None:
    """Each line's value of ``column`` where it is the same at every point of every line.

    None where some line's value changes along the sweep (to 9 significant digits).
    """
    values = {}
    for label, group in _lines(summary, others):
        seen = {float(f"{value:.9g}") for value in group[column].astype(float)}
        if len(seen) != 1:
            return None
        values[label] = float(group[column].iloc[0])
    return values


def _shown(column: str, value: float) -> str:
    """A measured value in its unit: ``77.7 kB``, ``0.232 s``, ``1.5 bits per sample``."""
    if column == BYTES_COLUMN or column.endswith("_bytes"):
        return format_bytes(value)
    if column == TIME_COLUMN or column.endswith("_s"):
        return format_seconds(value)
    unit = next((u for suffix, u in _UNIT_SUFFIXES.items() if column.endswith(suffix)), "")
    return f"{value:.3g} {unit}".strip()


def _draw_line(
    ax: Any, group: pd.DataFrame, x: pd.Series, metric: str, name: str, along: str | None
) -> bool:
    """One line with its band (bars where its points coincide); True if markers were named."""
    mean = group[f"{metric}_mean"].to_numpy(dtype=float)
    (line,) = ax.plot(x, mean, marker="o", markersize=4, label=name)
    distinct = len(set(np.round(np.asarray(x, dtype=float), 12))) == len(group)
    named = along is not None and distinct and len(group) <= _MARKED_POINTS_MAX
    if named:
        for x_at, y_at, value in zip(x, mean, group[along], strict=True):
            ax.annotate(
                f"{value}",
                (x_at, y_at),
                xytext=(3, 3),
                textcoords="offset points",
                fontsize=7,
                color=line.get_color(),
            )
    low = group[f"{metric}_ci_low"].to_numpy(dtype=float)
    high = group[f"{metric}_ci_high"].to_numpy(dtype=float)
    if np.isfinite(low).any():
        if distinct:
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.18, linewidth=0)
        else:  # points on top of each other: the interval of each as a bar
            ax.errorbar(
                x,
                mean,
                yerr=[mean - low, high - mean],
                fmt="none",
                ecolor=line.get_color(),
                capsize=3,
                alpha=0.6,
            )
    return named


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


def _report(
    record: dict[str, Any],
    summary: pd.DataFrame,
    keys: list[str],
    primary: str | None,
    figures: list[tuple[str, str]],
) -> str:
    """``report.md`` of a sweep: what was swept, the aggregated table, the figures."""
    seeds = record["seeds"]
    lines = [
        f"# Sweep of {record['scenario']}",
        "",
        f"{len(record['points'])} points ({', '.join(keys)}) x {len(record['variants'])} "
        f"variants x {len(seeds)} seeds; every point is a complete run in `points/<point>/` "
        "with its own report. Means over seeds with the 95% Student t interval, clipped to "
        "the range of a bounded number (an accuracy lies in [0, 1]; bytes, seconds, rates and "
        "losses are not negative), n/a with one seed; the training exchange and the "
        "simulated time are per seed.",
        "",
    ]
    for name, error in (record.get("failed") or {}).items():
        lines += [f"Point {name} failed ({error}): not in the tables; "
                  "`run_sim.py resume` runs it again.", ""]  # fmt: skip
    for variant, own in (record.get("variant_own_values") or {}).items():
        kept = ", ".join(f"{key}={value}" for key, value in own.items())
        lines += [
            f"Variant {variant} sets {kept} itself and keeps it at every point: its rows "
            "carry that value, not the point's.",
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
        cells += [
            format_bytes(row[f"{BYTES_COLUMN}_mean"]),
            format_seconds(row[f"{TIME_COLUMN}_mean"]),
        ]
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
    from innet.families.runs import write_run_report
    from innet.rundir.io import read_json

    record = read_json(directory / SWEEP_JSON)
    keys = list(record["keys"])
    points = [
        SweepPoint(str(entry["point"]), {key: entry[key] for key in keys})
        for entry in record["points"]
    ]
    failed = record.get("failed") or {}
    for point in points:
        if point.name not in failed:
            write_run_report(directory / POINTS_DIR / point.name)
    own = record.get("variant_own_values") or {}
    write_sweep_report(directory, str(record["scenario"]), points, own, failed)
