"""Network topologies: who is linked to whom, how fast, and which node plays which role.

A topology is a graph of nodes (one fusion node, sensors, relays) joined by
symmetric links with a capacity (bits/s) and a latency (s). It comes from a
YAML file that lists nodes and links or describes a random-graph generator;
either way it is validated into a :class:`Topology` whose ``graph`` is a
networkx graph with typed attributes.

>>> topology = load_topology("topologies/diamond.yaml")  # doctest: +SKIP
>>> print(format_summary(summarize_topology(topology)))  # doctest: +SKIP
"""

from innet.topology.load import load_topology, topology_from_dict, topology_to_dict
from innet.topology.model import Topology, node_key
from innet.topology.summary import format_summary, summarize_topology

__all__ = [
    "Topology",
    "node_key",
    "load_topology",
    "topology_from_dict",
    "topology_to_dict",
    "summarize_topology",
    "format_summary",
]
