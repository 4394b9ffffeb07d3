"""Placement of nodes on torch.distributed ranks: complete, in range, balanced, deterministic."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from innet.core.errors import InnetError
from innet.core.placement import PLACEMENTS, cross_rank_links, place_nodes
from innet.core.plans import Plan, dense_plan
from innet.core.topology.model import Topology

PROPERTY = settings(max_examples=60, deadline=None)


def topology(graph: nx.Graph, name: str = "test") -> Topology:
    """``graph`` with nodes renamed ``n0, n1, ...`` and ``n0`` as the fusion node."""
    graph = nx.relabel_nodes(graph, {node: f"n{i}" for i, node in enumerate(graph)})
    for node in graph:
        graph.nodes[node]["role"] = "relay"
    graph.nodes["n0"]["role"] = "fusion"
    return Topology(name, graph)


def grid(rows: int, columns: int) -> Topology:
    """A grid whose node ids run row by row (so round robin scatters neighbours)."""
    return topology(nx.grid_2d_graph(rows, columns), f"grid{rows}x{columns}")


@st.composite
def graphs_and_sizes(draw) -> tuple[Topology, int]:
    n_nodes = draw(st.integers(1, 40))
    probability = draw(st.floats(0.0, 0.5))
    seed = draw(st.integers(0, 10_000))
    graph = nx.gnp_random_graph(n_nodes, probability, seed=seed)
    world_size = draw(st.integers(1, n_nodes))
    return topology(graph), world_size


@PROPERTY
@given(graphs_and_sizes(), st.sampled_from(["round_robin", "partition"]))
def test_every_node_gets_a_rank_in_range(case, strategy):
    top, world_size = case
    placement = place_nodes(top, None, world_size, strategy)
    assert list(placement) == top.nodes
    assert all(0 <= rank < world_size for rank in placement.values())
    assert set(placement.values()) == set(range(world_size))  # no idle rank


@PROPERTY
@given(graphs_and_sizes())
def test_partition_is_balanced_and_deterministic(case):
    top, world_size = case
    placement = place_nodes(top, None, world_size, "partition")
    sizes = Counter(placement.values())
    assert max(sizes.values()) - min(sizes.values()) <= 1
    assert place_nodes(top, None, world_size, "partition") == placement


@PROPERTY
@given(graphs_and_sizes(), st.integers(0, 1000))
def test_partition_ignores_the_order_nodes_and_links_were_listed_in(case, seed):
    top, world_size = case
    shuffler = random.Random(seed)
    nodes, links = list(top.graph.nodes(data=True)), list(top.graph.edges)
    shuffler.shuffle(nodes)
    shuffler.shuffle(links)
    shuffled = nx.Graph()
    shuffled.add_nodes_from(nodes)
    shuffled.add_edges_from((v, u) if shuffler.random() < 0.5 else (u, v) for u, v in links)
    expected = place_nodes(top, None, world_size, "partition")
    assert place_nodes(Topology("shuffled", shuffled), None, world_size, "partition") == expected


def test_partition_is_the_same_under_any_hash_seed():
    """Every rank computes the placement itself, with its own PYTHONHASHSEED."""
    script = (
        "import json, networkx as nx\n"
        "from innet.core.topology.model import Topology\n"
        "from innet.core.placement import place_nodes\n"
        "g = nx.relabel_nodes(nx.random_geometric_graph(40, 0.3, seed=1), lambda n: f's{n}')\n"
        "print(json.dumps(place_nodes(Topology('t', g), None, 3, 'partition')))\n"
    )
    outputs = []
    for hash_seed in ("1", "2"):
        # the repository's own innet, wherever this clone lives
        root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=root)
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize(
    ("top", "world_size"),
    [(grid(4, 4), 2), (grid(4, 4), 4), (grid(6, 6), 3), (grid(5, 7), 4), (grid(8, 8), 4)],
    ids=lambda value: getattr(value, "name", str(value)),
)
def test_partition_cuts_fewer_links_than_round_robin_on_grids(top, world_size):
    links = top.graph.edges
    partition = cross_rank_links(links, place_nodes(top, None, world_size, "partition"))
    round_robin = cross_rank_links(links, place_nodes(top, None, world_size, "round_robin"))
    assert partition < round_robin


@pytest.mark.parametrize(("rows", "world_size", "best_cut"), [(4, 2, 4), (6, 2, 6), (4, 4, 8)])
def test_partition_finds_the_best_cut_of_square_grids(rows, world_size, best_cut):
    top = grid(rows, rows)
    assert cross_rank_links(top.graph.edges, place_nodes(top, None, world_size, "partition")) == (
        best_cut
    )


def test_partition_counts_only_the_plan_edges():
    """Two stars joined by five links, of which the plan uses one (a0-b0)."""
    graph = nx.Graph()
    left, right = [f"a{i}" for i in range(5)], [f"b{i}" for i in range(5)]
    graph.add_edges_from((left[0], node) for node in left[1:])
    graph.add_edges_from((right[0], node) for node in right[1:])
    graph.add_edges_from(zip(left, right, strict=True))  # five links between the clusters
    for node in graph:
        graph.nodes[node]["role"] = "fusion" if node == "a0" else "relay"
    top = Topology("clusters", graph)
    tree = [(node, "a0") for node in left[1:]] + [("b0", "a0")]
    plan = Plan("tree", "a0", tuple(tree + [(node, "b0") for node in right[1:]]))
    placement = place_nodes(top, plan, 2, "partition")
    assert cross_rank_links(plan.edges, placement) == 1
    assert cross_rank_links(dense_plan(top).edges, placement) == 5


def test_one_per_rank_and_round_robin():
    top = topology(nx.path_graph(12))
    assert place_nodes(top, None, 12, "one_per_rank") == {f"n{i}": i for i in range(12)}
    assert place_nodes(top, None, 5, "round_robin")["n11"] == 1
    with pytest.raises(InnetError, match="one rank per node.*12 nodes but the world size is 4"):
        place_nodes(top, None, 4, "one_per_rank")


def test_explicit_placement_is_checked():
    top = topology(nx.path_graph(3))
    assert place_nodes(top, None, 2, "explicit", {"n0": 1, "n1": 0, "n2": 1}) == {
        "n0": 1,
        "n1": 0,
        "n2": 1,
    }
    with pytest.raises(InnetError, match="no rank to nodes: n2"):
        place_nodes(top, None, 2, "explicit", {"n0": 1, "n1": 0})
    with pytest.raises(InnetError, match="not in the topology: zz"):
        place_nodes(top, None, 2, "explicit", {"n0": 1, "n1": 0, "n2": 0, "zz": 0})
    with pytest.raises(InnetError, match="'n2' on rank 2, outside 0..1"):
        place_nodes(top, None, 2, "explicit", {"n0": 1, "n1": 0, "n2": 2})
    with pytest.raises(InnetError, match="needs a {node: rank} mapping"):
        place_nodes(top, None, 2, "explicit")
    with pytest.warns(UserWarning, match="ranks without nodes: 2, 3"):
        place_nodes(top, None, 4, "explicit", {"n0": 1, "n1": 0, "n2": 0})


def test_invalid_requests_are_one_line_errors():
    top = topology(nx.path_graph(3))
    with pytest.raises(InnetError, match="unknown placement 'spread'"):
        place_nodes(top, None, 2, "spread")
    with pytest.raises(InnetError, match="world size must be an integer >= 1"):
        place_nodes(top, None, 0, "round_robin")
    with pytest.raises(InnetError, match="world size 4 exceeds the 3 nodes"):
        place_nodes(top, None, 4, "partition")
    with pytest.raises(InnetError, match="only used by placement 'explicit'"):
        place_nodes(top, None, 2, "round_robin", {"n0": 0})
    assert set(PLACEMENTS) == {"one_per_rank", "round_robin", "partition", "explicit"}


def test_no_warning_for_valid_placements():
    top = grid(3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for strategy in ("round_robin", "partition"):
            place_nodes(top, dense_plan(top), 3, strategy)
