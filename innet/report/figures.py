"""PNG figures of a run: where the traffic went, what it bought, and what each node sends.

- ``topology_<variant>.png``: the network drawn once per variant. Each link's
  width and colour show the training bytes per seed it carried (both
  directions, forward latents and backward gradients); links the variant
  left silent are thin dashed grey. Nodes are coloured by role.
- the scenario family's own figures (the ``inl`` family: accuracy against
  bytes, accuracy against simulated time and the latent rate per node; see
  :mod:`innet.families.inl.report`), which may use :func:`metric_time_figure`:
  a per-epoch metric against the cumulative simulated training time.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg
renderer, so no window opens and no global pyplot state is touched. Large
networks (more than 40 nodes) get small nodes and no labels; links are drawn as
one :class:`~matplotlib.collections.LineCollection` per kind, busiest on top,
so a network of thousands of links draws in about a second.

Nodes sit at their ``pos`` when every node has one (generated grids, rings and
geometric graphs; imported files, where ``pos`` is longitude and latitude).
Otherwise a seeded force-directed layout places them (:func:`node_positions`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

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

from innet.records import FIGURES_DIR
from innet.report.sections import event_steps
from innet.report.tables import undirected_link_totals
from innet.topology.model import Topology, node_key

if TYPE_CHECKING:
    from innet.report.rundir import RunData

__all__ = [
    "FIGURES_DIR",
    "LABELLED_NODES_MAX",
    "event_marks",
    "event_times",
    "metric_time_figure",
    "save_figure",
    "topology_figure_name",
    "node_positions",
    "draw_figures",
]


ROLE_COLOURS = {"fusion": "#d62728", "sensor": "#1f77b4", "relay": "#8c8c8c"}
LABELLED_NODES_MAX = 40
_SPRING_NODES_MAX = 300  # networkx's spring layout up to here, the numpy one above
_FORCE_NODES_MAX = 3000  # the dense numpy layout needs n^2 memory; spectral above
# viridis without its palest yellow, which hardly shows on white: the busiest links stay visible
_LINK_COLOURS = ListedColormap(mpl.colormaps["viridis"](np.linspace(0.0, 0.85, 256)), "links")
_BYTE_SCALES = ((1e9, "GB"), (1e6, "MB"), (1e3, "kB"), (1.0, "B"))
_DPI = 120


def topology_figure_name(variant: str) -> str:
    """File name of a variant's topology figure (unsafe characters become ``_``)."""
    return f"topology_{re.sub(r'[^A-Za-z0-9_.-]', '_', variant)}.png"


def node_positions(topology: Topology) -> dict[str, tuple[float, float]]:
    """Where to draw each node: its ``pos`` when every node has one, else a seeded layout.

    The layout is networkx's spring layout (seed 0) up to 300 nodes; up to
    3,000 nodes the same Fruchterman-Reingold forces computed with dense numpy
    arrays from a spectral start (about a second for 1,000 nodes, where networkx
    takes several); above that the spectral layout alone. All are deterministic.
    """
    graph = topology.graph
    if all(graph.nodes[node].get("pos") is not None for node in graph.nodes):
        return {node: tuple(graph.nodes[node]["pos"]) for node in graph.nodes}
    if graph.number_of_nodes() <= _SPRING_NODES_MAX:
        layout = nx.spring_layout(graph, seed=0)
    elif graph.number_of_nodes() <= _FORCE_NODES_MAX:
        layout = _force_layout(graph)
    else:
        layout = nx.spectral_layout(graph)
    return {node: (float(xy[0]), float(xy[1])) for node, xy in layout.items()}


def _force_layout(graph: nx.Graph, iterations: int = 50) -> dict[str, np.ndarray]:
    """Fruchterman-Reingold on dense float32 arrays, from the spectral layout plus jitter.

    Each node is pushed away from every other with force ``k^2 / d`` and pulled
    towards its neighbours with ``d^2 / k`` (``k = 1 / sqrt(n)``); each step
    moves a node at most the current temperature, which cools linearly to 0.
    """
    nodes = sorted(graph.nodes, key=node_key)
    index = {node: i for i, node in enumerate(nodes)}
    n = len(nodes)
    adjacency = np.zeros((n, n), dtype=np.float32)
    for u, v in graph.edges:
        adjacency[index[u], index[v]] = adjacency[index[v], index[u]] = 1.0
    pos = _spectral_start(graph, nodes)
    pos = (pos - pos.min(axis=0)) / np.maximum(np.ptp(pos, axis=0), 1e-9)
    pos += np.random.default_rng(0).uniform(-0.02, 0.02, pos.shape).astype(np.float32)
    k = np.float32(1.0 / np.sqrt(n))
    temperature = 0.1
    for _ in range(iterations):
        dx = pos[:, 0, None] - pos[None, :, 0]
        dy = pos[:, 1, None] - pos[None, :, 1]
        squared = np.maximum(dx * dx + dy * dy, np.float32(1e-4))
        # force[i, j] pushes i away from j (> 0) or pulls it closer (< 0), along pos[i] - pos[j]
        force = k * k / squared - adjacency * np.sqrt(squared) / k
        displacement = pos * force.sum(axis=1)[:, None] - force @ pos
        length = np.maximum(np.linalg.norm(displacement, axis=1), np.float32(0.01))
        pos += displacement * (np.float32(temperature) / length)[:, None]
        temperature -= 0.1 / (iterations + 1)
    return dict(zip(nodes, pos, strict=True))


def _spectral_start(graph: nx.Graph, nodes: list[str]) -> np.ndarray:
    """Spectral coordinates: the Laplacian's 2nd and 3rd eigenvectors.

    networkx's sparse solver above 500 nodes; below, a dense symmetric one
    (``spectral_layout`` would use a general, much slower, eigensolver there).
    """
    if len(nodes) >= 500:
        spectral = nx.spectral_layout(graph)
        return np.array([spectral[node] for node in nodes], dtype=np.float32)
    laplacian = nx.laplacian_matrix(graph, nodelist=nodes).toarray().astype(float)
    _, vectors = np.linalg.eigh(laplacian)
    return vectors[:, 1:3].astype(np.float32)


def draw_figures(run: RunData, link_totals: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Draw every figure of a run into ``out_dir`` and return the written paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    variants = run.variants
    link_bytes = undirected_link_totals(link_totals)
    positions = node_positions(run.topology)
    max_bytes = float(link_bytes["nbytes_per_seed"].max()) if not link_bytes.empty else 0.0
    written = []
    for variant in variants:
        figure = _topology_figure(run, variant, link_bytes, positions, max_bytes)
        written.append(save_figure(figure, out_dir / topology_figure_name(variant)))
    return written


def _topology_figure(
    run: RunData,
    variant: str,
    link_bytes: pd.DataFrame,
    positions: dict[str, tuple[float, float]],
    max_bytes: float,
) -> Figure:
    topology = run.topology
    graph = topology.graph
    n_nodes = graph.number_of_nodes()
    large = n_nodes > LABELLED_NODES_MAX
    rows = link_bytes[link_bytes["variant"] == variant]
    carried: dict[tuple[str, str], float] = {}
    for u, v, value in zip(rows["u"], rows["v"], rows["nbytes_per_seed"], strict=True):
        carried[(u, v)] = carried[(v, u)] = float(value)
    used = sorted(
        (edge for edge in graph.edges if carried.get(edge, 0.0) > 0), key=lambda e: carried[e]
    )  # the busiest links are drawn last, on top
    unused = [edge for edge in graph.edges if carried.get(edge, 0.0) <= 0]
    scale, unit = _byte_scale(max_bytes)
    norm = Normalize(vmin=0.0, vmax=max(max_bytes, 1.0) / scale)
    cmap = _LINK_COLOURS
    # thinner lines where links are many, so that they do not cover each other
    base_width, extra_width = (1.0, 5.0) if graph.number_of_edges() <= 200 else (0.5, 1.5)

    figure = Figure(figsize=(7, 5.5) if not large else (9, 7) if n_nodes <= 300 else (11, 9))
    figure.set_layout_engine("constrained")
    ax = figure.add_subplot()
    if unused:
        ax.add_collection(
            LineCollection(
                [(positions[u], positions[v]) for u, v in unused],
                linewidths=0.5 if large else 0.6,
                linestyles="dashed",
                colors="#c8c8c8",
                zorder=1,
            )
        )
    if used:
        values = np.array([carried[edge] / scale for edge in used])
        ax.add_collection(
            LineCollection(
                [(positions[u], positions[v]) for u, v in used],
                linewidths=base_width + extra_width * values / norm.vmax,
                colors=cmap(norm(values)),
                capstyle="round",
                zorder=2,
            )
        )
    _draw_nodes(ax, topology, positions)
    if not large:
        for node in topology.nodes:
            x, y = positions[node]
            ax.text(x, y, topology.label(node), ha="center", va="center", fontsize=8, zorder=5)
    colourbar = figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.8)
    colourbar.set_label(f"training traffic per seed ({unit}), both directions")
    ax.legend(handles=_role_handles(graph), loc="best", fontsize=8, framealpha=0.8)
    total = float(rows["nbytes_per_seed"].sum()) if not rows.empty else 0.0
    total_scale, total_unit = _byte_scale(total)
    routing = run.variant_config(variant).get("routing") or run.plans.get(variant, {}).get(
        "routing", ""
    )
    ax.set_title(
        f"{topology.name}: {variant} ({routing}) — {len(used):,} of "
        f"{graph.number_of_edges():,} links used, {total / total_scale:.3g} {total_unit} per seed"
    )
    ax.autoscale_view()
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_axis_off()
    return figure


def _draw_nodes(ax, topology: Topology, positions: dict[str, tuple[float, float]]) -> None:
    """Relays, then sensors, then the fusion node on top; smaller as the network grows."""
    graph = topology.graph
    n_nodes = graph.number_of_nodes()
    size = 320 if n_nodes <= LABELLED_NODES_MAX else 40 if n_nodes <= 300 else 14
    for role, colour in (("relay", ROLE_COLOURS["relay"]), ("sensor", ROLE_COLOURS["sensor"]),
                         ("fusion", ROLE_COLOURS["fusion"])):  # fmt: skip
        nodes = [node for node, node_role in graph.nodes(data="role") if node_role == role]
        if not nodes:
            continue
        xy = np.array([positions[node] for node in nodes], dtype=float)
        ax.scatter(
            xy[:, 0],
            xy[:, 1],
            s=size * (4 if role == "fusion" and n_nodes > LABELLED_NODES_MAX else 1),
            c=colour,
            edgecolors="white" if role != "fusion" else "black",
            linewidths=0.5,
            zorder=3 if role != "fusion" else 4,
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
        (line,) = ax.plot(x, mean, marker="o", markersize=3, label=variant)
        if spread:
            std = curve["std"].fillna(0.0).to_numpy(dtype=float)
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        for at_time, description in event_times(run, variant):
            ax.axvline(at_time, color=line.get_color(), linestyle=":", linewidth=1.2)
            ax.annotate(description, (at_time, 0.02), xycoords=("data", "axes fraction"),
                        rotation=90, fontsize=7, color=line.get_color(),
                        ha="right", va="bottom")  # fmt: skip
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
    ax.set_title(
        f"{label.capitalize()} against simulated time (mean{' ± std' if spread else ''} over seeds)"
    )
    ax.grid(alpha=0.3)
    if ax.get_xscale() == "log":
        ax.grid(alpha=0.12, which="minor")
    if ax.lines:
        ax.legend()
    return figure


def _role_handles(graph: nx.Graph) -> list[Line2D]:
    present = {role for _, role in graph.nodes(data="role")}
    return [
        Line2D([], [], marker="o", linestyle="", color=colour, label=role)
        for role, colour in ROLE_COLOURS.items()
        if role in present
    ]


def _byte_scale(max_bytes: float) -> tuple[float, str]:
    return next(((scale, unit) for scale, unit in _BYTE_SCALES if max_bytes >= scale), (1.0, "B"))


def save_figure(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=_DPI)
    figure.clear()
    return path
