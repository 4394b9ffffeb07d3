"""PNG figures of a run: where the traffic went, what it bought, and what each node sends.

- ``topology_<variant>.png``: the network drawn once per variant. Each link's
  width and colour show the training bytes per seed it carried (both
  directions, forward latents and backward gradients); links the variant
  left silent are thin dashed grey. Nodes are coloured by role.
- ``accuracy_vs_bytes.png``: test accuracy after each epoch against the
  cumulative training exchange (from the exchange records), one line per
  variant: the mean over seeds, with a band of ± one sample standard deviation.
- ``latent_rate_per_node.png``: the final latent rate of every sending node,
  mean over seeds (± std up to 40 nodes), one bar per variant.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg
renderer, so no window opens and no global pyplot state is touched. Large
networks (more than 40 nodes) get small nodes and no labels.
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
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from innet.report.tables import training_exchange_per_epoch, undirected_link_totals
from innet.topology.model import Topology, node_key

if TYPE_CHECKING:
    from innet.report.rundir import RunData

__all__ = [
    "FIGURES_DIR",
    "ACCURACY_FIGURE",
    "RATE_FIGURE",
    "topology_figure_name",
    "node_positions",
    "draw_figures",
]

FIGURES_DIR = "figures"
ACCURACY_FIGURE = "accuracy_vs_bytes.png"
RATE_FIGURE = "latent_rate_per_node.png"

ROLE_COLOURS = {"fusion": "#d62728", "sensor": "#1f77b4", "relay": "#8c8c8c"}
_LABELLED_NODES_MAX = 40
_BYTE_SCALES = ((1e9, "GB"), (1e6, "MB"), (1e3, "kB"), (1.0, "B"))
_DPI = 120


def topology_figure_name(variant: str) -> str:
    """File name of a variant's topology figure (unsafe characters become ``_``)."""
    return f"topology_{re.sub(r'[^A-Za-z0-9_.-]', '_', variant)}.png"


def node_positions(topology: Topology) -> dict[str, tuple[float, float]]:
    """The nodes' ``pos`` attributes when every node has one, else a seeded spring layout."""
    graph = topology.graph
    if all(graph.nodes[node].get("pos") is not None for node in graph.nodes):
        return {node: tuple(graph.nodes[node]["pos"]) for node in graph.nodes}
    layout = nx.spring_layout(graph, seed=0)
    return {node: (float(xy[0]), float(xy[1])) for node, xy in layout.items()}


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
        written.append(_save(figure, out_dir / topology_figure_name(variant)))
    written.append(_save(_accuracy_figure(run, variants), out_dir / ACCURACY_FIGURE))
    written.append(_save(_rate_figure(run, variants), out_dir / RATE_FIGURE))
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
    large = graph.number_of_nodes() > _LABELLED_NODES_MAX
    rows = link_bytes[link_bytes["variant"] == variant]
    carried = {frozenset((row.u, row.v)): float(row.nbytes_per_seed) for row in rows.itertuples()}
    used = [edge for edge in graph.edges if carried.get(frozenset(edge), 0.0) > 0]
    unused = [edge for edge in graph.edges if carried.get(frozenset(edge), 0.0) <= 0]
    scale, unit = _byte_scale(max_bytes)
    norm = Normalize(vmin=0.0, vmax=max(max_bytes, 1.0) / scale)
    cmap = mpl.colormaps["viridis"]

    figure = Figure(figsize=(9, 7) if large else (7, 5.5), layout="constrained")
    ax = figure.add_subplot()
    if unused:
        nx.draw_networkx_edges(
            graph,
            positions,
            edgelist=unused,
            ax=ax,
            width=0.6,
            style="dashed",
            edge_color="#bbbbbb",
        )
    if used:
        values = [carried[frozenset(edge)] / scale for edge in used]
        nx.draw_networkx_edges(
            graph,
            positions,
            edgelist=used,
            ax=ax,
            width=[1.0 + 5.0 * value / norm.vmax for value in values],
            edge_color=[cmap(norm(value)) for value in values],
        )
    nodes = topology.nodes
    nx.draw_networkx_nodes(
        graph,
        positions,
        nodelist=nodes,
        ax=ax,
        node_size=40 if large else 320,
        node_color=[ROLE_COLOURS.get(graph.nodes[node].get("role"), "#cccccc") for node in nodes],
        edgecolors="white",
        linewidths=0.5,
    )
    if not large:
        labels = {node: topology.label(node) for node in nodes}
        nx.draw_networkx_labels(graph, positions, labels=labels, ax=ax, font_size=8)
    colourbar = figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.8)
    colourbar.set_label(f"training traffic per seed ({unit}), both directions")
    ax.legend(handles=_role_handles(graph), loc="best", fontsize=8, framealpha=0.8)
    total = float(rows["nbytes_per_seed"].sum()) if not rows.empty else 0.0
    total_scale, total_unit = _byte_scale(total)
    routing = run.variant_config(variant).get("routing") or run.plans.get(variant, {}).get(
        "routing", ""
    )
    ax.set_title(
        f"{topology.name}: {variant} ({routing}) — {len(used)} of "
        f"{graph.number_of_edges()} links used, {total / total_scale:.3g} {total_unit} per seed"
    )
    ax.set_axis_off()
    return figure


def _accuracy_figure(run: RunData, variants: list[str]) -> Figure:
    curves = _accuracy_curves(run)
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    ax = figure.add_subplot()
    for variant in variants:
        curve = curves[curves["variant"] == variant]
        if curve.empty:
            continue
        x = curve["bytes_mean"].to_numpy() / 1e6
        mean = curve["accuracy_mean"].to_numpy()
        std = curve["accuracy_std"].to_numpy()
        (line,) = ax.plot(x, mean, marker="o", markersize=3, label=variant)
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("cumulative training exchange per seed (MB)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Test accuracy against training bytes (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()
    return figure


def _accuracy_curves(run: RunData) -> pd.DataFrame:
    """Per variant and epoch: mean cumulative training bytes, accuracy mean and std."""
    metrics = run.metrics[["variant", "seed", "epoch", "accuracy"]]
    per_epoch = training_exchange_per_epoch(run.exchanges)[["variant", "seed", "epoch", "nbytes"]]
    joined = metrics.merge(per_epoch, on=["variant", "seed", "epoch"], how="left")
    joined["nbytes"] = joined["nbytes"].fillna(0)
    joined = joined.sort_values(["variant", "seed", "epoch"])
    joined["bytes_cum"] = joined.groupby(["variant", "seed"])["nbytes"].cumsum()
    curves = (
        joined.groupby(["variant", "epoch"])
        .agg(
            bytes_mean=("bytes_cum", "mean"),
            accuracy_mean=("accuracy", "mean"),
            accuracy_std=("accuracy", "std"),
        )
        .reset_index()
    )
    curves["accuracy_std"] = curves["accuracy_std"].fillna(0.0)
    return curves


def _rate_figure(run: RunData, variants: list[str]) -> Figure:
    rates = run.node_rates
    nodes = sorted(rates["node"].unique(), key=node_key)
    many = len(nodes) > _LABELLED_NODES_MAX
    width_inches = float(np.clip(2.0 + 0.08 * len(nodes) * max(len(variants), 1), 6.0, 18.0))
    figure = Figure(figsize=(width_inches, 4.5), layout="constrained")
    ax = figure.add_subplot()
    if not nodes:
        ax.text(0.5, 0.5, "no node rates recorded", ha="center", va="center")
        ax.set_axis_off()
        return figure
    stats = rates.groupby(["variant", "node"])["rate_bits"].agg(["mean", "std"]).fillna(0.0)
    positions = np.arange(len(nodes))
    bar_width = 0.8 / max(len(variants), 1)
    for index, variant in enumerate(variants):
        if variant not in stats.index.get_level_values("variant"):
            continue
        rows = stats.loc[variant].reindex(nodes)
        ax.bar(
            positions + (index - (len(variants) - 1) / 2) * bar_width,
            rows["mean"].fillna(0.0),
            width=bar_width,
            yerr=None if many or rates["seed"].nunique() < 2 else rows["std"].fillna(0.0),
            capsize=2,
            label=variant,
        )
    graph = run.topology.graph
    labels = [run.topology.label(node) if node in graph else node for node in nodes]
    ax.set_xticks(positions, labels, rotation=90 if len(nodes) > 12 else 0)
    ax.tick_params(axis="x", labelsize=5 if many else 8)
    ax.set_xlim(-0.6, len(nodes) - 0.4)
    ax.set_ylabel("latent rate (bits/sample)")
    spread = "" if many or rates["seed"].nunique() < 2 else " ± std"
    ax.set_title(f"Latent rate per sending node (final evaluation, mean{spread} over seeds)")
    ax.grid(axis="y", alpha=0.3)
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


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=_DPI)
    figure.clear()
    return path
