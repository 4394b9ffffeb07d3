"""Network topologies: who is linked to whom, how fast, and which node plays which role.

A topology is a graph of nodes (one fusion node, sensors, relays) joined by
symmetric links with a capacity (bits/s) and a latency (s). It comes from a
YAML file that lists nodes and links or describes a random-graph generator;
either way it is validated into a :class:`Topology` whose ``graph`` is a
networkx graph with typed attributes.

``load_topology("topologies/diamond.yaml")`` reads a file; the same content
as a dict:

>>> topology = topology_from_dict({
...     "name": "line",
...     "defaults": {"latency": "1ms"},
...     "nodes": [{"id": "s", "role": "sensor"}, {"id": "r", "role": "relay"},
...               {"id": "f", "role": "fusion"}],
...     "links": [{"between": ["s", "r"], "capacity": "1Mbps"},
...               {"between": ["r", "f"], "capacity": "10Mbps"}],
... })
>>> print(format_summary(summarize_topology(topology)))
topology line: 3 nodes (fusion f, 1 sensor, 1 relay), 2 links
diameter 2 hops; fusion eccentricity 2 hops
capacity 1 Mbps .. 10 Mbps; latency 1 ms .. 1 ms
"""

from innet.core.topology.load import load_topology, topology_from_dict, topology_to_dict
from innet.core.topology.model import Topology, node_key
from innet.core.topology.summary import format_summary, summarize_topology

__all__ = [
    "Topology",
    "node_key",
    "load_topology",
    "topology_from_dict",
    "topology_to_dict",
    "summarize_topology",
    "format_summary",
]
