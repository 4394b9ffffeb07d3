"""Choosing the sensors of a generated or imported graph by a rule.

Shared by the generators and the GraphML importer: ``leaves`` (degree-1 nodes,
or the nodes farthest from the fusion node when there are none),
``all_but_fusion``, ``farthest`` (the ``k`` nodes farthest in hops) and
``random`` (``k`` nodes drawn with a seed). Ties go to the lowest id.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from innet.core.topology.model import node_key
from innet.core.yamlio import FieldError

__all__ = ["sensors_by_rule"]


def sensors_by_rule(
    graph: nx.Graph,
    fusion: str,
    rule: str,
    *,
    k: int | None,
    seed: int,
    where: tuple[str, ...],
) -> list[str]:
    """The sensors ``rule`` picks in ``graph`` (sorted); ``where`` locates errors.

    >>> sensors_by_rule(nx.path_graph(["f", "a", "b"]), "f", "leaves", k=None, seed=0,
    ...                 where=("sensors",))
    ['b']
    """
    others = sorted((node for node in graph if node != fusion), key=node_key)
    if not others:
        raise FieldError(where, "no sensor possible: the graph has only the fusion node")
    hops = nx.single_source_shortest_path_length(graph, fusion)
    if rule == "leaves":
        sensors = [node for node in others if graph.degree[node] == 1]
        if not sensors:
            farthest = max(hops[node] for node in others)
            sensors = [node for node in others if hops[node] == farthest]
    elif rule == "all_but_fusion":
        sensors = others
    else:
        assert k is not None
        sensors = _k_sensors(others, hops, rule, k=k, seed=seed, where=where)
    return sorted(sensors, key=node_key)


def _k_sensors(
    others: list[str], hops: dict[str, int], rule: str, *, k: int, seed: int, where: tuple[str, ...]
) -> list[str]:
    """``k`` of ``others`` (the nodes besides the fusion node, in node order): the
    ``farthest`` in ``hops``, or drawn at ``random`` with ``seed``."""
    if k > len(others):
        raise FieldError(
            (*where, "k"), f"k={k} but only {len(others)} nodes besides the fusion node"
        )
    if rule == "farthest":
        return sorted(others, key=lambda node: (-hops[node], node_key(node)))[:k]
    picked = np.random.default_rng(seed).choice(len(others), size=k, replace=False)
    return [others[i] for i in picked]
