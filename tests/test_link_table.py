"""A topology's links as arrays: node order, each link once, the CSR layout of the graph."""

from __future__ import annotations

import random

import networkx as nx
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from innet.core.topology.links import link_table
from innet.core.topology.model import Topology
from innet.core.topology.order import node_key, ordered_ids

PROPERTY = settings(max_examples=50, deadline=None)

numbered_ids = st.lists(
    st.builds(
        lambda prefix, number, zeros: f"{prefix}{'0' * zeros}{number}",
        st.sampled_from(["n", "", "node_"]),
        st.integers(0, 10**6),
        st.integers(0, 2),
    ),
    unique=True,
    max_size=30,
)


@given(st.one_of(numbered_ids, st.lists(st.text(max_size=6), unique=True, max_size=20)))
def test_ordered_ids_is_node_key_order(ids: list[str]) -> None:
    graph = nx.Graph()
    graph.add_nodes_from(ids)
    assert ordered_ids(graph) == sorted(ids, key=node_key)


@st.composite
def graphs(draw: st.DrawFn) -> nx.Graph:
    """Random graphs with shuffled ids, isolated nodes, zero latencies, distinct capacities."""
    n = draw(st.integers(1, 25))
    seed = draw(st.integers(0, 2**32 - 1))
    graph = nx.gnp_random_graph(n, draw(st.floats(0.0, 0.5)), seed=seed)
    names = [f"n{i}" for i in range(n)]
    random.Random(seed).shuffle(names)
    graph = nx.relabel_nodes(graph, dict(enumerate(names)))
    for number, (_, _, link) in enumerate(graph.edges(data=True)):
        link.update(capacity=1e6 + number, latency=draw(st.sampled_from([0.0, 1e-3])))
    return graph


@PROPERTY
@given(graphs())
def test_link_table_holds_every_link_once_in_csr_order(graph: nx.Graph) -> None:
    table = link_table(graph)
    assert table.ids.tolist() == sorted(graph, key=node_key)
    assert {table.ids[i]: i for i in range(table.node_count)} == table.index
    links = graph.number_of_edges()
    assert len(table.u) == len(table.capacity) == len(table.latency) == links
    assert len(table.indices) == len(table.row) == len(table.pairs) == 2 * links
    for j, (u, v) in enumerate(zip(table.u.tolist(), table.v.tolist(), strict=True)):
        link = graph.edges[table.ids[u], table.ids[v]]
        assert (table.capacity[j], table.latency[j]) == (link["capacity"], link["latency"])
        uv, vu = table.slot_uv[j], table.slot_vu[j]
        assert (table.row[uv], table.indices[uv], table.link[uv]) == (u, v, j)
        assert (table.row[vu], table.indices[vu], table.link[vu]) == (v, u, j)
    assert [tuple(pair) for pair in table.pairs.tolist()] == [
        (table.ids[r], table.ids[c]) for r, c in zip(table.row, table.indices, strict=True)
    ]
    # The matrix is the graph's adjacency, zero latencies kept as stored links.
    expected = nx.to_scipy_sparse_array(graph, nodelist=table.ids.tolist(), weight="latency")
    matrix = table.matrix(table.latency)
    assert matrix.has_sorted_indices
    assert matrix.nnz == 2 * links
    assert np.array_equal(matrix.toarray(), expected.toarray())
    assert np.array_equal(table.matrix(table.capacity).indptr, matrix.indptr)


def test_topology_keeps_its_link_table_and_fusion() -> None:
    graph = nx.path_graph(["n0", "n1", "n2"])
    nx.set_edge_attributes(graph, 1e6, "capacity")
    nx.set_edge_attributes(graph, 0.0, "latency")
    nx.set_node_attributes(graph, "relay", "role")
    graph.nodes["n1"]["role"] = "fusion"
    topology = Topology("path", graph)
    assert topology.links is topology.links
    assert topology.fusion == "n1"
    # A new Topology of a changed graph reads the graph again.
    graph.remove_node("n2")
    assert Topology("path", graph).links.ids.tolist() == ["n0", "n1"]
