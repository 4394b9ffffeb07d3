"""The validated topology: a networkx graph whose nodes and links carry typed attributes.

Every loader (YAML, generators, later GraphML) produces a :class:`Topology`.
Node ids are strings. Node attributes:

- ``role``: ``"fusion"``, ``"sensor"`` or ``"relay"`` (exactly one fusion node)
- ``view``: int or None, the view index a sensor observes
- ``compute``: float or None, FLOP/s of the node
- ``tx_ports``: int or None, number of radios (None: unlimited)
- ``label``: str, a human-readable name (defaults to the id)
- ``pos``: (x, y) tuple or None, for drawing

Link (edge) attributes: ``capacity`` (bits/s, float > 0) and ``latency``
(seconds, float >= 0), the same in both directions.

A ``Topology`` reads its links into arrays (:attr:`Topology.links`) the first
time large-graph code asks for them and keeps them: once a topology is in
use, change a network by building a new ``Topology``, not by editing its graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import networkx as nx

from innet.core.topology.links import LinkTable, link_table
from innet.core.topology.order import node_key, ordered_ids

__all__ = ["Topology", "node_key", "loss_attribute"]


def loss_attribute(loss: float | None) -> dict[str, float]:
    """A link's ``loss`` edge attribute: ``{"loss": p}`` when ``p > 0``, else nothing.

    Only lossy links carry ``loss``, so a loss-free graph has exactly the
    attributes it had before losses existed; read it as ``.get("loss", 0.0)``.

    >>> loss_attribute(0.01), loss_attribute(0.0), loss_attribute(None)
    ({'loss': 0.01}, {}, {})
    """
    return {"loss": float(loss)} if loss else {}


@dataclass
class Topology:
    """A named, validated network graph."""

    name: str
    graph: nx.Graph
    source: Path | None = None

    @cached_property
    def fusion(self) -> str:
        """The id of the single fusion node (looked up on first use, then kept)."""
        return next(n for n, role in self.graph.nodes(data="role") if role == "fusion")

    @property
    def sensors(self) -> list[str]:
        """Sensor ids in node order."""
        return sorted(
            (n for n, role in self.graph.nodes(data="role") if role == "sensor"), key=node_key
        )

    @property
    def nodes(self) -> list[str]:
        """All node ids in node order."""
        return ordered_ids(self.graph)

    @cached_property
    def links(self) -> LinkTable:
        """Node ids and links as arrays, read from the graph on first use and then kept."""
        return link_table(self.graph)

    def label(self, node: str) -> str:
        """Human-readable label of a node."""
        return str(self.graph.nodes[node].get("label") or node)
