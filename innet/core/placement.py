"""Placement: which torch.distributed rank runs which node.

When the simulator runs under ``torchrun`` every process (rank) runs some of
the topology's nodes. A message between two nodes on the same rank stays in
memory; a message between nodes on different ranks travels through
torch.distributed. A *placement* maps every node id to a rank in
``0..world_size-1``. Four strategies, registered by name in :data:`PLACEMENTS`:

- ``one_per_rank``: node ``i`` (in node order) on rank ``i``; needs exactly
  as many ranks as nodes.
- ``round_robin``: node ``i`` on rank ``i % world_size``.
- ``partition``: ranks get balanced shares of the nodes (sizes differ by at
  most one) chosen so that few links join two ranks, by recursive
  Kernighan–Lin bisection of the links that carry traffic (the plan's edges
  when a plan is given, else the topology's links).
- ``explicit``: a ``{node: rank}`` mapping given by the user.

Every rank computes the placement on its own, so it must come out the same in
every process: the strategies depend only on node ids and links, never on
Python's hash seed or on the order a file listed them in.

>>> import networkx as nx
>>> from innet.core.topology.model import Topology
>>> path = Topology("path", nx.path_graph(["n1", "n2", "n3", "n4", "n5", "n6"]))
>>> place_nodes(path, None, 2, "round_robin")
{'n1': 0, 'n2': 1, 'n3': 0, 'n4': 1, 'n5': 0, 'n6': 1}
>>> place_nodes(path, None, 2, "partition")
{'n1': 0, 'n2': 0, 'n3': 0, 'n4': 1, 'n5': 1, 'n6': 1}
>>> cross_rank_links(path.graph.edges, place_nodes(path, None, 2, "partition"))
1
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable, Iterable, Mapping

import networkx as nx

from innet.core.errors import InnetError
from innet.core.plans import Plan
from innet.core.registry import Registry
from innet.core.topology.model import Topology

__all__ = ["PLACEMENTS", "Placer", "cross_rank_links", "place_nodes"]

Placer = Callable[[Topology, Plan | None, int, Mapping[str, int] | None], dict[str, int]]
"""A placement strategy: ``placer(topology, plan, world_size, explicit)`` gives ``{node: rank}``."""

PLACEMENTS: Registry[Placer] = Registry("placement")
"""The strategies :func:`place_nodes` knows, by name (a scenario's ``distributed.placement``)."""

KERNIGHAN_LIN_PASSES = 10
"""Improvement passes of each Kernighan–Lin bisection."""


def place_nodes(
    topology: Topology,
    plan: Plan | None,
    world_size: int,
    strategy: str,
    explicit: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Map every node of ``topology`` to a rank in ``0..world_size-1`` (see the module docs).

    ``plan`` only matters for ``partition``: its edges are the links whose
    cut is minimised. ``explicit`` is the mapping for the ``explicit``
    strategy. The result lists nodes in node order. Invalid requests raise
    :class:`~innet.core.errors.InnetError`; an explicit placement that leaves a
    rank without nodes only warns.
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise InnetError(f"world size must be an integer >= 1, got {world_size!r}")
    return PLACEMENTS.get(strategy)(topology, plan, world_size, explicit)


def cross_rank_links(plan_edges: Iterable[tuple[str, str]], placement: Mapping[str, int]) -> int:
    """How many of ``plan_edges`` join nodes placed on different ranks.

    >>> cross_rank_links([("a", "b"), ("b", "c")], {"a": 0, "b": 0, "c": 1})
    1
    """
    return sum(1 for u, v in plan_edges if placement[u] != placement[v])


def _computed_nodes(
    topology: Topology, world_size: int, explicit: Mapping[str, int] | None, strategy: str
) -> list[str]:
    """The nodes a computed (not ``explicit``) strategy places: every rank must get one."""
    if explicit is not None:
        raise InnetError(
            f"a {{node: rank}} mapping is only used by placement 'explicit', not {strategy!r}"
        )
    nodes = topology.nodes
    if world_size > len(nodes):
        raise InnetError(
            f"world size {world_size} exceeds the {len(nodes)} nodes of topology "
            f"{topology.name!r}: some ranks would run no node"
        )
    return nodes


@PLACEMENTS.register("one_per_rank")
def _one_per_rank(
    topology: Topology, plan: Plan | None, world_size: int, explicit: Mapping[str, int] | None
) -> dict[str, int]:
    nodes = _computed_nodes(topology, world_size, explicit, "one_per_rank")
    if world_size != len(nodes):
        raise InnetError(
            f"placement 'one_per_rank' needs one rank per node: topology {topology.name!r} "
            f"has {len(nodes)} nodes but the world size is {world_size}"
        )
    return {node: rank for rank, node in enumerate(nodes)}


@PLACEMENTS.register("round_robin")
def _round_robin(
    topology: Topology, plan: Plan | None, world_size: int, explicit: Mapping[str, int] | None
) -> dict[str, int]:
    nodes = _computed_nodes(topology, world_size, explicit, "round_robin")
    return {node: i % world_size for i, node in enumerate(nodes)}


@PLACEMENTS.register("partition")
def _partition_placement(
    topology: Topology, plan: Plan | None, world_size: int, explicit: Mapping[str, int] | None
) -> dict[str, int]:
    nodes = _computed_nodes(topology, world_size, explicit, "partition")
    links = plan.edges if plan is not None else topology.graph.edges
    return _partition(nodes, links, world_size)


@PLACEMENTS.register("explicit")
def _explicit_placement(
    topology: Topology, plan: Plan | None, world_size: int, explicit: Mapping[str, int] | None
) -> dict[str, int]:
    if explicit is None:
        raise InnetError("placement 'explicit' needs a {node: rank} mapping")
    return _explicit(topology.nodes, world_size, explicit)


def _explicit(nodes: list[str], world_size: int, explicit: Mapping[str, int]) -> dict[str, int]:
    given = {str(node): rank for node, rank in explicit.items()}
    unknown = sorted(set(given) - set(nodes))
    if unknown:
        raise InnetError(f"placement names nodes not in the topology: {', '.join(unknown)}")
    missing = [node for node in nodes if node not in given]
    if missing:
        raise InnetError(f"placement gives no rank to nodes: {', '.join(missing)}")
    for node in nodes:
        rank = given[node]
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise InnetError(
                f"placement puts node {node!r} on rank {rank!r}, "
                f"outside 0..{world_size - 1} (world size {world_size})"
            )
    idle = sorted(set(range(world_size)) - set(given.values()))
    if idle:
        warnings.warn(
            f"placement leaves ranks without nodes: {', '.join(map(str, idle))}",
            stacklevel=3,
        )
    return {node: given[node] for node in nodes}


def _partition(
    nodes: list[str], links: Iterable[tuple[str, str]], world_size: int
) -> dict[str, int]:
    """Balanced parts with few cut links, by recursive Kernighan–Lin bisection.

    Nodes become integers (their position in node order) so that every set
    and dict below iterates in the same order in every process.
    """
    index = {node: i for i, node in enumerate(nodes)}
    graph = nx.Graph()
    graph.add_nodes_from(range(len(nodes)))
    graph.add_edges_from(sorted({tuple(sorted((index[u], index[v]))) for u, v in links if u != v}))
    base, extra = divmod(len(nodes), world_size)
    sizes = [base + (1 if rank < extra else 0) for rank in range(world_size)]
    parts = _bisect(graph, list(range(len(nodes))), sizes)
    rank_of = {member: rank for rank, part in enumerate(parts) for member in part}
    return {node: rank_of[i] for i, node in enumerate(nodes)}


def _bisect(graph: nx.Graph, members: list[int], sizes: list[int]) -> list[list[int]]:
    """Split ``members`` into ``len(sizes)`` parts of exactly those sizes."""
    if len(sizes) == 1:
        return [members]
    half = len(sizes) // 2
    first_size = sum(sizes[:half])
    sub = nx.Graph()
    sub.add_nodes_from(members)
    sub.add_edges_from(sorted(graph.subgraph(members).edges))
    order = _bfs_order(sub)
    start_first, start_rest = set(order[:first_size]), set(order[first_size:])
    # Kernighan–Lin swaps nodes in pairs, so both sides keep their sizes.
    rest, first = nx.community.kernighan_lin_bisection(
        sub, partition=(start_first, start_rest), max_iter=KERNIGHAN_LIN_PASSES, seed=0
    )
    assert len(first) == first_size
    return _bisect(graph, sorted(first), sizes[:half]) + _bisect(graph, sorted(rest), sizes[half:])


def _bfs_order(graph: nx.Graph) -> list[int]:
    """Nodes in breadth-first order from a far-out node of each component, components in order.

    Cutting this order in two gives compact halves: a good start for Kernighan–Lin.
    """
    order: list[int] = []
    seen: set[int] = set()
    for node in sorted(graph):
        if node in seen:
            continue
        component = _bfs(graph, _peripheral(graph, node))
        order.extend(component)
        seen.update(component)
    return order


def _bfs(graph: nx.Graph, source: int) -> list[int]:
    visited, queue, order = {source}, deque([source]), []
    while queue:
        node = queue.popleft()
        order.append(node)
        for neighbour in sorted(graph[node]):
            if neighbour not in visited:
                visited.add(neighbour)
                queue.append(neighbour)
    return order


def _peripheral(graph: nx.Graph, node: int, rounds: int = 2) -> int:
    """A node far from the rest of its component (farthest from the farthest, lowest id)."""
    for _ in range(rounds):
        distance = nx.single_source_shortest_path_length(graph, node)
        node = min(distance, key=lambda other: (-distance[other], other))
    return node
