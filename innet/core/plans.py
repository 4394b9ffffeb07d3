"""Communication plans: who sends its forward message to whom.

A *plan* turns a topology (an undirected graph of links) into a set of
directed *forward edges* ``(sender, receiver)``, all leading towards the
single fusion node. During training, latents travel along the forward edges
and gradients travel back along the same edges in reverse; a link that is not
in the plan is silent in both directions.

Four routings are built here (docs/science.md), each registered by name in
:data:`ROUTINGS` (a new routing is one more registered builder):

- ``dense``: every link carries traffic. Nodes are ordered by
  ``(hop distance to fusion, node id)`` and each link points from its later
  endpoint to its earlier one, so links between nodes at the same distance are
  used too and the plan is always acyclic. A node sends to all its parents.
- ``dijkstra`` (D-INL): a shortest-path tree rooted at the fusion node, where
  the weight of a link is the time to deliver one forward message over it,
  ``latency + message_bits / capacity`` (:func:`link_weight`). Each node has
  exactly one parent; among equally short routes the lowest parent id wins.
  An optional per-hop cost ``hop_cost_s`` is added to every link's weight:
  ``0`` (the default) is the capacity-aware tree, a cost far above any route's
  delivery time gives a breadth-first tree (every node at its hop distance),
  and costs in between trade link speed against depth.
- ``hop``: a breadth-first tree; the parent is the lowest-id neighbour one hop
  closer to the fusion node. It ignores capacities and latencies.
- ``maxcap``: a maximum-capacity spanning tree, oriented towards the fusion
  node.

"Lowest id" always means the smallest :func:`~innet.core.topology.model.node_key`.
Nodes that cannot reach the fusion node are left out of every plan.

>>> import networkx as nx
>>> from innet.core.topology.model import Topology
>>> graph = nx.Graph()
>>> graph.add_nodes_from([("f", {"role": "fusion"}), ("r", {"role": "relay"})])
>>> graph.add_nodes_from([("s1", {"role": "sensor"}), ("s2", {"role": "sensor"})])
>>> graph.add_edge("s1", "f", capacity=1e6, latency=0.001)   # slow direct link
>>> graph.add_edge("s1", "r", capacity=1e9, latency=0.0001)  # fast detour via r
>>> graph.add_edge("r", "f", capacity=1e9, latency=0.0001)
>>> graph.add_edge("s2", "r", capacity=1e9, latency=0.0001)
>>> diamond = Topology("diamond", graph)
>>> dense_plan(diamond).edges
(('r', 'f'), ('s1', 'f'), ('s1', 'r'), ('s2', 'r'))
>>> dijkstra_plan(diamond, message_bits=8192).edges
(('r', 'f'), ('s1', 'r'), ('s2', 'r'))
>>> hop_plan(diamond).edges
(('r', 'f'), ('s1', 'f'), ('s2', 'r'))
>>> dijkstra_plan(diamond, message_bits=8192).forward_order()
['s1', 's2', 'r', 'f']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property

import networkx as nx
import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

from innet.core.errors import InnetError
from innet.core.registry import Registry
from innet.core.topology.links import LinkTable
from innet.core.topology.model import Topology, node_key

__all__ = [
    "Plan",
    "PlanArrays",
    "ROUTINGS",
    "RoutingBuilder",
    "SCIPY_THRESHOLD",
    "build_plan",
    "dense_plan",
    "dijkstra_plan",
    "hop_plan",
    "link_weight",
    "max_capacity_plan",
]

SCIPY_THRESHOLD = 2_000
"""Above this many nodes, :func:`dijkstra_plan` runs scipy's compiled Dijkstra.

From about a thousand nodes on the scipy path is faster even on a topology's
first plan, which reads its links into arrays (``benchmarks/bench_plans.py``).
"""


def _edge_key(edge: tuple[str, str]) -> tuple[tuple, tuple]:
    return node_key(edge[0]), node_key(edge[1])


@dataclass(frozen=True)
class Plan:
    """Forward edges ``(sender, receiver)`` of one routing, all leading to ``fusion``.

    ``edges`` is stored sorted by ``(node_key(sender), node_key(receiver))``
    whatever order it was given in. Gradients flow along the same edges in
    reverse.

    >>> plan = Plan("hop", "f", (("s", "r"), ("r", "f"), ("t", "f")))
    >>> plan.edges
    (('r', 'f'), ('s', 'r'), ('t', 'f'))
    >>> plan.parents("s"), plan.children("f")
    (['r'], ['r', 't'])
    >>> plan.forward_order()
    ['s', 'r', 't', 'f']
    >>> plan.active(["t"]).edges
    (('t', 'f'),)
    """

    routing: str
    fusion: str
    edges: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        edges = tuple(sorted(((s, r) for s, r in self.edges), key=_edge_key))
        if any(sender == self.fusion for sender, _ in edges):
            raise ValueError(f"the fusion node {self.fusion!r} cannot send forward messages")
        object.__setattr__(self, "edges", edges)

    @classmethod
    def _from_sorted(cls, routing: str, fusion: str, edges: tuple[tuple[str, str], ...]) -> Plan:
        """A plan whose ``edges`` are known to be sorted and valid already (skips the checks).

        For builders that produce edges in node order themselves, where sorting
        100,000 edges by :func:`~innet.core.topology.model.node_key` would cost more
        than building the tree.
        """
        plan = object.__new__(cls)
        for name, value in (("routing", routing), ("fusion", fusion), ("edges", edges)):
            object.__setattr__(plan, name, value)
        return plan

    @cached_property
    def _parents(self) -> dict[str, list[str]]:
        parents: dict[str, list[str]] = {}
        for sender, receiver in self.edges:  # sorted, so each list comes out sorted
            parents.setdefault(sender, []).append(receiver)
        return parents

    @cached_property
    def _children(self) -> dict[str, list[str]]:
        children: dict[str, list[str]] = {}
        for sender, receiver in sorted(self.edges, key=lambda edge: _edge_key(edge[::-1])):
            children.setdefault(receiver, []).append(sender)
        return children

    def parents(self, node: str) -> list[str]:
        """Receivers of ``node``'s forward messages, sorted by node id."""
        return list(self._parents.get(node, []))

    def children(self, node: str) -> list[str]:
        """Nodes that send forward messages into ``node``, sorted by node id."""
        return list(self._children.get(node, []))

    def forward_order(self) -> list[str]:
        """The nodes of the plan in a deterministic topological order, fusion last.

        A node comes after every node that sends to it; among the nodes that
        are ready at the same time the lowest id comes first.
        """
        return list(self._order)

    @cached_property
    def _order(self) -> tuple[str, ...]:
        digraph = nx.DiGraph(self.edges)
        digraph.remove_nodes_from([self.fusion])
        order = list(nx.lexicographical_topological_sort(digraph, key=node_key))
        return (*order, self.fusion)

    @cached_property
    def arrays(self) -> PlanArrays:
        """The plan as numpy arrays (:class:`PlanArrays`), computed once per plan."""
        return PlanArrays.of(self)

    def active(self, sensors: Iterable[str]) -> Plan:
        """The plan without edges whose sender has no sensor upstream (itself included).

        A relay that no sensor's data can reach has nothing to send, so its
        outgoing edges are silent.
        """
        digraph = nx.DiGraph(self.edges)
        sources = [sensor for sensor in sensors if sensor in digraph]
        carrying = set(sources).union(*(nx.descendants(digraph, s) for s in sources))
        kept = tuple(edge for edge in self.edges if edge[0] in carrying)
        return Plan(self.routing, self.fusion, kept)

    def to_json(self) -> dict:
        """``{"routing", "fusion", "edges": [[sender, receiver], ...]}``."""
        return {
            "routing": self.routing,
            "fusion": self.fusion,
            "edges": [[sender, receiver] for sender, receiver in self.edges],
        }


@dataclass(frozen=True, eq=False)
class PlanArrays:
    """A plan as numpy arrays: nodes by index, edges as index arrays, each node's level.

    ``nodes`` are the plan's nodes in forward order (node ``i`` is
    ``nodes[i]``, the fusion node last); ``src[k]`` and ``dst[k]`` are the
    indices of the sender and receiver of ``plan.edges[k]`` (int64). A node's
    ``level`` is one more than its highest child's (nodes without children:
    0), so the nodes of one level depend only on lower levels;
    ``level_sizes[l]`` counts the nodes of level ``l``.

    >>> plan = Plan("hop", "f", (("s", "r"), ("r", "f"), ("t", "f")))
    >>> arrays = plan.arrays
    >>> arrays.nodes, arrays.src.tolist(), arrays.dst.tolist()
    (('s', 'r', 't', 'f'), [1, 0, 2], [3, 1, 3])
    >>> arrays.level.tolist(), arrays.level_sizes.tolist()
    ([0, 1, 0, 2], [2, 1, 1])
    """

    nodes: tuple[str, ...]
    src: np.ndarray
    dst: np.ndarray
    level: np.ndarray
    position: dict[str, int] = field(repr=False)  # each node's index

    @classmethod
    def of(cls, plan: Plan) -> PlanArrays:
        """The arrays of ``plan`` (use :attr:`Plan.arrays`, which keeps them)."""
        nodes = plan._order
        position = {node: index for index, node in enumerate(nodes)}
        count = len(plan.edges)
        src = np.fromiter((position[s] for s, _ in plan.edges), dtype=np.int64, count=count)
        dst = np.fromiter((position[r] for _, r in plan.edges), dtype=np.int64, count=count)
        return cls(nodes, src, dst, _levels(len(nodes), src, dst), position)

    @cached_property
    def level_sizes(self) -> np.ndarray:
        """How many nodes each level has."""
        return np.bincount(self.level, minlength=1 if len(self.level) else 0)


def _levels(count: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Each node's level (longest path from a node without children), in waves of numpy.

    Wave ``l`` holds the nodes whose last child was placed in wave ``l - 1``;
    the cost is one pass over the edges plus a few array calls per level.
    """
    level = np.zeros(count, dtype=np.int64)
    waiting = np.bincount(dst, minlength=count)  # children not placed yet
    by_sender = np.argsort(src, kind="stable")
    start = np.searchsorted(src[by_sender], np.arange(count + 1))
    wave, depth = np.flatnonzero(waiting == 0), 0
    while len(wave):
        level[wave] = depth
        first, sizes = start[wave], start[wave + 1] - start[wave]
        offsets = np.repeat(first - np.cumsum(sizes) + sizes, sizes)
        receivers = dst[by_sender[offsets + np.arange(int(sizes.sum()))]]
        reached, times = np.unique(receivers, return_counts=True)
        waiting[reached] -= times
        wave, depth = reached[waiting[reached] == 0], depth + 1
    return level


def link_weight(
    capacity: float, latency: float, message_bits: float, hop_cost_s: float = 0.0
) -> float:
    """Seconds to deliver one forward message over a link: ``latency + message_bits / capacity``.

    ``hop_cost_s`` is added as a fixed price per hop (``0``: none, exactly the
    delivery time).

    >>> link_weight(capacity=1e6, latency=0.002, message_bits=8000)  # 1 Mbps, 2 ms, 1 kB
    0.01
    >>> link_weight(capacity=1e6, latency=0.002, message_bits=8000, hop_cost_s=0.5)
    0.51
    """
    return latency + message_bits / capacity + hop_cost_s


def _fusion_component(topology: Topology) -> nx.Graph:
    """The part of the topology connected to the fusion node."""
    graph = topology.graph
    return graph.subgraph(nx.node_connected_component(graph, topology.fusion))


def _tree_plan(routing: str, fusion: str, parent: dict[str, str]) -> Plan:
    return Plan(routing, fusion, tuple(parent.items()))


def _in_node_order(graph: nx.Graph) -> nx.Graph:
    """A copy of ``graph`` whose nodes and links were inserted in node order."""
    ordered = nx.Graph()
    ordered.add_nodes_from(sorted(graph.nodes, key=node_key))
    links = [(*sorted((u, v), key=node_key), data) for u, v, data in graph.edges(data=True)]
    ordered.add_edges_from(sorted(links, key=lambda link: _edge_key(link[:2])))
    return ordered


def _hop_distances(topology: Topology) -> dict[str, int]:
    return nx.single_source_shortest_path_length(topology.graph, topology.fusion)


def dense_plan(topology: Topology) -> Plan:
    """Every link, pointed from its later endpoint to its earlier one.

    The order is ``(hop distance to fusion, node_key)``, so the plan is a DAG
    and every node other than the fusion has at least one parent.
    """
    distance = _hop_distances(topology)

    def position(node: str) -> tuple[int, tuple]:
        return distance[node], node_key(node)

    edges = []
    for u, v in _fusion_component(topology).edges:
        edges.append((u, v) if position(u) > position(v) else (v, u))
    return Plan("dense", topology.fusion, tuple(edges))


def hop_plan(topology: Topology) -> Plan:
    """Breadth-first tree: parent = lowest-id neighbour one hop closer to the fusion node."""
    distance = _hop_distances(topology)
    graph, fusion = topology.graph, topology.fusion  # `fusion` scans every node: look it up once
    parent = {
        node: min(
            (nb for nb in graph.neighbors(node) if distance.get(nb) == hops - 1), key=node_key
        )
        for node, hops in distance.items()
        if node != fusion
    }
    return _tree_plan("hop", fusion, parent)


def max_capacity_plan(topology: Topology) -> Plan:
    """Maximum-capacity spanning tree, each node sending to its neighbour on the way to fusion.

    The tree is computed on a copy of the graph built in node order, so that
    ties between equal capacities do not depend on the order the file listed
    the links in.
    """
    tree = nx.maximum_spanning_tree(_in_node_order(_fusion_component(topology)), weight="capacity")
    parent = {child: above for above, child in nx.bfs_edges(tree, topology.fusion)}
    return _tree_plan("maxcap", topology.fusion, parent)


def dijkstra_plan(topology: Topology, message_bits: float, hop_cost_s: float = 0.0) -> Plan:
    """Shortest-path tree to the fusion node under ``link_weight(capacity, latency, message_bits)``.

    Each node's parent is its next hop on a fastest route to the fusion node;
    among routes of exactly equal length (as floats) the lowest parent id wins.
    ``hop_cost_s`` (seconds, ``>= 0``) is added to every link's weight; ``0``
    gives exactly the capacity-aware tree, and a cost larger than any route's
    delivery time puts every node at its hop distance (the ``hop`` tree's depths).
    Graphs with more than :data:`SCIPY_THRESHOLD` nodes use
    ``scipy.sparse.csgraph.dijkstra``; the tie rule is the same there, except
    around zero-weight links (``latency == 0``, ``message_bits == 0`` and
    ``hop_cost_s == 0``), where scipy's own predecessor may be kept to avoid a cycle.
    """
    if not (math.isfinite(message_bits) and message_bits >= 0):
        raise InnetError(f"message_bits must be a finite number >= 0, got {message_bits}")
    if not (math.isfinite(hop_cost_s) and hop_cost_s >= 0):
        raise InnetError(f"hop_cost_s must be a finite number >= 0, got {hop_cost_s}")
    if topology.graph.number_of_nodes() > SCIPY_THRESHOLD:
        table, fusion = topology.links, topology.fusion
        slots = _dijkstra_slots_scipy(table, table.index[fusion], message_bits, hop_cost_s)
        # One edge per child, children in node order, never the fusion node: a sorted, valid plan.
        return Plan._from_sorted("dijkstra", fusion, tuple(table.pairs[slots].tolist()))
    parent = _dijkstra_parents_networkx(topology, message_bits, hop_cost_s)
    return _tree_plan("dijkstra", topology.fusion, parent)


def _dijkstra_parents_networkx(
    topology: Topology, message_bits: float, hop_cost_s: float = 0.0
) -> dict[str, str]:
    def weight(u: str, v: str, link: dict) -> float:
        return link_weight(link["capacity"], link["latency"], message_bits, hop_cost_s)

    fusion = topology.fusion  # scans every node: look it up once
    predecessors, distance = nx.dijkstra_predecessor_and_distance(
        topology.graph, fusion, weight=weight
    )
    # `distance` lists nodes in the order Dijkstra settled them. Taking parents
    # settled earlier keeps the tree acyclic even across zero-weight links.
    settled = {node: rank for rank, node in enumerate(distance)}
    return {
        node: min((p for p in preds if settled[p] < settled[node]), key=node_key)
        for node, preds in predecessors.items()
        if node != fusion
    }


def _dijkstra_parents_scipy(
    topology: Topology, message_bits: float, hop_cost_s: float = 0.0
) -> dict[str, str]:
    """:func:`_dijkstra_slots_scipy` as ``{child id: parent id}``."""
    table = topology.links
    slots = _dijkstra_slots_scipy(table, table.index[topology.fusion], message_bits, hop_cost_s)
    return dict(table.pairs[slots].tolist())


def _dijkstra_slots_scipy(
    table: LinkTable, fusion: int, message_bits: float, hop_cost_s: float = 0.0
) -> np.ndarray:
    """The shortest-path tree as CSR slots of ``table``: one ``child -> parent`` per reached node.

    Runs ``scipy.sparse.csgraph.dijkstra`` on the topology's link arrays
    (:attr:`~innet.core.topology.model.Topology.links`). Rows are children in node
    order and each row lists its neighbours in node order, so the first slot
    of a row that lies on a shortest route holds the lowest-id parent, and
    the slots come out sorted as a plan's edges are.
    """
    link_weights = table.latency + message_bits / table.capacity + hop_cost_s  # link_weight
    distance, scipy_parent = scipy.sparse.csgraph.dijkstra(
        table.matrix(link_weights), directed=True, indices=fusion, return_predecessors=True
    )
    # A link is on a shortest route to its farther end when that end is strictly
    # farther and the link closes the gap exactly (the same float sum Dijkstra computed).
    to_u, to_v = distance[table.u], distance[table.v]
    towards_u = np.flatnonzero((to_u < to_v) & (to_u + link_weights == to_v))
    towards_v = np.flatnonzero((to_v < to_u) & (to_v + link_weights == to_u))
    on_route = np.sort(np.concatenate([table.slot_vu[towards_u], table.slot_uv[towards_v]]))
    child, above = table.row, table.indices
    first = on_route[np.flatnonzero(np.diff(child[on_route], prepend=-1))]  # first of each row
    parent = np.full(table.node_count, table.node_count, dtype=above.dtype)
    parent[child[first]] = above[first]
    slot = np.full(table.node_count, -1, dtype=np.int64)
    slot[child[first]] = first
    # Around zero-weight links scipy may reach a node from one just as far: keep
    # scipy's parent where no strictly closer one exists or where it is lower.
    odd = np.flatnonzero((scipy_parent >= 0) & (scipy_parent < parent))
    if len(odd):
        keys = child.astype(np.int64) * table.node_count + above  # sorted: CSR order
        slot[odd] = np.searchsorted(keys, odd * table.node_count + scipy_parent[odd])
    reached = np.flatnonzero(np.isfinite(distance))
    return slot[reached[reached != fusion]]


RoutingBuilder = Callable[[Topology, float, float], Plan]
"""A routing: ``builder(topology, message_bits, hop_cost_s)`` gives its plan."""

ROUTINGS: Registry[RoutingBuilder] = Registry("routing")
"""The routings :func:`build_plan` knows, by name; a scenario's ``routing:`` is one of them.

A new routing is one function registered here::

    @ROUTINGS.register("star")
    def star_plan(topology: Topology, message_bits: float, hop_cost_s: float) -> Plan:
        ...
"""


@ROUTINGS.register("dense")
def _dense(topology: Topology, message_bits: float, hop_cost_s: float) -> Plan:
    return dense_plan(topology)


ROUTINGS.register("dijkstra", dijkstra_plan)


@ROUTINGS.register("hop")
def _hop(topology: Topology, message_bits: float, hop_cost_s: float) -> Plan:
    return hop_plan(topology)


@ROUTINGS.register("maxcap")
def _maxcap(topology: Topology, message_bits: float, hop_cost_s: float) -> Plan:
    return max_capacity_plan(topology)


def build_plan(
    topology: Topology, routing: str, message_bits: float, *, hop_cost_s: float = 0.0
) -> Plan:
    """The plan of the routing called ``routing`` (a name in :data:`ROUTINGS`) for ``topology``.

    ``message_bits`` is the size of one forward message and ``hop_cost_s`` a
    price in seconds added to every link's weight; of the built-in routings
    only ``dijkstra`` uses them.

    >>> build_plan(Topology("x", nx.Graph()), "ring", 8.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    innet.core.registry.UnknownNameError: unknown routing 'ring' (expected one of: dense, ...)
    """
    return ROUTINGS.get(routing)(topology, message_bits, hop_cost_s)
