"""The resolved config.yaml of an INL scenario: which gate fields it keeps, and its round trip.

``tidy_config`` (innet/families/inl/config.py) leaves out the fields a
variant's choices do not use. ``gate.codebook_sync`` is used only by a
discrete gate that publishes a trained codebook, that is with the ``index``
or ``entropy`` forward wire; ``gate.codebook`` (trained or fixed) changes
every discrete gate. Loading the written config again must give the same
config.yaml, and the same variants wherever a field is used.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from innet.app.scenario import load_scenario
from innet.core.config import LoadedScenario
from innet.families.runs import resolved_config

DIAMOND = Path(__file__).resolve().parents[1] / "topologies" / "diamond.yaml"

SCENARIO = {
    "name": "pruning",
    "topology": str(DIAMOND),
    "gate": {"kind": "none", "codebook_sync": 5, "tau_final": 0.25},
    "variants": {
        "plain": {"routing": "dijkstra"},
        "gauss_entropy": {
            "routing": "dijkstra",
            "gate": {"kind": "gaussian"},
            "wire": {"forward": "entropy"},
        },
        "disc_float32": {"routing": "dijkstra", "gate": {"kind": "discrete"}},
        "disc_int8": {
            "routing": "dijkstra",
            "gate": {"kind": "discrete"},
            "wire": {"forward": "int8", "backward": "int8"},
        },
        "disc_index": {
            "routing": "dijkstra",
            "gate": {"kind": "discrete"},
            "wire": {"forward": "index", "backward": "int8"},
        },
        "disc_entropy": {
            "routing": "dijkstra",
            "gate": {"kind": "discrete", "codebook_sync": 3},
            "wire": {"forward": "entropy"},
        },
        "disc_index_fixed": {
            "routing": "dijkstra",
            "gate": {"kind": "discrete", "codebook": "fixed"},
            "wire": {"forward": "index"},
        },
    },
}


def load(tmp_path: Path, raw: dict, name: str = "scenario.yaml") -> LoadedScenario:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_scenario(path)


def test_codebook_sync_is_kept_only_where_a_trained_codebook_is_published(tmp_path: Path) -> None:
    gates = {
        name: variant["gate"]
        for name, variant in resolved_config(load(tmp_path, SCENARIO))["variants"].items()
    }
    assert gates["disc_index"]["codebook_sync"] == 5  # inherited from the scenario's gate
    assert gates["disc_entropy"]["codebook_sync"] == 3
    for name in ("disc_float32", "disc_int8", "disc_index_fixed"):
        assert "codebook_sync" not in gates[name], name
    # `codebook` changes every discrete gate (fixed: commitment loss, no running means)
    for name in ("disc_float32", "disc_int8", "disc_index", "disc_entropy"):
        assert gates[name]["codebook"] == "trained", name
    assert gates["disc_index_fixed"]["codebook"] == "fixed"
    # no codebook field at all without a discrete gate, whatever the wire
    for name in ("plain", "gauss_entropy"):
        assert not {"codebook", "codebook_sync", "codewords"} & set(gates[name]), name


def test_scenario_gate_keeps_codebook_sync_only_with_an_index_wire(tmp_path: Path) -> None:
    raw = {**SCENARIO, "gate": {"kind": "discrete", "codebook_sync": 4}}
    raw["variants"] = {"v": {"routing": "dijkstra"}}
    float32 = resolved_config(load(tmp_path, raw))
    assert "codebook_sync" not in float32["gate"] and float32["gate"]["codebook"] == "trained"
    index = resolved_config(load(tmp_path, {**raw, "wire": {"forward": "index"}}))
    assert index["gate"]["codebook_sync"] == 4
    assert index["variants"]["v"]["gate"]["codebook_sync"] == 4


def test_written_config_gives_the_same_variants(tmp_path: Path) -> None:
    loaded = load(tmp_path, SCENARIO)
    written = resolved_config(loaded)
    again = load(tmp_path, written, "config.yaml")
    assert resolved_config(again) == written
    # what the codebook-publishing variants run with is unchanged, field for field
    before = {v.name: v for v in loaded.variants}
    for variant in again.variants:
        if variant.name in ("disc_index", "disc_entropy"):
            assert variant == before[variant.name]
