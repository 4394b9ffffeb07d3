"""PNG figures of a run: where the traffic went, what it bought, and what each node sends.

- ``topology_<variant>.png``: the network drawn once per variant
  (:func:`topology_figure`). Links that carry training traffic are coloured by
  the utilisation of their busier direction (busy time / step time, in %;
  bytes per seed when the run has no time columns) and carry an arrow from
  sender to receiver of the plan; links the variant left silent are dashed
  grey; every link's width grows with its capacity (log scale, legend in
  bit/s). The bottleneck (the busiest link that did not fail) glows magenta
  and is labelled; a link that failed in an event is redrawn red and dashed
  with a red X where no other link is near; stragglers (nodes computing 10x
  longer per step than the median node) are ringed and labelled. Nodes are
  coloured by role and labelled (city names for imported networks) up to 40
  nodes; above, only the fusion node is named and, above 300 nodes, the
  arrows are left out.
- the scenario family's own figures (the ``inl`` family: accuracy against
  bytes, accuracy against simulated time and the latent rate per node; see
  :mod:`innet.families.inl.report`), which may use :func:`metric_time_figure`:
  a per-epoch metric against the cumulative simulated training time.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg
renderer, so no window opens and no global pyplot state is touched; the
constrained layout and the axes' margins keep titles, labels and legends
inside the canvas. Figures with one entry per variant draw each variant in
its own colour and marker (line style and hatch past ten variants,
:func:`variant_styles`) and put the legend beside the axes, off the data
(:func:`outside_legend`). Links are drawn as one
:class:`~matplotlib.collections.LineCollection` per kind, busiest on top, so
a network of thousands of links draws in about a second. Where nodes sit is
:func:`innet.report.layout.node_positions`: their ``pos`` (a map missing a
few coordinates keeps its map) or a seeded layout, with no link drawn through
a node it does not touch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import matplotlib as mpl
import networkx as nx
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from innet.core.topology.model import Topology
from innet.core.units import format_bitrate
from innet.report.layout import dense_map, node_positions, quiet_point, room_around
from innet.report.sections import event_steps
from innet.report.stats import value_range
from innet.report.tables import undirected_link_totals
from innet.rundir.layout import FIGURES_DIR

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.legend import Legend

    from innet.report.family import FamilyReport
    from innet.rundir.io import RunData

__all__ = [
    "CROWDED_NODES_MIN",
    "FIGURES_DIR",
    "LABELLED_NODES_MAX",
    "STRAGGLER_FACTOR",
    "VariantStyle",
    "bottleneck_link",
    "event_marks",
    "event_times",
    "metric_time_figure",
    "node_roles",
    "outside_legend",
    "save_figure",
    "stragglers",
    "topology_figure_name",
    "topology_figure",
    "node_positions",
    "draw_figures",
    "variant_styles",
]


ROLE_COLOURS = {"fusion": "#d62728", "sensor": "#1f77b4", "relay": "#8c8c8c"}
_OTHER_ROLE_COLOURS = ("#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
"""Colours of roles a family names in its own words (e.g. MoE's token sources, expert nodes)."""
LABELLED_NODES_MAX = 40
CROWDED_NODES_MIN = 2000
"""From this many nodes, topology figures leave silent links out and draw idle relays as dots."""
ARROWED_NODES_MAX = 300  # larger networks get no direction arrows (they would cover the links)
# viridis without its palest yellow, which hardly shows on white: the busiest links stay visible
_LINK_COLOURS = ListedColormap(mpl.colormaps["viridis"](np.linspace(0.0, 0.85, 256)), "links")
_BYTE_SCALES = ((1e9, "GB"), (1e6, "MB"), (1e3, "kB"), (1.0, "B"))
_DPI = 120
_FAILED_COLOUR = "#d62728"
_ARROW_COLOUR = "#111111"
_LATER_ARROW_COLOUR = "#e6550d"  # links a plan takes after an event
_SHORT_LABEL = 3  # labels up to this many characters are written inside the node
_MAP_NODE_SIZE = 90  # points^2: a dense map's nodes (labels beside them)
_BOTTLENECK_COLOUR = "#e7298a"  # magenta: nothing else on a topology figure has it
_STRAGGLER_COLOUR = "#111111"
STRAGGLER_FACTOR = 10.0
"""A straggler computes at least this many times longer per step than the median node."""
_TAB10 = cast(ListedColormap, mpl.colormaps["tab10"])
_VARIANT_COLOURS = tuple(cast("Sequence[tuple[float, float, float]]", _TAB10.colors))
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")  # 7 and 10 coprime: (colour, marker) unique to 70
_LINESTYLES = ("-", "--", ":", "-.")  # one per ten variants
_HATCHES = ("", "////", "....", "xxxx")  # bars: one per ten variants


@dataclass(frozen=True)
class VariantStyle:
    """How one variant is drawn: its colour, marker, line style and bar hatch."""

    colour: Any
    marker: str
    linestyle: str
    hatch: str

    def line(self) -> dict[str, Any]:
        """Keyword arguments of ``Axes.plot`` for this variant."""
        return {"color": self.colour, "marker": self.marker, "linestyle": self.linestyle}

    def bar(self) -> dict[str, Any]:
        """Keyword arguments of ``Axes.bar`` for this variant (white hatching on the colour)."""
        return {"color": self.colour, "hatch": self.hatch, "edgecolor": "white", "linewidth": 0.0}


def variant_styles(variants: Sequence[str]) -> dict[str, VariantStyle]:
    """A distinct look for every variant, in order.

    The k-th variant gets colour ``k mod 10`` of matplotlib's ``tab10``, marker
    ``k mod 7``, and the line style and bar hatch of its group of ten (solid and
    plain for the first ten), so no two variants share colour and marker (up to
    70) nor colour and hatch (up to 40); past 40 variants the colours are
    sampled from ``nipy_spectral``, one per variant.

    >>> styles = variant_styles([f"v{k}" for k in range(12)])
    >>> styles["v0"].colour == styles["v10"].colour, styles["v0"].hatch, styles["v10"].hatch
    (True, '', '////')
    >>> len({(s.colour, s.marker) for s in styles.values()})
    12
    """
    count = len(variants)
    spectral = mpl.colormaps["nipy_spectral"](np.linspace(0.03, 0.95, max(count, 1)))
    styles = {}
    for k, variant in enumerate(variants):
        group = k // len(_VARIANT_COLOURS)
        colour = _VARIANT_COLOURS[k % len(_VARIANT_COLOURS)] if count <= 40 else tuple(spectral[k])
        styles[variant] = VariantStyle(
            colour=colour,
            marker=_MARKERS[k % len(_MARKERS)],
            linestyle=_LINESTYLES[group % len(_LINESTYLES)],
            hatch=_HATCHES[group % len(_HATCHES)],
        )
    return styles


def outside_legend(
    figure: Figure,
    handles: Sequence[Any] | None = None,
    labels: Sequence[str] | None = None,
    *,
    title: str | None = None,
    fontsize: float = 8,
) -> Legend | None:
    """A legend to the right of the axes, never over the data, in as many columns as it needs.

    ``handles`` and ``labels`` default to those of every axes of ``figure``
    (each label once). The figure must use the constrained layout, which
    makes room for the legend beside the axes. When the entries are more than
    the figure's height holds in one column, they go into several; when even
    that would be wider than half the figure, the figure grows taller.
    """
    if handles is None:
        handles, labels = [], []
        for ax in figure.axes:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                if label not in labels:
                    handles.append(handle)
                    labels.append(label)
    if not handles:
        return None
    labels = list(labels) if labels is not None else [h.get_label() for h in handles]
    row_points = 1.55 * fontsize  # one entry and the space below it
    rows = max(int((figure.get_figheight() * 72 - 3 * row_points) // row_points), 4)
    columns = math.ceil(len(handles) / rows)
    if columns > 2:  # too many for the height: a taller figure, two columns
        columns = 2
        needed = (math.ceil(len(handles) / columns) + 3) * row_points / 72
        figure.set_figheight(max(figure.get_figheight(), needed))
    return figure.legend(
        handles,
        labels,
        loc="outside right upper",
        ncols=columns,
        fontsize=fontsize,
        title=title,
        title_fontsize=fontsize,
    )


def topology_figure_name(variant: str) -> str:
    """File name of a variant's topology figure (unsafe characters become ``_``)."""
    return f"topology_{re.sub(r'[^A-Za-z0-9_.-]', '_', variant)}.png"


def draw_figures(
    run: RunData, family: FamilyReport, link_totals: pd.DataFrame, out_dir: str | Path
) -> list[Path]:
    """Draw every topology figure of a run (of ``family``) into ``out_dir``; the written paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    link_rows = undirected_link_totals(link_totals)
    positions = node_positions(run.topology)
    written = []
    for variant in run.variants:  # one colour scale for every variant: comparable figures
        figure = topology_figure(run, family, variant, link_rows, positions)
        written.append(save_figure(figure, out_dir / topology_figure_name(variant)))
    return written


@dataclass
class _Traffic:
    """What a variant's links carried: bytes per seed and the colour value of each."""

    carried: dict[frozenset[str], float]
    shade: dict[frozenset[str], float]  # utilisation in %, or bytes per seed
    timed: bool
    unit_scale: float
    label: str  # the colour bar's
    norm: Normalize


def _traffic(link_rows: pd.DataFrame, variant: str) -> _Traffic:
    """The variant's link traffic, on one colour scale for every variant of the run."""
    rows = link_rows[link_rows["variant"] == variant]
    timed = "utilisation" in link_rows.columns and link_rows["utilisation"].notna().any()
    colour_column = "utilisation" if timed else "nbytes_per_seed"
    factor = 100.0 if timed else 1.0  # utilisation in %
    carried: dict[frozenset[str], float] = {}
    shade: dict[frozenset[str], float] = {}
    for row in rows.itertuples(index=False):
        link = frozenset((row.u, row.v))
        carried[link] = float(row.nbytes_per_seed)
        value = getattr(row, colour_column)
        shade[link] = float(value) * factor if pd.notna(value) else 0.0
    highest = float(link_rows[colour_column].max(skipna=True) or 0.0) * factor  # all variants
    if timed:
        unit_scale, label = 1.0, "utilisation of the busier direction (% of step time)"
    else:
        unit_scale, unit = _byte_scale(highest)
        label = f"training traffic per seed ({unit}), both directions"
    top = highest / unit_scale if math.isfinite(highest) else 0.0
    norm = Normalize(vmin=0.0, vmax=top if top > 0 else 1.0)
    return _Traffic(carried, shade, timed, unit_scale, label, norm)


def bottleneck_link(
    graph: nx.Graph,
    used: Sequence[tuple[str, str]],
    shade: dict[frozenset[str], float],
    timed: bool,
    exclude: Sequence[tuple[str, str]] = (),
) -> tuple[str, str] | None:
    """The link of ``used`` that limits the plan: the busiest, the failed ones left out.

    With times (``timed``), the highest ``shade`` (utilisation of the busier
    direction); without, the most bytes per bit/s of capacity (``shade`` is
    bytes then), i.e. the longest transmission. Ties go to the first in
    ``used``; None when nothing is left.

    >>> import networkx as nx
    >>> graph = nx.Graph()
    >>> graph.add_edge("a", "b", capacity=1e6); graph.add_edge("b", "c", capacity=1e9)
    >>> load = {frozenset("ab"): 1000.0, frozenset("bc"): 5000.0}  # bytes
    >>> bottleneck_link(graph, [("a", "b"), ("b", "c")], load, timed=False)
    ('a', 'b')
    >>> bottleneck_link(graph, [("a", "b"), ("b", "c")], load, timed=True)
    ('b', 'c')
    """
    lost = {frozenset(edge) for edge in exclude}
    candidates = [edge for edge in used if frozenset(edge) not in lost]
    if not candidates:
        return None

    def load(edge: tuple[str, str]) -> float:
        value = shade.get(frozenset(edge), 0.0)
        if timed:
            return value
        capacity = graph.edges[edge].get("capacity")
        return value / float(capacity) if capacity else 0.0

    return max(candidates, key=load)


def stragglers(run: RunData, variant: str) -> list[tuple[str, float]]:
    """(node, compute seconds per training step) of the variant's stragglers, slowest first.

    A straggler computes at least :data:`STRAGGLER_FACTOR` times longer per
    step (forward plus backward, ``nodes.csv``) than the median node with a
    compute rate; runs without compute rates have none.
    """
    nodes = run.nodes
    if nodes is None or nodes.empty or "forward_s" not in nodes.columns:
        return []
    rows = nodes[nodes["variant"] == variant]
    seconds = (rows["forward_s"] + rows["backward_s"]).to_numpy(dtype=float)
    positive = seconds[np.isfinite(seconds) & (seconds > 0)]
    if positive.size < 2:
        return []
    threshold = STRAGGLER_FACTOR * float(np.median(positive))
    slow = [
        (str(node), float(time))
        for node, time in zip(rows["node"], seconds, strict=True)
        if np.isfinite(time) and time >= threshold
    ]
    return sorted(slow, key=lambda item: -item[1])


def topology_figure(
    run: RunData,
    family: FamilyReport,
    variant: str,
    link_rows: pd.DataFrame,
    positions: dict[str, tuple[float, float]],
) -> Figure:
    """One variant's plan on the network: who sends to whom, over what, how busy.

    ``link_rows`` is :func:`~innet.report.tables.undirected_link_totals` of the
    run's links table. Links that carry training traffic are coloured by the
    utilisation of their busier direction (by bytes per seed when the table has
    no time columns; one colour scale for all the run's variants), with an
    arrow from sender to receiver of the plan; links left silent are dashed
    grey; every link's width grows with its capacity (log scale). The
    bottleneck (:func:`bottleneck_link`) glows magenta and is labelled; a
    link that failed in an event is redrawn red and dashed, with a red X where
    no other link is near; stragglers (:func:`stragglers`) are ringed and
    labelled. The legend says what width, colour and each mark mean.
    """
    topology = run.topology
    graph = topology.graph
    n_nodes = graph.number_of_nodes()
    large = n_nodes > LABELLED_NODES_MAX
    crowded = n_nodes >= CROWDED_NODES_MIN
    traffic = _traffic(link_rows, variant)
    used, silent = _used_and_silent(graph, traffic)
    width = _capacity_widths(graph, large)

    figure = _topology_canvas(graph, positions, large)
    ax = figure.add_subplot()
    silent_drawn = bool(silent) and not crowded
    if silent_drawn:
        _draw_silent(ax, positions, silent, width)
    failed = _failed_links(run, variant, graph)
    bottleneck = bottleneck_link(graph, used, traffic.shade, traffic.timed, exclude=failed)
    if bottleneck is not None:
        _draw_bottleneck(ax, graph, positions, bottleneck, width(bottleneck))
    if used:
        _draw_used(ax, positions, used, width, traffic)
    first, later = _plan_edges(run, variant, traffic.carried) if family.follows_plan else ([], [])
    arrows = n_nodes <= ARROWED_NODES_MAX and bool(first or later)
    if arrows:
        _draw_arrows(ax, first, positions, large, _ARROW_COLOUR)
        _draw_arrows(ax, later, positions, large, _LATER_ARROW_COLOUR)
    if failed:
        _draw_failed(ax, graph, positions, failed, width, large)
    roles = node_roles(run, family)
    _draw_nodes(ax, topology, roles, positions, _busy_nodes(used) if crowded else None)
    _draw_labels(ax, topology, positions, large)
    slow = stragglers(run, variant)
    _draw_stragglers(ax, topology, positions, slow, large)
    colourbar = figure.colorbar(
        ScalarMappable(norm=traffic.norm, cmap=_LINK_COLOURS), ax=ax, shrink=0.75, pad=0.01
    )
    colourbar.set_label(traffic.label)
    handles = [
        *_role_handles(roles),
        *_link_handles(arrows and bool(first), arrows and bool(later), silent_drawn, bool(failed)),
        *_mark_handles(graph, bottleneck, traffic.shade, traffic, slow),
        *_capacity_handles(graph, width),
    ]
    colour = "utilisation" if traffic.timed else "traffic"
    figure.legend(
        handles=handles,
        loc="outside lower center",
        ncols=3,
        fontsize=8,
        frameon=False,
        title=f"line width: link capacity; colour: {colour} (bar)",
        title_fontsize=8,
    )
    ax.set_title(
        _topology_title(run, variant, link_rows, len(used), family.follows_plan, crowded),
        fontsize=10,
    )
    _frame(ax, large)
    return figure


def _frame(ax: Axes, large: bool) -> None:
    """Fit the view to what is drawn, with margins, equal scales and no axes."""
    ax.autoscale_view()
    ax.margins(x=0.06 if large else 0.1, y=0.05 if large else 0.08)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_axis_off()


def _used_and_silent(
    graph: nx.Graph, traffic: _Traffic
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The links that carry traffic (the busiest last: drawn on top) and those that carry none."""
    carried, shade = traffic.carried, traffic.shade
    used = sorted(
        (e for e in graph.edges if carried.get(frozenset(e), 0.0) > 0),
        key=lambda e: shade[frozenset(e)],
    )
    silent = [e for e in graph.edges if carried.get(frozenset(e), 0.0) <= 0]
    return used, silent


def _draw_silent(
    ax: Axes,
    positions: dict[str, tuple[float, float]],
    silent: list[tuple[str, str]],
    width: Callable[[tuple[str, str]], float],
) -> None:
    """The links that carry nothing: thin, dashed, grey."""
    ax.add_collection(
        LineCollection(
            [(positions[u], positions[v]) for u, v in silent],
            linewidths=[width(e) * 0.6 for e in silent],
            linestyles=(0, (3, 2)),
            colors="#bdbdbd",
            zorder=1,
        )
    )


def _topology_canvas(
    graph: nx.Graph, positions: dict[str, tuple[float, float]], large: bool
) -> Figure:
    """An empty topology figure, larger for many nodes or nodes close together."""
    n_nodes = graph.number_of_nodes()
    roomy = large or dense_map(graph, positions)
    figure = Figure(figsize=(7.5, 6.2) if not roomy else (9, 7.8) if n_nodes <= 300 else (11, 9.5))
    figure.set_layout_engine("constrained")
    return figure


def _draw_used(
    ax: Axes,
    positions: dict[str, tuple[float, float]],
    used: list[tuple[str, str]],
    width: Callable[[tuple[str, str]], float],
    traffic: _Traffic,
) -> None:
    """The links that carry training traffic, coloured by how busy they are."""
    values = np.array([traffic.shade[frozenset(e)] / traffic.unit_scale for e in used])
    ax.add_collection(
        LineCollection(
            [(positions[u], positions[v]) for u, v in used],
            linewidths=[width(e) for e in used],
            colors=_LINK_COLOURS(traffic.norm(values)),
            capstyle="round",
            zorder=2,
        )
    )


def _busy_nodes(used: list[tuple[str, str]]) -> set[str]:
    """The nodes at either end of a link that carries traffic."""
    return {node for edge in used for node in edge}


def _topology_title(
    run: RunData,
    variant: str,
    link_rows: pd.DataFrame,
    n_used: int,
    follows_plan: bool,
    crowded: bool,
) -> str:
    """``NETWORK: VARIANT (ROUTING)``, and how many links carry how much traffic."""
    graph = run.topology.graph
    rows = link_rows[link_rows["variant"] == variant]
    total = float(rows["nbytes_per_seed"].sum()) if not rows.empty else 0.0
    total_scale, total_unit = _byte_scale(total)
    routing = run.variant_config(variant).get("routing") or run.plans.get(variant, {}).get(
        "routing", ""
    )
    name = f"{variant} ({routing})" if follows_plan else variant  # no plan: no routing
    return (
        f"{run.topology.name}: {name}\n{n_used:,} of {graph.number_of_edges():,} "
        f"links carry training traffic, {total / total_scale:.3g} {total_unit} per seed"
        + ("\n(links that carry nothing not drawn; idle nodes as small dots)" if crowded else "")
    )


def _draw_bottleneck(
    ax: Axes,
    graph: nx.Graph,
    positions: dict[str, tuple[float, float]],
    edge: tuple[str, str],
    line_width: float,
) -> None:
    """A magenta glow under the bottleneck link and the word beside it."""
    u, v = edge
    ax.add_collection(
        LineCollection(
            [(positions[u], positions[v])],
            linewidths=[line_width + 9],
            colors=_BOTTLENECK_COLOUR,
            alpha=0.45,
            capstyle="round",
            zorder=1.5,
        )
    )
    start, end = np.asarray(positions[u], dtype=float), np.asarray(positions[v], dtype=float)
    dx, dy = end - start
    normal = np.array([-dy, dx]) / (math.hypot(dx, dy) or 1.0)
    xy = np.array(list(positions.values()), dtype=float)
    span = float(np.ptp(xy, axis=0).max()) or 1.0
    fractions = np.array([0.2, 0.25, 0.3, 0.35, 0.65, 0.7, 0.75, 0.8])  # the arrow: mid-link
    along = start + fractions[:, None] * (end - start)
    spots = np.concatenate([along + normal * 0.05 * span, along - normal * 0.05 * span])
    inside = np.all((spots >= xy.min(axis=0)) & (spots <= xy.max(axis=0)), axis=1)
    spots = spots[inside] if inside.any() else along  # on the drawing, where it is drawn
    x, y = spots[int(np.argmax(room_around(graph, positions, spots, edge)))]  # the emptiest
    ax.annotate(
        "bottleneck",
        (x, y),
        ha="center",
        va="center",
        fontsize=7,
        fontweight="bold",
        color=_BOTTLENECK_COLOUR,
        zorder=8,
        bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.85, "linewidth": 0},
    )


def _draw_failed(
    ax: Axes,
    graph: nx.Graph,
    positions: dict[str, tuple[float, float]],
    failed: list[tuple[str, str]],
    width: Callable[[tuple[str, str]], float],
    large: bool,
) -> None:
    """Each failed link redrawn red and dashed, and a red X on it where no other link is near."""
    ax.add_collection(
        LineCollection(
            [(positions[u], positions[v]) for u, v in failed],
            linewidths=[max(width(e), 1.5) for e in failed],
            linestyles=(0, (2, 1.5)),
            colors=_FAILED_COLOUR,
            zorder=2.5,
        )
    )
    marks = np.array([quiet_point(graph, positions, edge) for edge in failed], dtype=float)
    ax.scatter(
        marks[:, 0],
        marks[:, 1],
        marker="X",
        s=110 if not large else 50,
        c=_FAILED_COLOUR,
        edgecolors="white",
        linewidths=0.8,
        zorder=6,
    )


def _draw_stragglers(
    ax: Axes,
    topology: Topology,
    positions: dict[str, tuple[float, float]],
    slow: list[tuple[str, float]],
    large: bool,
) -> None:
    """A dashed ring around each straggler and its compute time per step below it."""
    if not slow:
        return
    xy = np.array([positions[node] for node, _ in slow], dtype=float)
    ring = 160 if large else 300 if dense_map(topology.graph, positions) else 900
    ax.scatter(
        xy[:, 0],
        xy[:, 1],
        s=ring,
        facecolors="none",
        edgecolors=_STRAGGLER_COLOUR,
        linewidths=2.0,
        linestyles="--",
        zorder=6,
    )
    for (node, seconds), (x, y) in zip(slow, xy, strict=True):
        ax.annotate(
            f"straggler {topology.label(node)}: {1e3 * seconds:.3g} ms/step",
            (x, y),
            xytext=(0, -17 if not large else -9),
            textcoords="offset points",
            ha="center",
            va="top",
            fontsize=7,
            color=_STRAGGLER_COLOUR,
            zorder=8,
            bbox={
                "boxstyle": "round,pad=0.15",
                "facecolor": "white",
                "alpha": 0.85,
                "linewidth": 0,
            },
        )


def _mark_handles(
    graph: nx.Graph,
    bottleneck: tuple[str, str] | None,
    shade: dict[frozenset[str], float],
    traffic: _Traffic,
    slow: list[tuple[str, float]],
) -> list[Line2D]:
    """Legend entries for the bottleneck and the stragglers."""
    handles = []
    if bottleneck is not None:
        capacity = graph.edges[bottleneck].get("capacity")
        what = format_bitrate(float(capacity), 3) if capacity else "capacity unknown"
        if traffic.timed:
            what += f", {shade[frozenset(bottleneck)]:.3g}% busy"
        handles.append(
            Line2D(
                [],
                [],
                color=_BOTTLENECK_COLOUR,
                alpha=0.45,
                linewidth=8,
                solid_capstyle="round",
                label=f"bottleneck ({what})",
            )
        )
    if slow:
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                markersize=13,
                markerfacecolor="none",
                markeredgecolor=_STRAGGLER_COLOUR,
                markeredgewidth=1.5,
                linestyle="",
                label=f"straggler (compute ≥ {STRAGGLER_FACTOR:g}× the median node)",
            )
        )
    return handles


def _capacity_widths(graph: nx.Graph, large: bool) -> Callable[[tuple[str, str]], float]:
    """A link's line width (points) from its capacity, on a log scale between the extremes."""
    capacities = [float(c) for *_, c in graph.edges(data="capacity") if c]
    low, high = (min(capacities), max(capacities)) if capacities else (1.0, 1.0)
    thin, thick = (0.6, 2.4) if large else (1.0, 6.0)

    def width(edge: tuple[str, str]) -> float:
        capacity = graph.edges[edge].get("capacity")
        if not capacity or high <= low:
            return (thin + thick) / 2
        return thin + (thick - thin) * math.log(capacity / low) / math.log(high / low)

    return width


def _capacity_handles(graph: nx.Graph, width: Callable[[tuple[str, str]], float]) -> list[Line2D]:
    """Legend entries for the line widths: the lowest, a middle and the highest capacity."""
    by_capacity: dict[float, tuple[str, str]] = {}
    for u, v, capacity in graph.edges(data="capacity"):
        if capacity:
            by_capacity.setdefault(float(capacity), (u, v))
    levels = sorted(by_capacity)
    if len(levels) > 3:
        levels = [levels[0], levels[len(levels) // 2], levels[-1]]
    return [
        Line2D(
            [],
            [],
            color="#555555",
            linewidth=width(by_capacity[capacity]),
            label=f"capacity {format_bitrate(capacity, 3)}",
        )
        for capacity in levels
    ]


def _link_handles(first: bool, later: bool, silent: bool, failed: bool) -> list[Line2D]:
    """Legend entries for the arrows and the kinds of links drawn."""
    handles = []
    for shown, colour, label in (
        (first, _ARROW_COLOUR, "plan: sender → receiver"),
        (later, _LATER_ARROW_COLOUR, "plan after an event"),
    ):
        if shown:
            handles.append(
                Line2D(
                    [],
                    [],
                    color=colour,
                    marker=">",
                    linestyle="-",
                    linewidth=0.8,
                    markersize=6,
                    label=label,
                )
            )
    if silent:
        handles.append(
            Line2D(
                [],
                [],
                color="#bdbdbd",
                linestyle=(0, (3, 2)),
                linewidth=1.5,
                label="silent link (no traffic)",
            )
        )
    if failed:
        handles.append(
            Line2D(
                [],
                [],
                color=_FAILED_COLOUR,
                marker="X",
                linestyle=(0, (2, 1.5)),
                markersize=8,
                markeredgecolor="white",
                linewidth=2,
                label="link failed (event)",
            )
        )
    return handles


def _plan_edges(
    run: RunData, variant: str, carried: dict[frozenset[str], float]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(sender, receiver) of the first plan, and of the plans after events, that carried traffic.

    The plans after events add the ``added_edges`` of ``events.json`` that are
    not in the first plan (a repaired tree's new links).
    """

    def busy(edge: tuple[str, str]) -> bool:
        return carried.get(frozenset(edge), 0.0) > 0

    first = [(str(a), str(b)) for a, b in run.plans.get(variant, {}).get("edges", [])]
    known = set(first)
    later = []
    for change in run.events.get(variant, []):
        for a, b in change.get("added_edges", []):
            edge = (str(a), str(b))
            if edge not in known:
                known.add(edge)
                later.append(edge)
    return [e for e in first if busy(e)], [e for e in later if busy(e)]


def _draw_arrows(
    ax: Axes,
    directed: list[tuple[str, str]],
    positions: dict[str, tuple[float, float]],
    large: bool,
    colour: str,
) -> None:
    """An arrow at the middle of each plan link, pointing from sender to receiver."""
    if not directed:
        return
    start = np.array([positions[sender] for sender, _ in directed], dtype=float)
    end = np.array([positions[receiver] for _, receiver in directed], dtype=float)
    middle, direction = (start + end) / 2, end - start
    unit = direction / np.maximum(np.hypot(direction[:, 0], direction[:, 1]), 1e-12)[:, None]
    ax.quiver(
        middle[:, 0],
        middle[:, 1],
        unit[:, 0],
        unit[:, 1],
        angles="xy",
        pivot="mid",
        scale_units="inches",
        scale=8 if large else 4.5,
        width=0.003 if large else 0.004,
        headwidth=4,
        headlength=4,
        headaxislength=3.5,
        color=colour,
        edgecolor="white",
        linewidth=0.5,
        zorder=5,
    )


def _failed_links(run: RunData, variant: str, graph: nx.Graph) -> list[tuple[str, str]]:
    """The links that went down in the variant's events (``events.json``), in graph order."""
    lost = {
        frozenset(map(str, link))
        for change in run.events.get(variant, [])
        for link in change.get("lost_links", [])
    }
    return [edge for edge in graph.edges if frozenset(edge) in lost]


def node_roles(run: RunData, family: FamilyReport) -> dict[str, str]:
    """Each node's role in the words of the run's ``family``.

    The topology's roles (fusion, sensor, relay) unless the family names its
    own (``FamilyReport.node_roles``: MoE's token sources and expert nodes);
    a node the family does not name is then a relay.
    """
    graph = run.topology.graph
    hook = family.node_roles
    named = hook(run) if hook is not None else {}
    if not named:
        return {str(node): str(role) for node, role in graph.nodes(data="role")}
    return {str(node): named.get(str(node), "relay") for node in graph.nodes}


def _role_colours(roles: dict[str, str]) -> dict[str, str]:
    """A colour per role present: INL's fixed ones, then a palette for a family's own words."""
    present = sorted(set(roles.values()), key=lambda role: (role not in ROLE_COLOURS, role))
    others = iter(_OTHER_ROLE_COLOURS * (1 + len(present) // len(_OTHER_ROLE_COLOURS)))
    return {role: ROLE_COLOURS.get(role) or next(others) for role in present}


def _draw_nodes(
    ax: Axes,
    topology: Topology,
    roles: dict[str, str],
    positions: dict[str, tuple[float, float]],
    busy: set[str] | None = None,
) -> None:
    """Relays, then the other roles (the most numerous first), the fusion node on top;
    smaller as the network grows.

    With ``busy`` (crowded networks), relays outside it are drawn as small pale dots.
    """
    size = _node_size(topology, positions)
    if busy is not None:
        idle = [node for node, role in roles.items() if role == "relay" and node not in busy]
        _draw_idle(ax, idle, positions)
    colours = _role_colours(roles)
    counts = {role: sum(1 for r in roles.values() if r == role) for role in colours}
    order = sorted(colours, key=lambda role: (role != "relay", role == "fusion", -counts[role]))
    for role in order:
        nodes = [
            node
            for node, node_role in roles.items()
            if node_role == role and (busy is None or role != "relay" or node in busy)
        ]
        if nodes:
            _draw_role(ax, nodes, positions, colours[role], size, fusion=role == "fusion")


def _node_size(topology: Topology, positions: dict[str, tuple[float, float]]) -> float:
    """The marker size of a node: smaller as the network grows, small on a dense map."""
    if dense_map(topology.graph, positions):
        return _MAP_NODE_SIZE
    n_nodes = topology.graph.number_of_nodes()
    return 320 if n_nodes <= LABELLED_NODES_MAX else 40 if n_nodes <= 300 else 14


def _draw_idle(ax: Axes, idle: list[str], positions: dict[str, tuple[float, float]]) -> None:
    """Relays that carry nothing in a crowded network: small pale dots."""
    if idle:
        xy = np.array([positions[node] for node in idle], dtype=float)
        ax.scatter(xy[:, 0], xy[:, 1], s=0.5, c="#d0d0d0", linewidths=0, zorder=1)


def _draw_role(
    ax: Axes,
    nodes: list[str],
    positions: dict[str, tuple[float, float]],
    colour: str,
    size: float,
    *,
    fusion: bool,
) -> None:
    """The nodes of one role; the fusion node larger (on small markers), outlined, on top."""
    xy = np.array([positions[node] for node in nodes], dtype=float)
    ax.scatter(
        xy[:, 0],
        xy[:, 1],
        s=size * (4 if fusion and size < 320 else 1),
        c=colour,
        edgecolors="white" if not fusion else "black",
        linewidths=0.5,
        zorder=3 if not fusion else 4,
    )


def _draw_labels(
    ax: Axes, topology: Topology, positions: dict[str, tuple[float, float]], large: bool
) -> None:
    """Every node's label up to 40 nodes (short ones inside the node, longer ones beside it);
    the fusion node's alone on larger networks."""
    nodes = [topology.fusion] if large else topology.nodes
    inside = _SHORT_LABEL if not dense_map(topology.graph, positions) else 0
    for node in nodes:
        label = topology.label(node)
        x, y = positions[node]
        if not large and len(label) <= inside:
            ax.text(x, y, label, ha="center", va="center", fontsize=8, zorder=7)
            continue
        ax.annotate(
            label,
            (x, y),
            xytext=(0, 8 if not large else 7),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
            zorder=7,
            bbox={
                "boxstyle": "round,pad=0.15",
                "facecolor": "white",
                "alpha": 0.75,
                "linewidth": 0,
            },
        )


def event_marks(run: RunData, variant: str) -> list[tuple[float, str]]:
    """(training bytes per seed sent before the event step, description) of each event."""
    marks = []
    training = run.exchanges[
        (run.exchanges["variant"] == variant) & (run.exchanges["phase"] != "eval")
    ]
    seeds = max(training["seed"].nunique(), 1)
    for _epoch, step, description in event_steps(run, variant):
        marks.append((training.loc[training["step"] < step, "nbytes"].sum() / seeds, description))
    return marks


def event_times(run: RunData, variant: str) -> list[tuple[float, str]]:
    """(simulated training time when the event step starts, mean over seeds; description).

    The start of a step is the earliest ``t_start`` of its training records; the
    training clock runs on across epochs (evaluation does not delay it).
    """
    exchanges = run.exchanges
    training = exchanges[(exchanges["variant"] == variant) & (exchanges["phase"] != "eval")]
    marks = []
    for _epoch, step, description in event_steps(run, variant):
        starts = training[training["step"] == step].groupby("seed")["t_start"].min().dropna()
        if not starts.empty:
            marks.append((float(starts.mean()), description))
    return marks


def metric_time_figure(
    run: RunData, metric: str, label: str, variants: list[str] | None = None
) -> Figure:
    """``metric`` after each epoch against the cumulative simulated training time.

    One line per variant: the mean over seeds of ``metric`` and of
    ``sim_time_cum_s`` at the end of each epoch, with a ± one sample standard
    deviation band when there are two seeds or more. The time axis is
    logarithmic when the variants' training times differ by more than 10×.
    Events are marked where they happened, and the target of the time to
    target (:func:`~innet.report.summary.time_to_target`) is a dashed line.
    """
    from innet.report.summary import time_to_target

    metrics = run.metrics
    variants = run.variants if variants is None else variants
    styles = variant_styles(variants)
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    ax = figure.add_subplot()
    spread = metrics["seed"].nunique() >= 2
    ends = []
    for variant in variants:
        rows = metrics[metrics["variant"] == variant]
        if rows.empty or metric not in rows:
            continue
        curve = rows.groupby("epoch").agg(
            time=("sim_time_cum_s", "mean"), mean=(metric, "mean"), std=(metric, "std")
        )
        x = curve["time"].to_numpy(dtype=float)
        mean = curve["mean"].to_numpy(dtype=float)
        (line,) = ax.plot(x, mean, markersize=4, label=variant, **styles[variant].line())
        if spread:
            std = curve["std"].fillna(0.0).to_numpy(dtype=float)
            low, high = value_range(metric) or (-np.inf, np.inf)  # a band stays where values can be
            band = (np.clip(mean - std, low, high), np.clip(mean + std, low, high))
            ax.fill_between(x, *band, color=line.get_color(), alpha=0.2)
        for at_time, description in event_times(run, variant):
            ax.axvline(at_time, color=line.get_color(), linestyle=":", linewidth=1.2)
            ax.annotate(
                description,
                (at_time, 0.02),
                xycoords=("data", "axes fraction"),
                rotation=90,
                fontsize=7,
                color=line.get_color(),
                ha="right",
                va="bottom",
            )
        finite = x[np.isfinite(x) & (x > 0)]
        if finite.size:
            ends.append(float(finite.max()))
    if ends and max(ends) > 10 * min(ends):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    target, _ = time_to_target(metrics, metric, variants, run.seeds)
    if target is not None and ax.lines:
        ax.axhline(target["target"], color="#555555", linestyle="--", linewidth=1)
        ax.annotate(
            f"target {target['target']:.3f} ({100 * target['fraction_of_best']:g}% of best)",
            (0.01, target["target"]),
            xycoords=("axes fraction", "data"),
            ha="left",
            va="bottom",
            fontsize=8,
            color="#555555",
        )
    ax.set_xlabel("cumulative simulated training time per seed (s)")
    ax.set_ylabel(label)
    spread_text = " ± std" if spread else ""
    ax.set_title(f"{label.capitalize()} against simulated time\n(mean{spread_text} over seeds)")
    ax.grid(alpha=0.3)
    if ax.get_xscale() == "log":
        ax.grid(alpha=0.12, which="minor")
    outside_legend(figure)
    return figure


def _role_handles(roles: dict[str, str]) -> list[Line2D]:
    """Legend entries for the node roles present."""
    return [
        Line2D([], [], marker="o", linestyle="", color=colour, label=role)
        for role, colour in _role_colours(roles).items()
    ]


def _byte_scale(max_bytes: float) -> tuple[float, str]:
    return next(((scale, unit) for scale, unit in _BYTE_SCALES if max_bytes >= scale), (1.0, "B"))


def save_figure(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=_DPI)
    figure.clear()
    return path
