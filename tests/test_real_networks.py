"""The main comparison on a real network (GEANT, from the Internet Topology Zoo)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from innet.app.cli import main
from innet.core.topology.importer import TopologyImportWarning

ROOT = Path(__file__).resolve().parents[1]
GEANT_YAML = ROOT / "topologies" / "geant.yaml"


@pytest.mark.slow
def test_dense_vs_dijkstra_on_geant(tmp_path):
    out = tmp_path / "geant"
    with pytest.warns(TopologyImportWarning) as caught:  # the import says what it changed
        code = main(
            ["--scenario", "dense_vs_dijkstra", "--topology", str(GEANT_YAML), "--seeds", "1",
             "--set", "training.epochs=1", "--out", str(out), "--no-progress"]
        )  # fmt: skip
    messages = " ".join(str(w.message) for w in caught)
    assert "parallel links" in messages and "isolated node" in messages
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    topology = json.loads((out / "topology.json").read_text())
    assert topology["name"] == "geant"
    n_links = len(topology["links"])
    dense, dijkstra = summary["variants"]["dense"], summary["variants"]["dijkstra"]
    assert dense["links_used"] <= n_links and dijkstra["links_used"] < dense["links_used"]
    assert dijkstra["train_exchange_bytes"] < dense["train_exchange_bytes"]
    labels = {node["id"]: node.get("label") for node in topology["nodes"]}
    assert "DE" in labels.values()
    exchanges = pd.read_parquet(out / "exchanges.parquet")
    assert (exchanges["t_end"] > exchanges["t_start"]).all()
    assert (out / "figures" / "topology_dijkstra.png").is_file()
