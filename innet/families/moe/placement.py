"""Where the experts live: groups of nodes, expert placement, dispatch costs, re-placement.

- **Groups** (:func:`node_groups`): the topology's communities by networkx's
  Louvain method on link capacities (seed 0), numbered by their first node in
  node order. On a two-level topology (fast links inside a group, slow ones
  between) these are the groups.
- **Placement** (:func:`initial_placement`): expert ``e`` on expert node
  ``e mod n`` (expert nodes in node order).
- **Costs** (:func:`dispatch_costs`): the network model's time for one token
  (``token_bytes``) from a source to an expert's node over the capacity-aware
  shortest path, ``sum over hops (latency + 8 * token_bytes / capacity)``,
  divided by the largest, so CARL's ``lambda`` is unitless.
- **Re-placement** (:func:`propose_placement`): from the load each expert
  took since the last re-placement, assign experts to groups heaviest first,
  each to the group with the least predicted load that still has a free
  slot (longest-processing-time first); experts that stay in their group keep
  their node. Adopted only when the predicted maximum group load falls.

>>> predicted_max_group_load(np.array([4, 1, 1, 4]), ["a", "a", "b", "b"], {"a": 0, "b": 1})
5.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import networkx as nx
import numpy as np

from innet.core.netsim import NetworkModel
from innet.core.topology.model import Topology

__all__ = [
    "node_groups",
    "initial_placement",
    "dispatch_costs",
    "propose_placement",
    "predicted_max_group_load",
]


def node_groups(topology: Topology) -> dict[str, int]:
    """Each node's group (Louvain communities weighted by capacity, numbered in node order)."""
    communities = nx.community.louvain_communities(topology.graph, weight="capacity", seed=0)
    order = {node: i for i, node in enumerate(topology.graph.nodes)}
    ranked = sorted(communities, key=lambda members: min(order[n] for n in members))
    return {node: g for g, members in enumerate(ranked) for node in members}


def initial_placement(experts: int, expert_nodes: Sequence[str]) -> list[str]:
    """Expert ``e`` on ``expert_nodes[e % len(expert_nodes)]``.

    >>> initial_placement(3, ["x", "y"])
    ['x', 'y', 'x']
    """
    return [expert_nodes[e % len(expert_nodes)] for e in range(experts)]


def dispatch_costs(
    model: NetworkModel, sources: Sequence[str], placement: Sequence[str], token_bytes: int
) -> np.ndarray:
    """``[S, E]`` normalised cost of sending one token from each source to each expert."""
    graph = model.topology.graph
    costs = np.zeros((len(sources), len(placement)))
    for i, src in enumerate(sources):
        for e, node in enumerate(placement):
            path = model.route(src, node, token_bytes)
            costs[i, e] = sum(
                graph.edges[u, v]["latency"] + 8 * token_bytes / graph.edges[u, v]["capacity"]
                for u, v in zip(path, path[1:], strict=False)
            )
    top = costs.max()
    return costs / top if top > 0 else costs


def predicted_max_group_load(
    load: np.ndarray, placement: Sequence[str], groups: Mapping[str, int]
) -> float:
    """The largest total load of one group when expert ``e`` lives on ``placement[e]``."""
    totals: dict[int, float] = {}
    for e, node in enumerate(placement):
        totals[groups[node]] = totals.get(groups[node], 0.0) + float(load[e])
    return max(totals.values())


def propose_placement(
    load: np.ndarray, placement: Sequence[str], groups: Mapping[str, int]
) -> list[str]:
    """A placement that spreads ``load`` over groups (see the module docstring).

    The slots (nodes, with multiplicity) are those of ``placement``.

    >>> propose_placement(np.array([4, 4, 1, 1]), ["a", "b", "c", "d"],
    ...                   {"a": 0, "b": 0, "c": 1, "d": 1})
    ['a', 'c', 'b', 'd']
    """
    slots: dict[int, list[str]] = {}
    for node in placement:
        slots.setdefault(groups[node], []).append(node)
    capacity = {g: len(nodes) for g, nodes in slots.items()}
    totals = dict.fromkeys(slots, 0.0)
    group_of = {}
    for e in sorted(range(len(load)), key=lambda e: (-load[e], e)):
        free = [g for g in slots if capacity[g] > 0]
        g = min(free, key=lambda g: (totals[g], g))
        group_of[e] = g
        capacity[g] -= 1
        totals[g] += float(load[e])
    new: list[str | None] = [None] * len(load)
    for e in range(len(load)):  # stay on the same node when staying in the group
        if groups[placement[e]] == group_of[e] and placement[e] in slots[group_of[e]]:
            new[e] = placement[e]
            slots[group_of[e]].remove(placement[e])
    for e in range(len(load)):
        if new[e] is None:
            new[e] = slots[group_of[e]].pop(0)
    return [node for node in new if node is not None]
