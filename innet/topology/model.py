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
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

__all__ = ["Topology", "node_key"]

_DIGITS = re.compile(r"(\d+)")


@functools.cache
def node_key(node_id: str) -> tuple:
    """Sort key giving the deterministic total order of node ids ("natural" order).

    Digit runs compare as numbers, so ``n2 < n10``; ties fall back to the raw
    string so the order is total.

    >>> sorted(["n10", "n2", "f"], key=node_key)
    ['f', 'n2', 'n10']
    """
    parts = _DIGITS.split(node_id)
    return tuple((0, int(p), "") if p.isdecimal() else (1, 0, p) for p in parts if p) + (
        (2, 0, node_id),
    )


@dataclass
class Topology:
    """A named, validated network graph."""

    name: str
    graph: nx.Graph
    source: Path | None = None

    @property
    def fusion(self) -> str:
        """The id of the single fusion node."""
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
        return sorted(self.graph.nodes, key=node_key)

    def label(self, node: str) -> str:
        """Human-readable label of a node."""
        return str(self.graph.nodes[node].get("label") or node)
