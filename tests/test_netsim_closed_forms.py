"""Closed forms of collective communication, checked on innet's network model.

- All-to-all over a non-blocking star (a switch that never blocks: every pair
  of nodes has its own path, each node one port of ``B`` bits/s): each node
  sends ``N - 1`` messages of ``b`` bytes through its one port, so the exchange
  takes ``(N - 1) * 8 b / B + latency``.
- All-to-all over a unidirectional ring (node ``i`` sends to ``i + d`` over
  ``d`` clockwise hops): the busiest link carries ``b N (N - 1) / 2`` bytes.
- Routed messages (``register_phase(..., routed=True)``) between unlinked
  nodes travel the capacity-aware shortest path, store and forward.
"""

from __future__ import annotations

import itertools
from collections import Counter

import networkx as nx
import pytest

from innet.core.netsim import Message, NetworkModel
from innet.core.phases import register_phase
from innet.core.topology.model import Topology

ROUTED = register_phase("closed_form_routed", training=True, flow="forward", routed=True).name


def _topology(graph: nx.Graph, name: str) -> Topology:
    for node in graph.nodes:
        graph.nodes[node]["role"] = "relay"
    graph.nodes[next(iter(graph.nodes))]["role"] = "fusion"
    return Topology(name, graph)


@pytest.mark.parametrize(("n", "nbytes"), [(4, 1000), (7, 12_345)])
def test_all_to_all_over_a_non_blocking_star(n, nbytes):
    capacity, latency = 1e8, 2e-4
    graph = nx.complete_graph([f"n{i}" for i in range(n)])
    nx.set_edge_attributes(graph, capacity, "capacity")
    nx.set_edge_attributes(graph, latency, "latency")
    model = NetworkModel(_topology(graph, "switch"), tx_ports=1)  # one port per node
    step = [
        Message(ROUTED, a, b, nbytes, after=()) for a, b in itertools.permutations(graph.nodes, 2)
    ]
    timing = model.simulate_step(step)
    assert timing.duration_s == pytest.approx((n - 1) * 8 * nbytes / capacity + latency, rel=1e-12)


@pytest.mark.parametrize("n", [5, 8])
def test_unidirectional_ring_busiest_link_carries_b_n_n_minus_1_over_2(n):
    b, capacity, latency = 500, 1e6, 1e-3
    nodes = [f"r{i}" for i in range(n)]
    graph = nx.cycle_graph(nodes)
    nx.set_edge_attributes(graph, capacity, "capacity")
    nx.set_edge_attributes(graph, latency, "latency")
    model = NetworkModel(_topology(graph, "ring"))
    step: list[Message] = []
    for i, d in itertools.product(range(n), range(1, n)):  # clockwise, hop by hop
        for h in range(d):
            after = () if h == 0 else (len(step) - 1,)
            src, dst = nodes[(i + h) % n], nodes[(i + h + 1) % n]
            step.append(Message(ROUTED, src, dst, b, after=after))
    load = Counter()
    for m in step:
        load[(m.src, m.dst)] += m.nbytes
    assert max(load.values()) == b * n * (n - 1) // 2 == min(load.values())
    busy = 8 * max(load.values()) / capacity
    duration = model.simulate_step(step).duration_s
    # every link is busy for `busy` seconds; the last message still crosses n - 1 latencies
    assert busy < duration <= busy + (n - 1) * (latency + 8 * b / capacity)


def test_a_routed_message_takes_the_capacity_aware_path_hop_by_hop():
    graph = nx.Graph()
    graph.add_edge("a", "b", capacity=1e6, latency=1e-3)  # slow direct path a-b-d
    graph.add_edge("b", "d", capacity=1e6, latency=1e-3)
    graph.add_edge("a", "c", capacity=1e9, latency=1e-3)  # fast path a-c-e-d
    graph.add_edge("c", "e", capacity=1e9, latency=1e-3)
    graph.add_edge("e", "d", capacity=1e9, latency=1e-3)
    model = NetworkModel(_topology(graph, "paths"))
    nbytes = 10_000
    assert model.route("a", "d", nbytes) == ["a", "c", "e", "d"]
    assert model.route("a", "d", 1) == ["a", "b", "d"]  # latency wins for tiny messages
    timing = model.simulate_step([Message(ROUTED, "a", "d", nbytes)])
    assert timing.messages[0].t_end == pytest.approx(3 * (8 * nbytes / 1e9 + 1e-3))
    # the arrival is an input of d only: d's forward message leaves after it
    both = model.simulate_step(
        [Message(ROUTED, "a", "d", nbytes), Message("forward", "d", "b", nbytes)]
    )
    assert both.messages[1].t_start == pytest.approx(both.messages[0].t_end)
    assert both.messages[1].t_end == pytest.approx(both.messages[0].t_end + 8 * nbytes / 1e6 + 1e-3)
    with pytest.raises(ValueError, match="no link between"):
        model.simulate_step([Message("forward", "a", "d", nbytes)])  # not routed
