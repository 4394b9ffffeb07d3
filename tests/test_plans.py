"""Tests for innet.core.plans: dense orientation, shortest-path / BFS / max-capacity trees."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from unittest import mock

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import innet.core.plans
from innet.core.errors import InnetError
from innet.core.plans import (
    ROUTINGS,
    Plan,
    build_plan,
    dense_plan,
    dijkstra_plan,
    hop_plan,
    link_weight,
    max_capacity_plan,
)
from innet.core.topology.model import Topology, node_key

PROPERTY = settings(max_examples=50, deadline=None)
TREE_BUILDERS = {
    "dijkstra": lambda topology, bits: dijkstra_plan(topology, bits),
    "hop": lambda topology, bits: hop_plan(topology),
    "maxcap": lambda topology, bits: max_capacity_plan(topology),
}


def make_topology(
    links: list[tuple[str, str, float, float]],
    fusion: str,
    sensors: Sequence[str] = (),
    extra_nodes: Sequence[str] = (),
) -> Topology:
    """A topology from ``(u, v, capacity, latency)`` links; nodes not named are relays."""
    graph = nx.Graph()
    graph.add_nodes_from(extra_nodes)
    for u, v, capacity, latency in links:
        graph.add_edge(u, v, capacity=capacity, latency=latency)
    return topology_from_graph(graph, fusion, sensors)


def topology_from_graph(graph: nx.Graph, fusion: str, sensors: Sequence[str]) -> Topology:
    """Set roles (and views for sensors) on ``graph``'s nodes and wrap it in a Topology."""
    for node in graph:
        graph.nodes[node]["role"] = "relay"
        graph.nodes[node]["view"] = None
    graph.nodes[fusion]["role"] = "fusion"
    for view, sensor in enumerate(sensors):
        graph.nodes[sensor].update(role="sensor", view=view)
    return Topology("test", graph)


@st.composite
def topologies(draw: st.DrawFn) -> Topology:
    """Random connected graphs, shuffled natural-order ids, random links and roles.

    Half the draws use a few discrete capacities and latencies so that exactly
    equal route lengths (ties) are common.
    """
    n = draw(st.integers(2, 30))
    seed = draw(st.integers(0, 2**32 - 1))
    edge_probability = draw(st.floats(0.0, 0.4))
    tied = draw(st.booleans())
    rng = random.Random(seed)
    graph = nx.gnp_random_graph(n, edge_probability, seed=seed)
    graph.add_edges_from(nx.random_labeled_tree(n, seed=seed).edges)  # make it connected
    names = [f"n{i}" for i in range(n)]
    rng.shuffle(names)
    graph = nx.relabel_nodes(graph, dict(enumerate(names)))
    for _, _, link in graph.edges(data=True):
        if tied:
            link["capacity"] = rng.choice([1e6, 2e6, 4e6])
            link["latency"] = rng.choice([0.0, 0.5e-3, 1e-3])
        else:
            link["capacity"] = 10 ** rng.uniform(5, 9)
            link["latency"] = rng.uniform(0.0, 2e-3)
    fusion = rng.choice(names)
    others = [name for name in names if name != fusion]
    sensors = rng.sample(others, rng.randint(1, len(others)))
    return topology_from_graph(graph, fusion, sensors)


message_sizes = st.sampled_from([8.0, 1024.0, 8192.0, 1e6])


def weight_function(message_bits: float):
    return lambda u, v, link: link_weight(link["capacity"], link["latency"], message_bits)


def parent_map(plan: Plan) -> dict[str, str]:
    return dict(plan.edges)


def assert_tree_to_fusion(plan: Plan, topology: Topology) -> None:
    """n-1 edges over real links, one parent per non-fusion node, every chain ends at fusion."""
    nodes = topology.nodes
    assert len(plan.edges) == len(nodes) - 1
    assert plan.parents(topology.fusion) == []
    for node in nodes:
        if node != topology.fusion:
            assert len(plan.parents(node)) == 1
    for sender, receiver in plan.edges:
        assert topology.graph.has_edge(sender, receiver)
    parent = parent_map(plan)
    for node in nodes:
        for _ in range(len(nodes)):
            if node == topology.fusion:
                break
            node = parent[node]
        assert node == topology.fusion


def route_length(plan: Plan, topology: Topology, node: str, message_bits: float) -> float:
    parent = parent_map(plan)
    total = 0.0
    while node != topology.fusion:
        link = topology.graph.edges[node, parent[node]]
        total += link_weight(link["capacity"], link["latency"], message_bits)
        node = parent[node]
    return total


# --- Dijkstra ---------------------------------------------------------------------------------


@PROPERTY
@given(topologies(), message_sizes)
def test_dijkstra_routes_are_shortest(topology: Topology, message_bits: float) -> None:
    plan = dijkstra_plan(topology, message_bits)
    shortest = nx.single_source_dijkstra_path_length(
        topology.graph, topology.fusion, weight=weight_function(message_bits)
    )
    for node in topology.nodes:
        assert route_length(plan, topology, node, message_bits) == pytest.approx(
            shortest[node], rel=1e-9, abs=1e-15
        )


@PROPERTY
@given(topologies(), message_sizes)
def test_dijkstra_parent_is_lowest_id_among_equally_short_routes(
    topology: Topology, message_bits: float
) -> None:
    weight = weight_function(message_bits)
    distance = nx.single_source_dijkstra_path_length(topology.graph, topology.fusion, weight=weight)
    graph = topology.graph

    def via(node: str, neighbour: str) -> float:
        return distance[neighbour] + weight(neighbour, node, graph.edges[node, neighbour])

    for node, parent in dijkstra_plan(topology, message_bits).edges:
        assert via(node, parent) == distance[node]
        lower = [nb for nb in graph.neighbors(node) if node_key(nb) < node_key(parent)]
        assert all(via(node, nb) != distance[node] for nb in lower)


def test_dijkstra_ties_break_to_lowest_id_in_natural_order() -> None:
    # n11 reaches f through n10 or n9 at exactly the same cost; "n9" < "n10" in node order
    # although not as strings, and the n10 link is listed first.
    link = (1e6, 1e-3)
    topology = make_topology(
        [("n11", "n10", *link), ("n11", "n9", *link), ("n10", "f", *link), ("n9", "f", *link)],
        fusion="f",
        sensors=["n11"],
    )
    expected = (("n9", "f"), ("n10", "f"), ("n11", "n9"))
    assert dijkstra_plan(topology, 1000.0).edges == expected
    assert innet.core.plans._dijkstra_parents_scipy(topology, 1000.0)["n11"] == "n9"
    assert parent_map(hop_plan(topology))["n11"] == "n9"


def test_dijkstra_depends_on_message_size_and_differs_from_hop() -> None:
    # Direct link: short latency, low capacity. Detour via r: long latency, high capacity.
    topology = make_topology(
        [("s", "f", 1e6, 0.1e-3), ("s", "r", 1e9, 1e-3), ("r", "f", 1e9, 1e-3)],
        fusion="f",
        sensors=["s"],
    )
    assert parent_map(dijkstra_plan(topology, message_bits=100))["s"] == "f"
    assert parent_map(dijkstra_plan(topology, message_bits=1e6))["s"] == "r"
    assert parent_map(hop_plan(topology))["s"] == "f"


def test_dijkstra_zero_weight_links_still_give_a_tree() -> None:
    links = [("a", "b", 1e6, 0.0), ("b", "c", 1e6, 0.0), ("c", "a", 1e6, 0.0), ("a", "f", 1e6, 0.0)]
    topology = make_topology(links, fusion="f", sensors=["b", "c"])
    assert_tree_to_fusion(dijkstra_plan(topology, message_bits=0.0), topology)
    scipy_parent = innet.core.plans._dijkstra_parents_scipy(topology, 0.0)
    assert_tree_to_fusion(Plan("dijkstra", "f", tuple(scipy_parent.items())), topology)


@pytest.mark.parametrize("message_bits", [-1.0, float("nan"), float("inf")])
def test_dijkstra_rejects_bad_message_size(message_bits: float) -> None:
    topology = make_topology([("s", "f", 1e6, 0.0)], fusion="f", sensors=["s"])
    with pytest.raises(InnetError, match="message_bits"):
        dijkstra_plan(topology, message_bits)


@PROPERTY
@given(topologies(), message_sizes)
def test_scipy_dijkstra_matches_networkx(topology: Topology, message_bits: float) -> None:
    scipy_parent = innet.core.plans._dijkstra_parents_scipy(topology, message_bits)
    assert scipy_parent == innet.core.plans._dijkstra_parents_networkx(topology, message_bits)


@PROPERTY
@given(topologies(), message_sizes)
def test_scipy_path_gives_the_networkx_plan(topology: Topology, message_bits: float) -> None:
    expected = dijkstra_plan(topology, message_bits)  # small graphs: networkx
    with mock.patch.object(innet.core.plans, "SCIPY_THRESHOLD", 0):
        on_arrays = dijkstra_plan(Topology(topology.name, topology.graph), message_bits)
    assert on_arrays.edges == expected.edges
    assert on_arrays == expected


def test_large_graphs_use_scipy(monkeypatch: pytest.MonkeyPatch) -> None:
    graph = nx.relabel_nodes(nx.grid_2d_graph(6, 6), lambda rc: f"n{rc[0] * 6 + rc[1]}", copy=True)
    rng = random.Random(7)
    for _, _, link in graph.edges(data=True):
        link.update(capacity=10 ** rng.uniform(5, 9), latency=rng.uniform(0, 1e-3))
    graph.add_edge("x1", "x2", capacity=1e6, latency=0.0)  # an island: not in the plan
    topology = topology_from_graph(graph, "n14", ["n0", "n35"])
    calls = []
    scipy_slots = innet.core.plans._dijkstra_slots_scipy

    def spy(*args):
        calls.append(args)
        return scipy_slots(*args)

    monkeypatch.setattr(innet.core.plans, "_dijkstra_slots_scipy", spy)
    monkeypatch.setattr(innet.core.plans, "SCIPY_THRESHOLD", 10)
    plan = dijkstra_plan(topology, 4096.0)
    assert len(calls) == 1
    shortest = nx.single_source_dijkstra_path_length(graph, "n14", weight=weight_function(4096.0))
    assert set(parent_map(plan)) == set(shortest) - {"n14"}
    for node in shortest:
        assert route_length(plan, topology, node, 4096.0) == pytest.approx(
            shortest[node], rel=1e-9, abs=1e-15
        )


# --- hop cost: trees between capacity-aware and breadth-first ---------------------------------

HOP_COSTS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 1e3, 1e6)
"""A ladder of per-hop costs (seconds); the last is far above any route of the generated graphs."""

BFS_HOP_COST = 1e6
"""Far above any route's delivery time in :func:`topologies` (30 links of at most 10 s each)."""


def todays_dijkstra_parents(topology: Topology, message_bits: float) -> dict[str, str]:
    """The capacity-aware tree as built before hop costs existed (weight without a hop term)."""

    def weight(u: str, v: str, link: dict) -> float:
        return link["latency"] + message_bits / link["capacity"]

    predecessors, distance = nx.dijkstra_predecessor_and_distance(
        topology.graph, topology.fusion, weight=weight
    )
    settled = {node: rank for rank, node in enumerate(distance)}
    return {
        node: min((p for p in preds if settled[p] < settled[node]), key=node_key)
        for node, preds in predecessors.items()
        if node != topology.fusion
    }


def depths(plan: Plan) -> dict[str, int]:
    """Hops from each node of ``plan`` to its fusion node along the plan's (tree) edges."""
    parent = parent_map(plan)
    result = {plan.fusion: 0}
    for node in parent:
        chain = []
        while node not in result:
            chain.append(node)
            node = parent[node]
        for hops, walker in enumerate(reversed(chain), start=result[node] + 1):
            result[walker] = hops
    return result


def dijkstra_both_paths(topology: Topology, message_bits: float, hop_cost_s: float) -> Plan:
    """The networkx plan, checked equal to the plan of the scipy path."""
    plan = dijkstra_plan(topology, message_bits, hop_cost_s)
    with mock.patch.object(innet.core.plans, "SCIPY_THRESHOLD", 0):
        on_arrays = dijkstra_plan(Topology(topology.name, topology.graph), message_bits, hop_cost_s)
    assert on_arrays == plan
    return plan


@PROPERTY
@given(topologies(), message_sizes)
def test_zero_hop_cost_is_todays_dijkstra_tree(topology: Topology, message_bits: float) -> None:
    expected = todays_dijkstra_parents(topology, message_bits)
    assert innet.core.plans._dijkstra_parents_networkx(topology, message_bits, 0.0) == expected
    assert innet.core.plans._dijkstra_parents_scipy(topology, message_bits, 0.0) == expected
    plan = dijkstra_both_paths(topology, message_bits, 0.0)
    assert parent_map(plan) == expected
    assert plan == dijkstra_plan(topology, message_bits)
    assert build_plan(topology, "dijkstra", message_bits, hop_cost_s=0.0) == plan


@PROPERTY
@given(topologies(), message_sizes)
def test_huge_hop_cost_puts_every_node_at_its_hop_distance(
    topology: Topology, message_bits: float
) -> None:
    plan = dijkstra_both_paths(topology, message_bits, BFS_HOP_COST)
    assert_tree_to_fusion(plan, topology)
    assert depths(plan) == depths(hop_plan(topology))
    assert depths(plan) == nx.single_source_shortest_path_length(topology.graph, topology.fusion)
    # Where each node has a single neighbour one hop closer, no tie rule can tell them apart.
    distance = nx.single_source_shortest_path_length(topology.graph, topology.fusion)
    unique = all(
        sum(distance[nb] == distance[node] - 1 for nb in topology.graph[node]) == 1
        for node in topology.nodes
        if node != topology.fusion
    )
    if unique:
        assert plan.edges == hop_plan(topology).edges


@PROPERTY
@given(topologies(), message_sizes, st.sampled_from(HOP_COSTS[1:]))
def test_hop_cost_on_equal_links_is_the_hop_tree(
    topology: Topology, message_bits: float, hop_cost_s: float
) -> None:
    # Every link alike: routes tie exactly by hop count, and both trees take the lowest id.
    for _, _, link in topology.graph.edges(data=True):
        link.update(capacity=1e6, latency=1e-3)
    assert dijkstra_both_paths(topology, message_bits, hop_cost_s).edges == hop_plan(topology).edges


@PROPERTY
@given(topologies(), message_sizes)
def test_depth_does_not_grow_with_hop_cost(topology: Topology, message_bits: float) -> None:
    previous: dict[str, int] | None = None
    for hop_cost_s in HOP_COSTS:
        plan = dijkstra_both_paths(topology, message_bits, hop_cost_s)
        assert_tree_to_fusion(plan, topology)
        depth = depths(plan)
        if previous is not None:
            # Each node's route is shortest at both costs, so it has no more hops (mean too).
            assert all(depth[node] <= previous[node] for node in depth)
            assert sum(depth.values()) / len(depth) <= sum(previous.values()) / len(previous)
        previous = depth


def test_hop_cost_trades_a_fast_detour_for_fewer_hops() -> None:
    # s: slow direct link to f (9.192 ms for 8192 bits) or two fast hops via r (0.216 ms).
    topology = make_topology(
        [("s", "f", 1e6, 1e-3), ("s", "r", 1e9, 1e-4), ("r", "f", 1e9, 1e-4)],
        fusion="f",
        sensors=["s"],
    )
    assert parent_map(dijkstra_plan(topology, 8192.0, hop_cost_s=0.0))["s"] == "r"
    assert parent_map(dijkstra_plan(topology, 8192.0, hop_cost_s=8e-3))["s"] == "r"
    assert parent_map(dijkstra_plan(topology, 8192.0, hop_cost_s=10e-3))["s"] == "f"
    assert parent_map(build_plan(topology, "dijkstra", 8192.0, hop_cost_s=10e-3))["s"] == "f"
    # The other routings take no hop cost into account.
    assert build_plan(topology, "hop", 8192.0, hop_cost_s=10e-3) == hop_plan(topology)


def test_link_weight_adds_the_hop_cost() -> None:
    assert link_weight(1e6, 1e-3, 8000.0, 0.0) == link_weight(1e6, 1e-3, 8000.0) == 1e-3 + 8e-3
    assert link_weight(1e6, 1e-3, 8000.0, hop_cost_s=0.25) == pytest.approx(0.259)


@pytest.mark.parametrize("hop_cost_s", [-1e-3, float("nan"), float("inf")])
def test_dijkstra_rejects_bad_hop_cost(hop_cost_s: float) -> None:
    topology = make_topology([("s", "f", 1e6, 0.0)], fusion="f", sensors=["s"])
    with pytest.raises(InnetError, match="hop_cost_s"):
        dijkstra_plan(topology, 8.0, hop_cost_s)


# --- trees in general -------------------------------------------------------------------------


@PROPERTY
@given(topologies(), message_sizes, st.sampled_from(sorted(TREE_BUILDERS)))
def test_tree_plans_are_spanning_trees_to_fusion(
    topology: Topology, message_bits: float, routing: str
) -> None:
    plan = TREE_BUILDERS[routing](topology, message_bits)
    assert plan.routing == routing
    assert plan.fusion == topology.fusion
    assert_tree_to_fusion(plan, topology)


@PROPERTY
@given(topologies())
def test_hop_depth_is_bfs_distance_and_parent_lowest_id(topology: Topology) -> None:
    plan = hop_plan(topology)
    distance = nx.single_source_shortest_path_length(topology.graph, topology.fusion)
    parent = parent_map(plan)
    for node in topology.nodes:
        depth, walker = 0, node
        while walker != topology.fusion:
            walker, depth = parent[walker], depth + 1
        assert depth == distance[node]
        if node != topology.fusion:
            closer = [nb for nb in topology.graph[node] if distance[nb] == distance[node] - 1]
            assert parent[node] == min(closer, key=node_key)


@PROPERTY
@given(topologies())
def test_maxcap_tree_has_maximum_total_capacity(topology: Topology) -> None:
    plan = max_capacity_plan(topology)
    reference = nx.maximum_spanning_tree(topology.graph, weight="capacity")
    total = sum(topology.graph.edges[edge]["capacity"] for edge in plan.edges)
    assert total == pytest.approx(reference.size(weight="capacity"), rel=1e-12)


# --- dense ------------------------------------------------------------------------------------


@PROPERTY
@given(topologies())
def test_dense_uses_every_link_once_from_later_to_earlier(topology: Topology) -> None:
    plan = dense_plan(topology)
    distance = nx.single_source_shortest_path_length(topology.graph, topology.fusion)

    def position(node: str) -> tuple:
        return distance[node], node_key(node)

    assert len(plan.edges) == topology.graph.number_of_edges()
    assert {frozenset(edge) for edge in plan.edges} == {
        frozenset(edge) for edge in topology.graph.edges
    }
    assert all(position(sender) > position(receiver) for sender, receiver in plan.edges)
    assert nx.is_directed_acyclic_graph(nx.DiGraph(plan.edges))
    for node in topology.nodes:
        if node != topology.fusion:
            assert plan.parents(node)


def test_dense_orients_lateral_links_by_id() -> None:
    # a and b are both one hop from f; the lateral link a-b goes from b (later) to a.
    link = (1e6, 0.0)
    topology = make_topology(
        [("a", "f", *link), ("b", "f", *link), ("a", "b", *link), ("s", "b", *link)],
        fusion="f",
        sensors=["s"],
    )
    assert dense_plan(topology).edges == (("a", "f"), ("b", "a"), ("b", "f"), ("s", "b"))


# --- behaviour shared by all routings ---------------------------------------------------------


@PROPERTY
@given(topologies(), message_sizes, st.sampled_from(ROUTINGS.names()))
def test_forward_order_is_topological_with_fusion_last(
    topology: Topology, message_bits: float, routing: str
) -> None:
    plan = build_plan(topology, routing, message_bits)
    order = plan.forward_order()
    assert order[-1] == topology.fusion
    assert sorted(order, key=node_key) == topology.nodes
    position = {node: i for i, node in enumerate(order)}
    assert all(position[sender] < position[receiver] for sender, receiver in plan.edges)


@PROPERTY
@given(topologies(), message_sizes, st.sampled_from(ROUTINGS.names()), st.randoms())
def test_plans_do_not_depend_on_insertion_order(
    topology: Topology, message_bits: float, routing: str, rng: random.Random
) -> None:
    nodes = list(topology.graph.nodes(data=True))
    links = list(topology.graph.edges(data=True))
    rng.shuffle(nodes)
    rng.shuffle(links)
    shuffled = nx.Graph()
    shuffled.add_nodes_from(nodes)
    shuffled.add_edges_from(
        (v, u, data) if rng.random() < 0.5 else (u, v, data) for u, v, data in links
    )
    again = build_plan(Topology("shuffled", shuffled), routing, message_bits)
    assert again == build_plan(topology, routing, message_bits)


@PROPERTY
@given(topologies(), message_sizes, st.sampled_from(ROUTINGS.names()))
def test_active_keeps_exactly_the_senders_with_a_sensor_upstream(
    topology: Topology, message_bits: float, routing: str
) -> None:
    plan = build_plan(topology, routing, message_bits)
    active = plan.active(topology.sensors)
    digraph = nx.DiGraph(plan.edges)
    carrying = {
        node
        for node in digraph
        if node in topology.sensors or nx.ancestors(digraph, node) & set(topology.sensors)
    }
    assert active.edges == tuple(edge for edge in plan.edges if edge[0] in carrying)
    assert active.active(topology.sensors) == active
    for sensor in topology.sensors:  # every sensor still reaches fusion
        assert nx.has_path(nx.DiGraph(active.edges), sensor, topology.fusion)


def test_active_drops_a_dangling_relay_branch() -> None:
    link = (1e6, 1e-3)
    topology = make_topology(
        [("s", "r1", *link), ("r1", "f", *link), ("r2", "r3", *link), ("r3", "f", *link)],
        fusion="f",
        sensors=["s"],
    )
    for routing in ROUTINGS:
        plan = build_plan(topology, routing, 1024.0)
        assert ("r2", "r3") in plan.edges
        assert plan.active(["s"]).edges == (("r1", "f"), ("s", "r1"))
        assert plan.active(["s"]).forward_order() == ["s", "r1", "f"]


def test_nodes_cut_off_from_fusion_are_left_out() -> None:
    link = (1e6, 1e-3)
    topology = make_topology(
        [("s", "f", *link), ("x1", "x2", *link)], fusion="f", sensors=["s"], extra_nodes=["lone"]
    )
    for routing in ROUTINGS:
        plan = build_plan(topology, routing, 1024.0)
        assert plan.edges == (("s", "f"),)
        assert plan.forward_order() == ["s", "f"]


def test_parents_children_sorted_in_natural_order() -> None:
    plan = Plan("dense", "f", [["n10", "f"], ["n9", "f"], ["n2", "f"], ["n10", "n9"]])
    assert plan.edges == (("n2", "f"), ("n9", "f"), ("n10", "f"), ("n10", "n9"))
    assert plan.children("f") == ["n2", "n9", "n10"]
    assert plan.parents("n10") == ["f", "n9"]
    assert plan.parents("f") == [] and plan.children("n2") == []
    assert plan.forward_order() == ["n2", "n10", "n9", "f"]


def test_fusion_cannot_send() -> None:
    with pytest.raises(ValueError, match="fusion"):
        Plan("dense", "f", (("f", "s"),))


def test_single_node_plan() -> None:
    graph = nx.Graph()
    graph.add_node("f", role="fusion")
    plan = dense_plan(Topology("alone", graph))
    assert plan.edges == () and plan.forward_order() == ["f"]


def test_to_json_shape() -> None:
    topology = make_topology(
        [("s1", "r", 1e6, 0.0), ("r", "f", 1e6, 0.0)], fusion="f", sensors=["s1"]
    )
    document = build_plan(topology, "hop", 8.0).to_json()
    assert document == {"routing": "hop", "fusion": "f", "edges": [["r", "f"], ["s1", "r"]]}
    assert json.loads(json.dumps(document)) == document


def test_build_plan_dispatches_by_name() -> None:
    topology = make_topology(
        [("s", "f", 1e6, 0.1e-3), ("s", "r", 1e9, 1e-3), ("r", "f", 1e9, 1e-3)],
        fusion="f",
        sensors=["s"],
    )
    assert ROUTINGS.names() == ("dense", "dijkstra", "hop", "maxcap")
    assert build_plan(topology, "dense", 1e6) == dense_plan(topology)
    assert build_plan(topology, "dijkstra", 1e6) == dijkstra_plan(topology, 1e6)
    assert build_plan(topology, "hop", 1e6) == hop_plan(topology)
    assert build_plan(topology, "maxcap", 1e6) == max_capacity_plan(topology)
    assert build_plan(topology, "dijkstra", 1e6) != build_plan(topology, "hop", 1e6)


def test_unknown_routing_names_the_valid_ones() -> None:
    topology = make_topology([("s", "f", 1e6, 0.0)], fusion="f", sensors=["s"])
    with pytest.raises(InnetError, match=r"'tree'.*dense, dijkstra, hop, maxcap"):
        build_plan(topology, "tree", 8.0)


# -- the array form -------------------------------------------------------------------------------


@PROPERTY
@given(topologies(), message_sizes, st.sampled_from(ROUTINGS.names()))
def test_arrays_are_the_plan_with_networkx_longest_path_levels(
    topology: Topology, message_bits: float, routing: str
) -> None:
    plan = build_plan(topology, routing, message_bits)
    arrays = plan.arrays
    assert plan.arrays is arrays  # computed once
    assert list(arrays.nodes) == plan.forward_order()
    assert arrays.src.dtype == arrays.dst.dtype == np.int64
    names = np.array(arrays.nodes, dtype=object)
    assert list(zip(names[arrays.src], names[arrays.dst], strict=True)) == list(plan.edges)
    assert all(arrays.position[node] == i for i, node in enumerate(arrays.nodes))
    graph = nx.DiGraph(plan.edges)
    graph.add_nodes_from(plan.forward_order())
    for i, node in enumerate(arrays.nodes):
        upstream = graph.subgraph(nx.ancestors(graph, node) | {node})
        assert arrays.level[i] == nx.dag_longest_path_length(upstream), node
    assert arrays.level_sizes.tolist() == np.bincount(arrays.level).tolist()
    assert arrays.level_sizes.sum() == len(arrays.nodes)


def test_arrays_of_a_lone_fusion_node() -> None:
    arrays = Plan("dense", "f", ()).arrays
    assert arrays.nodes == ("f",)
    assert (arrays.src.tolist(), arrays.level.tolist(), arrays.level_sizes.tolist()) == (
        [],
        [0],
        [1],
    )


def test_levels_of_a_100000_node_chain_and_star_come_in_waves() -> None:
    """A path of 50,000 (50,000 levels) under a star of 50,000 leaves: every level right."""
    chain = [f"c{i}" for i in range(50_000)]
    leaves = [f"l{i}" for i in range(50_000)]
    edges = list(zip(chain, chain[1:], strict=False)) + [(chain[-1], "f")]
    edges += [(leaf, "f") for leaf in leaves]
    plan = Plan("x", "f", tuple(edges))
    arrays = plan.arrays
    level = dict(zip(arrays.nodes, arrays.level.tolist(), strict=True))
    assert [level[node] for node in chain[:3]] == [0, 1, 2]
    assert level[chain[-1]] == 49_999 and level["f"] == 50_000
    assert all(level[leaf] == 0 for leaf in leaves)
    assert arrays.level_sizes[0] == 50_001
