"""A topology at a glance: how many nodes of each role, links, diameter, capacity and latency.

:func:`summarize_topology` returns plain numbers (for JSON summaries and
tables); :func:`format_summary` writes them as a few lines for people.

The diameter is the longest shortest path in hops within the fusion node's
connected component (nodes outside it take no part in learning). It is exact
up to :data:`EXACT_DIAMETER_LIMIT` nodes; above that it is networkx's
two-sweep lower bound, and ``diameter_exact`` says so.

>>> from innet.core.topology.generators import generate_topology
>>> from innet.core.topology.schema import GeneratorSpec
>>> ring = generate_topology(GeneratorSpec(kind="ring", n=6, capacity="10Mbps",
...                          latency="1ms", sensors="all_but_fusion"), name="ring6")
>>> print(format_summary(summarize_topology(ring)))
topology ring6: 6 nodes (fusion n0, 5 sensors, 0 relays), 6 links
diameter 3 hops; fusion eccentricity 3 hops
capacity 10 Mbps .. 10 Mbps; latency 1 ms .. 1 ms
"""

from __future__ import annotations

from typing import Any

import networkx as nx

from innet.core.topology.model import Topology
from innet.core.topology.schema import ROLES
from innet.core.units import format_bitrate, format_duration

__all__ = ["summarize_topology", "format_summary", "EXACT_DIAMETER_LIMIT"]

EXACT_DIAMETER_LIMIT = 5000


def summarize_topology(topology: Topology) -> dict[str, Any]:
    """Counts and ranges of ``topology`` as a JSON-ready dict.

    Keys: ``name``, ``nodes``, ``nodes_by_role`` ({fusion, sensor, relay}: count),
    ``fusion``, ``links``, ``diameter_hops``, ``diameter_exact``,
    ``fusion_eccentricity_hops`` (hops from the fusion node to the farthest node
    it reaches), ``capacity_min_bps``, ``capacity_max_bps``, ``latency_min_s``,
    ``latency_max_s`` (None without links).
    """
    graph = topology.graph
    by_role = dict.fromkeys(ROLES, 0)  # the usual roles first, then any other
    for _, role in graph.nodes(data="role"):
        by_role[role] = by_role.get(role, 0) + 1
    fusion = topology.fusion
    component = graph.subgraph(nx.node_connected_component(graph, fusion))
    exact = component.number_of_nodes() <= EXACT_DIAMETER_LIMIT
    diameter = nx.diameter(component) if exact else nx.approximation.diameter(component)
    hops = nx.single_source_shortest_path_length(graph, fusion)
    capacities = [capacity for _, _, capacity in graph.edges(data="capacity")]
    latencies = [latency for _, _, latency in graph.edges(data="latency")]
    return {
        "name": topology.name,
        "nodes": graph.number_of_nodes(),
        "nodes_by_role": by_role,
        "fusion": fusion,
        "links": graph.number_of_edges(),
        "diameter_hops": int(diameter),
        "diameter_exact": exact,
        "fusion_eccentricity_hops": max(hops.values()),
        "capacity_min_bps": min(capacities, default=None),
        "capacity_max_bps": max(capacities, default=None),
        "latency_min_s": min(latencies, default=None),
        "latency_max_s": max(latencies, default=None),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A few human-readable lines for a :func:`summarize_topology` result."""
    roles = summary["nodes_by_role"]
    lines = [
        f"topology {summary['name']}: {_count(summary['nodes'], 'node')} "
        f"(fusion {summary['fusion']}, "
        + ", ".join(_count(count, role) for role, count in roles.items() if role != "fusion")
        + f"), {_count(summary['links'], 'link')}",
        f"diameter {'' if summary['diameter_exact'] else '>= '}"
        f"{_count(summary['diameter_hops'], 'hop')}; "
        f"fusion eccentricity {_count(summary['fusion_eccentricity_hops'], 'hop')}",
    ]
    if summary["links"]:
        lines.append(
            f"capacity {format_bitrate(summary['capacity_min_bps'])} .. "
            f"{format_bitrate(summary['capacity_max_bps'])}; "
            f"latency {format_duration(summary['latency_min_s'])} .. "
            f"{format_duration(summary['latency_max_s'])}"
        )
    return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
