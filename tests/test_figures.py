"""The topology and sweep figures: no link through a node, nothing outside the canvas."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.quiver import Quiver
from matplotlib.text import Text

from innet.families import get_family
from innet.plans import build_plan
from innet.report.figures import topology_figure
from innet.report.layout import (
    clearance_for,
    edges_through_nodes,
    node_positions,
    separate_nodes,
)
from innet.report.sweep import aggregate, tradeoff_figure
from innet.topology import load_topology
from innet.topology.model import Topology

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGIES = ROOT / "topologies"
DRAWN = ("mesh14", "grid4x4", "geant", "colt150")


def quietly_load(name: str) -> Topology:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # geant's import reports the links it merges
        return load_topology(TOPOLOGIES / f"{name}.yaml")


@pytest.fixture(scope="module")
def topologies() -> dict[str, Topology]:
    return {name: quietly_load(name) for name in DRAWN}


def test_a_link_over_a_third_node_is_found_and_the_node_moved():
    graph = nx.Graph([("a", "c"), ("a", "b"), ("b", "c"), ("c", "d")])
    on_line = {"a": (0.0, 0.0), "b": (1.0, 0.0), "c": (2.0, 0.0), "d": (2.0, 1.0)}
    assert edges_through_nodes(graph, on_line, 0.1) == [(("a", "c"), "b")]
    near = {**on_line, "b": (1.0, 0.05)}  # 0.05 from the segment: within 0.1, not within 0.01
    assert edges_through_nodes(graph, near, 0.1) == [(("a", "c"), "b")]
    assert edges_through_nodes(graph, near, 0.01) == []
    beyond = {**on_line, "b": (3.0, 0.0)}  # on the line a-c but past its end: not on the link
    assert edges_through_nodes(nx.Graph([("a", "c")]), beyond, 0.1) == []
    moved = separate_nodes(graph, on_line, 0.1)
    assert edges_through_nodes(graph, moved, 0.1) == []
    assert {node: moved[node] for node in "acd"} == {node: on_line[node] for node in "acd"}


def test_the_default_mesh_draws_no_link_through_a_node(topologies):
    """mesh14's own coordinates: f-r3 and r5-s5 no longer pass over s2 and s4."""
    graph = topologies["mesh14"].graph
    given = {node: tuple(graph.nodes[node]["pos"]) for node in graph.nodes}
    assert edges_through_nodes(graph, given, clearance_for(graph, given)) == []
    assert node_positions(topologies["mesh14"]) == given  # nothing had to move


@pytest.mark.parametrize("name", ["geant", "colt150", "random_geometric30", "abilene"])
def test_layouts_of_shipped_networks_draw_no_link_through_a_node(name, topologies):
    topology = topologies.get(name) or quietly_load(name)
    positions = node_positions(topology)
    graph = topology.graph
    assert edges_through_nodes(graph, positions, clearance_for(graph, positions)) == []
    assert node_positions(topology) == positions  # deterministic


def fake_run(topology: Topology, failed: tuple[str, str] | None = None, family: str = "inl"):
    """The inputs a topology figure reads: the plans, events and link rows of a dijkstra run.

    Bytes and utilisation are made up (they only set colours); labels, legend
    and title are what the test checks.
    """
    plan = build_plan(topology, "dijkstra", 32768).to_json()
    rows = []
    for index, (sender, receiver) in enumerate(plan["edges"]):
        u, v = sorted((sender, receiver))
        rows.append({"variant": "dijkstra", "u": u, "v": v, "nbytes_per_seed": 1000.0 * (1 + index),
                     "utilisation": 0.01 * (1 + index % 7)})  # fmt: skip
    events = {}
    if failed is not None:
        events = {"dijkstra": [{"lost_links": [list(failed)], "added_edges": []}]}
    run = SimpleNamespace(
        topology=topology,
        plans={"dijkstra": plan},
        events=events,
        variant_config=lambda variant: {"routing": "dijkstra"},
        family=get_family(family),
    )
    return run, pd.DataFrame(rows), plan


def texts_outside(figure) -> list[str]:
    """The visible texts whose drawn extent leaves the canvas."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    box = figure.bbox
    hidden = set()  # texts matplotlib keeps but does not draw
    for ax in figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if not ax.axison:  # the ticks of an axes switched off
                hidden |= {id(text) for text in axis.findobj(Text)}
                continue
            low, high = sorted(axis.get_view_interval())
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                if (
                    not low - 1e-9 * abs(high - low)
                    <= tick.get_loc()
                    <= high + 1e-9 * abs(high - low)
                ):  # a tick beyond the axis' range
                    hidden |= {id(tick.label1), id(tick.label2)}
    outside = []
    for text in figure.findobj(Text):
        if not text.get_visible() or not text.get_text().strip() or id(text) in hidden:
            continue
        extent = text.get_window_extent(renderer)
        if (extent.x0 < box.x0 - 1 or extent.y0 < box.y0 - 1 or extent.x1 > box.x1 + 1
                or extent.y1 > box.y1 + 1):  # fmt: skip
            outside.append(text.get_text())
    return outside


@pytest.mark.parametrize("name", DRAWN)
def test_topology_figures_keep_every_text_on_the_canvas(name, topologies):
    topology = topologies[name]
    graph = topology.graph
    failed = next(iter(graph.edges))
    run, rows, plan = fake_run(topology, failed)
    figure = topology_figure(run, "dijkstra", rows, node_positions(topology))
    assert texts_outside(figure) == []
    ax = figure.axes[0]
    texts = [text.get_text() for text in figure.findobj(Text)]
    assert any("% of step time" in text for text in texts)  # the colour bar's label and unit
    assert any(text.startswith("capacity ") and "bps" in text for text in texts)
    assert "link failed (event)" in texts and "plan: sender → receiver" in texts
    colourbar = figure.axes[1]
    low, high = colourbar.get_ylim()
    assert high > low > -1e-12 and high == pytest.approx(7.0)  # 1% .. 7% utilisation
    if graph.number_of_nodes() <= 40:
        assert topology.label(topology.fusion) in texts
    # every plan link carries an arrow from sender to receiver
    (quiver,) = [child for child in ax.get_children() if isinstance(child, Quiver)]
    positions = node_positions(topology)
    for (sender, receiver), x, y, u, v in zip(
        plan["edges"], quiver.X, quiver.Y, quiver.U, quiver.V, strict=True
    ):
        direction = np.subtract(positions[receiver], positions[sender])
        assert np.allclose([u, v], direction / np.hypot(*direction))
        assert np.allclose([x, y], np.add(positions[sender], positions[receiver]) / 2)
    # the widths follow the capacities: thicker for faster links
    (used,) = [c for c in ax.collections if isinstance(c, LineCollection) and
               c.get_linestyle()[0][1] is None]  # fmt: skip
    assert (
        len(set(np.round(used.get_linewidths(), 6))) > 1
        or len({graph.edges[e].get("capacity") for e in graph.edges}) == 1
    )


def test_no_plan_arrows_for_families_whose_traffic_does_not_follow_the_plan(topologies):
    """MoE tokens go to the experts the routers choose: the plan's arrows would be wrong."""
    run, rows, _ = fake_run(topologies["mesh14"], family="moe")
    figure = topology_figure(run, "dijkstra", rows, node_positions(run.topology))
    ax = figure.axes[0]
    texts = [text.get_text() for text in figure.findobj(Text)]
    assert not [child for child in ax.get_children() if isinstance(child, Quiver)]
    assert "plan: sender → receiver" not in texts
    assert "(dijkstra)" not in ax.get_title()


def test_long_labels_fit_on_the_canvas(topologies):
    topology = topologies["mesh14"]
    graph = topology.graph.copy()
    for node in graph.nodes:  # the longest city names of the zoo's networks, at the edges
        graph.nodes[node]["label"] = f"Saint-Petersburg {node}"
    labelled = Topology(name="mesh14 with long labels", graph=graph)
    run, rows, _ = fake_run(labelled)
    figure = topology_figure(run, "dijkstra", rows, node_positions(labelled))
    assert texts_outside(figure) == []
    assert "Saint-Petersburg s1" in [text.get_text() for text in figure.findobj(Text)]


def test_sweep_figures_keep_every_text_on_the_canvas():
    runs = pd.DataFrame([
        {"point": f"p{i}", "gate.beta": beta, "variant": variant, "seed": seed,
         "accuracy": 0.9 - beta - 0.01 * seed, "latent_rate_bits": 100 * (1 - beta) + seed,
         "train_exchange_bytes": 1000 * (2 if variant == "dense" else 1),
         "sim_time_s": 0.5 if variant == "dense" else 0.1}
        for i, beta in enumerate([0.0, 0.001, 0.01, 0.1])
        for variant in ("dense", "dijkstra")
        for seed in range(3)
    ])  # fmt: skip
    columns = ["accuracy", "latent_rate_bits", "train_exchange_bytes", "sim_time_s"]
    summary = aggregate(runs, ["gate.beta"], columns)
    for against in ("gate.beta", "latent_rate_bits", "train_exchange_bytes", "sim_time_s"):
        figure = tradeoff_figure(summary, ["gate.beta"], "accuracy", against)
        assert texts_outside(figure) == []
        ax = figure.axes[0]
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_legend() is not None
        unit = {"latent_rate_bits": "(bits per sample)", "train_exchange_bytes": "(bytes)",
                "sim_time_s": "(s)", "gate.beta": "(as set in the scenario)"}[against]  # fmt: skip
        assert ax.get_xlabel().endswith(unit)
        if against == "gate.beta":
            assert ax.get_xscale() == "symlog"  # 0 and three decades
