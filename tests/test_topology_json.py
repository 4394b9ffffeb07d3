"""``topology.json``: a compact form that reads back exactly, and the older form still reads.

A run directory keeps its graph in ``topology.json``; ``report`` and ``retime``
read it back. The form is compact (one node or link per line, links as rows)
because a 100,000-node run wrote 140 MB of indented node-link JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import pytest

from innet.core.topology import load_topology
from innet.rundir.io import load_topology_json, save_topology_json

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"


def same_topology(a, b) -> bool:  # noqa: ANN001
    return (
        a.name == b.name
        and dict(a.graph.nodes(data=True)) == dict(b.graph.nodes(data=True))
        and nx.utils.edges_equal(a.graph.edges(data=True), b.graph.edges(data=True))
    )


def indented_node_link(topology) -> str:  # noqa: ANN001
    """The form runs wrote before: networkx node-link data, indented."""
    data = nx.node_link_data(topology.graph, edges="links")
    data.update(name=topology.name, source=str(topology.source))
    return json.dumps(data, indent=2, default=list) + "\n"


@pytest.mark.parametrize("name", ["grid4x4", "random_geometric1000", "two_level16"])
def test_compact_form_reads_back_exactly_and_is_smaller(name: str, tmp_path: Path) -> None:
    topology = load_topology(TOPOLOGIES / f"{name}.yaml")
    path = tmp_path / "topology.json"
    save_topology_json(topology, path)
    assert same_topology(load_topology_json(path), topology)
    data = json.loads(path.read_text())
    assert len(data["nodes"]) == topology.graph.number_of_nodes()
    assert len(data["links"]) == topology.graph.number_of_edges()
    assert data["link_fields"][:2] == ["source", "target"]
    assert path.read_text().count("\n") == len(data["nodes"]) + len(data["links"]) + 11
    assert len(path.read_text()) < 0.5 * len(indented_node_link(topology))


def test_labels_losses_and_missing_attributes_survive(tmp_path: Path) -> None:
    topology = load_topology(TOPOLOGIES / "mesh14.yaml")
    graph = topology.graph
    graph.nodes["f"]["label"] = "Frankfurt"
    graph.nodes["r1"]["compute"] = 2e9
    first = next(iter(graph.edges))
    graph.edges[first]["loss"] = 0.05  # only this link has a loss attribute
    save_topology_json(topology, tmp_path / "topology.json")
    loaded = load_topology_json(tmp_path / "topology.json")
    assert same_topology(loaded, topology)
    assert loaded.graph.nodes["f"]["label"] == "Frankfurt"
    assert loaded.graph.nodes["r2"]["label"] == "r2"
    assert sum("loss" in attrs for *_, attrs in loaded.graph.edges(data=True)) == 1


def test_the_older_indented_form_still_reads(tmp_path: Path) -> None:
    topology = load_topology(TOPOLOGIES / "grid4x4.yaml")
    path = tmp_path / "topology.json"
    path.write_text(indented_node_link(topology))
    assert same_topology(load_topology_json(path), topology)
