"""A Gantt chart of one training step: the link directions as rows, each message a bar.

:func:`timeline_figure` draws the exchange records of one step of one (variant,
seed) from the same rows as the trace (:mod:`innet.report.trace`): a bar from each
message's ``t_start`` to its ``t_end`` on the row of its link direction
(sender → receiver), coloured by phase, with the time it queued for a radio
or its link (``queue_s``) as a thin grey line before the bar (messages over
one link only: a routed message's ``queue_s`` adds up its waits along the path), and each node's
compute time (from ``nodes.csv``) as a grey bar on its own row. Times are
milliseconds from the start of the step. Networks with many links show the
:data:`MAX_ROWS` busiest rows and say how many are left out.

The figure is drawn on a :class:`matplotlib.figure.Figure` with the Agg
renderer (no window, no pyplot state).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from innet.core.topology.model import Topology

__all__ = ["MAX_ROWS", "timeline_figure"]

MAX_ROWS = 40
_COLOURS = {"forward": "#1f77b4", "backward": "#ff7f0e", "eval": "#2ca02c", "codebook": "#9467bd"}
_OTHER = ["#d62728", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]


def _rows(step: pd.DataFrame, topology: Topology) -> pd.DataFrame:
    """One row per message with its row label and its busy time."""
    frame = step.assign(
        label=[
            f"{topology.label(s)} → {topology.label(d)}"
            for s, d in zip(step["src"], step["dst"], strict=True)
        ],
        busy=step["t_end"] - step["t_start"],
    )
    return frame


def _colour(phase: str, others: dict[str, str]) -> str:
    if phase in _COLOURS:
        return _COLOURS[phase]
    return others.setdefault(phase, _OTHER[len(others) % len(_OTHER)])


def timeline_figure(
    step: pd.DataFrame,
    topology: Topology,
    path: str | Path,
    *,
    origin: float,
    compute: pd.DataFrame | None = None,
    title: str = "",
) -> Path:
    """Draw the records ``step`` (one step) as a Gantt chart into ``path``; return it.

    ``origin`` is the step's start (absolute seconds); ``compute`` has columns
    ``node, start, end, name`` (absolute seconds) for the compute bars.
    """
    frame = _rows(step, topology)
    busy = frame.groupby("label", sort=False)["busy"].sum()
    first = frame.groupby("label", sort=False)["t_start"].min()
    labels = list(busy.sort_values(ascending=False).index[:MAX_ROWS])
    labels.sort(key=lambda label: (first[label], label))
    hidden = len(busy) - len(labels)
    bars = frame[frame["label"].isin(labels)]
    compute_rows: list[str] = []
    if compute is not None and len(compute):
        compute_rows = [f"{topology.label(n)} compute" for n in dict.fromkeys(compute["node"])]
    rows = compute_rows + labels
    where = {label: i for i, label in enumerate(rows)}
    height = min(0.28 * len(rows) + 1.6, 14)
    figure = Figure(figsize=(9, height), layout="constrained")
    axes = figure.add_subplot()
    others: dict[str, str] = {}
    to_ms, drawn_queue = 1e3, False
    for phase, mine in bars.groupby("phase", sort=False):
        y = mine["label"].map(where).to_numpy()
        start = (mine["t_start"].to_numpy() - origin) * to_ms
        width = (mine["t_end"] - mine["t_start"]).to_numpy() * to_ms
        axes.barh(
            y,
            width,
            left=start,
            height=0.6,
            color=_colour(str(phase), others),
            edgecolor="white",
            linewidth=0.5,
            label=str(phase),
        )
        # a routed message's queue_s sums its waits along the path: drawn for one hop only
        direct = [
            topology.graph.has_edge(u, v) for u, v in zip(mine["src"], mine["dst"], strict=True)
        ]
        queued = (mine["queue_s"].to_numpy() > 0) & np.array(direct, dtype=bool)
        drawn_queue |= bool(queued.any())
        if queued.any():
            axes.hlines(
                y[queued],
                start[queued] - mine["queue_s"].to_numpy()[queued] * to_ms,
                start[queued],
                color="0.55",
                linewidth=1.5,
            )
    if compute is not None and compute_rows:
        y = [where[f"{topology.label(n)} compute"] for n in compute["node"]]
        start = (compute["start"].to_numpy() - origin) * to_ms
        axes.barh(
            y,
            (compute["end"] - compute["start"]).to_numpy() * to_ms,
            left=start,
            height=0.6,
            color="0.75",
            label="compute",
        )
    axes.set_yticks(np.arange(len(rows)), rows, fontsize=8 if len(rows) > 20 else 9)
    axes.set_ylim(len(rows) - 0.5, -0.5)  # first row on top, no empty margin
    axes.set_xlabel("simulated time since the step started (ms)")
    axes.grid(axis="x", alpha=0.3)
    more = f"; {hidden} quieter link directions not shown" if hidden else ""
    axes.set_title(f"{title}{more}", fontsize=10)
    handles, names = axes.get_legend_handles_labels()
    if drawn_queue:
        handles.append(Patch(color="0.55"))
        names.append("queued")
    axes.legend(handles, names, loc="upper right", fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path
