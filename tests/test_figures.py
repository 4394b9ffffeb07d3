"""The topology and sweep figures: no link through a node, nothing outside the canvas, the
bottleneck, failed links and stragglers marked, a distinct look per variant."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from figure_checks import figure_problems, texts_outside
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure
from matplotlib.quiver import Quiver
from matplotlib.text import Text

from innet.app.sweep_report import aggregate, tradeoff_figure
from innet.core.plans import build_plan
from innet.core.topology import load_topology
from innet.core.topology.model import Topology
from innet.families import FAMILIES
from innet.report.figures import (
    CROWDED_NODES_MIN,
    STRAGGLER_FACTOR,
    outside_legend,
    topology_figure,
    variant_styles,
)
from innet.report.layout import (
    MAP_CLEARANCE,
    clearance_for,
    dense_map,
    edges_through_nodes,
    node_positions,
    place_missing,
    separate_nodes,
)

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


def fake_run(
    topology: Topology,
    failed: tuple[str, str] | None = None,
    family: str = "inl",
    slow: str | None = None,
):
    """The inputs a topology figure reads: the plans, events and link rows of a dijkstra run.

    Bytes and utilisation are made up (they only set colours and the
    bottleneck); labels, legend and title are what the test checks. With
    ``slow``, that node computes 100 times longer per step than the others.
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
    nodes = None
    if slow is not None:
        nodes = pd.DataFrame([{"variant": "dijkstra", "node": node, "forward_s": 1e-3,
                               "backward_s": 0.1 if node == slow else 1e-3}
                              for node in topology.graph.nodes])  # fmt: skip
    run = SimpleNamespace(
        topology=topology,
        plans={"dijkstra": plan},
        events=events,
        nodes=nodes,
        variant_config=lambda variant: {"routing": "dijkstra"},
        family_name=family,
        tables={},
    )
    return run, pd.DataFrame(rows), plan


@pytest.mark.parametrize("name", DRAWN)
def test_topology_figures_keep_every_text_on_the_canvas(name, topologies):
    topology = topologies[name]
    graph = topology.graph
    failed = next(iter(graph.edges))
    run, rows, plan = fake_run(topology, failed)
    figure = topology_figure(
        run, FAMILIES.get(run.family_name).report, "dijkstra", rows, node_positions(topology)
    )
    assert figure_problems(figure) == []
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
               c.get_linestyle()[0][1] is None and c.get_alpha() is None]  # fmt: skip
    assert (
        len(set(np.round(used.get_linewidths(), 6))) > 1
        or len({graph.edges[e].get("capacity") for e in graph.edges}) == 1
    )


def test_no_plan_arrows_for_families_whose_traffic_does_not_follow_the_plan(topologies):
    """MoE tokens go to the experts the routers choose: the plan's arrows would be wrong."""
    run, rows, _ = fake_run(topologies["mesh14"], family="moe")
    figure = topology_figure(
        run, FAMILIES.get(run.family_name).report, "dijkstra", rows, node_positions(run.topology)
    )
    ax = figure.axes[0]
    texts = [text.get_text() for text in figure.findobj(Text)]
    assert not [child for child in ax.get_children() if isinstance(child, Quiver)]
    assert "plan: sender → receiver" not in texts
    assert "(dijkstra)" not in ax.get_title()


def test_a_family_names_its_nodes_in_the_topology_figure(topologies):
    """MoE's nodes are token sources, expert nodes and relays, not fusion/sensor/relay."""
    run, rows, _ = fake_run(topologies["mesh14"], family="moe")
    nodes = sorted(run.topology.graph.nodes)
    roles = ["source" if i < 3 else "experts" if i < 9 else "relay" for i in range(len(nodes))]
    run.tables["moe_nodes"] = pd.DataFrame({"node": nodes, "role": roles})
    figure = topology_figure(
        run, FAMILIES.get(run.family_name).report, "dijkstra", rows, node_positions(run.topology)
    )
    legend = {text.get_text() for legend in figure.legends for text in legend.get_texts()}
    assert {"token source", "expert node", "relay"} <= legend
    assert not {"fusion", "sensor"} & legend


def test_long_labels_fit_on_the_canvas(topologies):
    topology = topologies["mesh14"]
    graph = topology.graph.copy()
    for node in graph.nodes:  # the longest city names of the zoo's networks, at the edges
        graph.nodes[node]["label"] = f"Saint-Petersburg {node}"
    labelled = Topology(name="mesh14 with long labels", graph=graph)
    run, rows, _ = fake_run(labelled)
    figure = topology_figure(
        run, FAMILIES.get(run.family_name).report, "dijkstra", rows, node_positions(labelled)
    )
    assert texts_outside(figure) == []
    assert "Saint-Petersburg s1" in [text.get_text() for text in figure.findobj(Text)]


def test_sweep_figures_keep_every_text_on_the_canvas():
    """Bytes and time change along the sweep here, so each is the x axis of its figure."""
    runs = pd.DataFrame([
        {"point": f"p{i}", "gate.beta": beta, "variant": variant, "seed": seed,
         "accuracy": 0.9 - beta - 0.01 * seed, "latent_rate_bits": 100 * (1 - beta) + seed,
         "train_exchange_bytes": 1000 * (2 if variant == "dense" else 1) * (1 + 10 * beta),
         "sim_time_s": (0.5 if variant == "dense" else 0.1) * (1 + 10 * beta)}
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


def test_the_checks_find_clipped_text_covered_data_and_look_alike_entries():
    """The checks the figure tests rely on can fail: each on a figure made to fail it."""
    figure = Figure(figsize=(4, 3), layout="constrained")
    ax = figure.add_subplot()
    ax.plot([0, 1], [0, 1], color="C0", label="a")
    ax.plot([0, 1], [1, 0], color="C0", label="b")  # drawn like "a"
    ax.legend(loc="center")  # on the crossing of both lines
    ax.set_title("a title far wider than a four-inch figure can ever hold on one line of text")
    problems = figure_problems(figure)
    assert any(line.startswith("text outside the canvas: 'a title far") for line in problems)
    assert any(line.startswith("legend over data:") for line in problems)
    assert "legend entries alike: 'a' and 'b' look the same" in problems
    tidy = Figure(figsize=(6, 3), layout="constrained")
    ax = tidy.add_subplot()
    styles = variant_styles(["a", "b"])
    for name, y in (("a", [0, 1]), ("b", [1, 0])):
        ax.plot([0, 1], y, label=name, **styles[name].line())
    outside_legend(tidy)
    assert figure_problems(tidy) == []


@pytest.mark.parametrize("count", [3, 10, 11, 14, 40, 41, 70])
def test_every_variant_gets_its_own_look(count):
    styles = list(variant_styles([f"v{k}" for k in range(count)]).values())
    lines = {(str(s.colour), s.marker, s.linestyle) for s in styles}
    bars = {(str(s.colour), s.hatch) for s in styles}
    assert len(lines) == count and len(bars) == count
    if count <= 10:  # up to ten: tab10's colours, solid lines, plain bars
        assert len({str(s.colour) for s in styles}) == count
        assert {s.linestyle for s in styles} == {"-"} and {s.hatch for s in styles} == {""}


def test_many_variants_legend_sits_beside_the_axes_and_fits():
    """Fourteen variants (rate_costs): the legend is off the data and inside the canvas."""
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    ax = figure.add_subplot()
    names = [f"disc_m16_b1e-{k}_entropy" for k in range(30)]
    styles = variant_styles(names)
    for k, name in enumerate(names):
        ax.plot([0, 1, 2], [k, k + 1, k], label=name, **styles[name].line())
    legend = outside_legend(figure)
    assert legend is not None and legend._ncols == 2  # 30 entries: two columns
    assert figure_problems(figure) == []


def crossing_counts(graph: nx.Graph, positions: dict) -> dict[tuple[str, str], int]:
    """How many other links each drawn link crosses."""

    def crosses(a, b, c, d) -> bool:
        def side(p, q, r) -> float:
            return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

        return side(a, b, c) * side(a, b, d) < 0 and side(c, d, a) * side(c, d, b) < 0

    edges = list(graph.edges)
    return {
        (u, v): sum(
            crosses(positions[u], positions[v], positions[x], positions[y])
            for x, y in edges
            if not {x, y} & {u, v}
        )  # fmt: skip
        for u, v in edges
    }


def distance_to_segment(point, a, b) -> float:
    point, a, b = (np.asarray(x, dtype=float) for x in (point, a, b))
    t = np.clip(np.dot(point - a, b - a) / np.dot(b - a, b - a), 0.0, 1.0)
    return float(np.hypot(*(point - (a + t * (b - a)))))


def test_a_failed_link_is_redrawn_and_marked_away_from_the_links_it_crosses(topologies):
    """link_failure: the X sat on a crossing; now it sits on the failed link, clear of others."""
    topology = topologies["mesh14"]
    graph = topology.graph
    positions = node_positions(topology)
    counts = crossing_counts(graph, positions)
    failed = max(counts, key=counts.get)
    assert counts[failed] >= 1  # the case of the issue: another link crosses it
    run, rows, _ = fake_run(topology, failed)
    figure = topology_figure(run, FAMILIES.get(run.family_name).report, "dijkstra", rows, positions)
    assert figure_problems(figure) == []
    ax = figure.axes[0]
    segment = sorted(map(tuple, (positions[failed[0]], positions[failed[1]])))
    red = (0.839, 0.153, 0.157)  # the failed link's colour, #d62728
    dashed_red = [c for c in ax.collections if isinstance(c, LineCollection)
                  and c.get_linestyle()[0][1] is not None
                  and np.allclose(c.get_colors()[0][:3], red, atol=0.01)]  # fmt: skip
    assert len(dashed_red) == 1
    (drawn,) = dashed_red[0].get_segments()
    assert np.allclose(sorted(map(tuple, drawn)), segment)
    (cross,) = [c for c in ax.collections if isinstance(c, PathCollection)
                and c.get_offsets().shape == (1, 2) and c.get_sizes()[0] == 110]  # fmt: skip
    point = cross.get_offsets()[0]
    assert distance_to_segment(point, *segment) < 1e-9  # on the failed link
    others = [distance_to_segment(point, positions[u], positions[v])
              for u, v in graph.edges if {u, v} != set(failed)]  # fmt: skip
    assert min(others) >= 0.5 * clearance_for(graph, positions)  # not on a crossing
    assert "link failed (event)" in [text.get_text() for text in figure.findobj(Text)]


def test_a_straggler_is_ringed_labelled_and_in_the_legend(topologies):
    topology = topologies["mesh14"]
    positions = node_positions(topology)
    run, rows, _ = fake_run(topology, slow="r1")
    figure = topology_figure(run, FAMILIES.get(run.family_name).report, "dijkstra", rows, positions)
    assert figure_problems(figure) == []
    ax = figure.axes[0]
    rings = [c for c in ax.collections if isinstance(c, PathCollection)
             and len(c.get_facecolors()) == 0]  # fmt: skip
    assert len(rings) == 1 and np.allclose(rings[0].get_offsets(), [positions["r1"]])
    texts = [text.get_text() for text in figure.findobj(Text)]
    assert "straggler r1: 101 ms/step" in texts  # 1 ms forward + 100 ms backward
    assert f"straggler (compute ≥ {STRAGGLER_FACTOR:g}× the median node)" in texts
    calm, rows, _ = fake_run(topology)  # no compute times: no straggler
    calm_figure = topology_figure(calm, FAMILIES.get("inl").report, "dijkstra", rows, positions)
    texts = [text.get_text() for text in calm_figure.findobj(Text)]
    assert not [text for text in texts if text.startswith("straggler")]


def test_the_bottleneck_is_the_busiest_link_and_stands_out(topologies):
    """Widths still mean capacity; the busiest link glows and is named in the legend."""
    topology = topologies["mesh14"]
    graph = topology.graph
    positions = node_positions(topology)
    run, rows, _ = fake_run(topology)
    busiest = rows.loc[rows["utilisation"].idxmax()]  # the first of the 7% links
    figure = topology_figure(run, FAMILIES.get(run.family_name).report, "dijkstra", rows, positions)
    ax = figure.axes[0]
    (glow,) = [c for c in ax.collections if isinstance(c, LineCollection)
               and c.get_alpha() is not None]  # fmt: skip
    (segment,) = glow.get_segments()
    ends = sorted((positions[busiest["u"]], positions[busiest["v"]]))
    assert np.allclose(sorted(map(tuple, segment)), ends)
    capacity = graph.edges[busiest["u"], busiest["v"]]["capacity"]
    texts = [text.get_text() for text in figure.findobj(Text)]
    from innet.core.units import format_bitrate

    assert f"bottleneck ({format_bitrate(capacity, 3)}, 7% busy)" in texts
    assert "bottleneck" in texts  # the word on the map
    assert "line width: link capacity; colour: utilisation (bar)" in texts


def test_a_map_with_a_few_unplaced_cities_stays_a_map(topologies):
    """GEANT lacks coordinates for three nodes: they go beside their neighbours, the map stays."""
    topology = topologies["geant"]
    graph = topology.graph
    given = {n: graph.nodes[n]["pos"] for n in graph.nodes if graph.nodes[n].get("pos")}
    missing = sorted(set(graph.nodes) - set(given))
    assert len(missing) == 3  # UA, MD, BY
    placed = place_missing(graph, given)
    assert {node: placed[node] for node in given} == {n: tuple(xy) for n, xy in given.items()}
    span = float(np.ptp(np.array(list(given.values())), axis=0).max())
    for node in missing:
        around = np.mean([given[n] for n in graph.neighbors(node) if n in given], axis=0)
        assert 0 < np.hypot(*np.subtract(placed[node], around)) <= 8 * MAP_CLEARANCE * span
    positions = node_positions(topology)
    assert dense_map(graph, given)
    moved = [np.hypot(*np.subtract(positions[n], given[n])) for n in given]
    assert np.median(moved) < MAP_CLEARANCE * span  # most cities where the map has them
    assert max(moved) < 0.1 * span
    assert edges_through_nodes(graph, positions, clearance_for(graph, positions)) == []


def test_crowded_networks_keep_their_text_on_the_canvas():
    """From 2,000 nodes (scale_10k, scale_100k) silent links are left out; the checks still hold."""
    geometric = nx.random_geometric_graph(2300, 0.04, seed=0)
    geometric = geometric.subgraph(max(nx.connected_components(geometric), key=len))
    assert geometric.number_of_nodes() >= CROWDED_NODES_MIN
    graph = nx.Graph()
    first = min(geometric.nodes)
    for node, xy in geometric.nodes(data="pos"):
        role = "fusion" if node == first else "sensor" if node % 40 == 0 else "relay"
        graph.add_node(f"n{node}", role=role, label=f"n{node}", pos=tuple(xy), view=None)
    for u, v in geometric.edges:
        graph.add_edge(f"n{u}", f"n{v}", capacity=1e6 * (1 + (u + v) % 3), latency=1e-3)
    topology = Topology(name="crowded", graph=graph)
    run, rows, _ = fake_run(topology, failed=next(iter(graph.edges)))
    figure = topology_figure(
        run, FAMILIES.get(run.family_name).report, "dijkstra", rows, node_positions(topology)
    )
    assert figure_problems(figure) == []
    assert "idle nodes as small dots" in figure.axes[0].get_title()
