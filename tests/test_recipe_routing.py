"""The recipe for a new routing: one registered plan builder, and scenarios may name it.

A toy ``star`` routing (every sensor sends straight to the fusion node over its
own link; relays stay silent) is registered from this test through the public
registry :data:`innet.core.plans.ROUTINGS`, validated in a scenario's
``routing:`` field, and run end to end through :func:`innet.run`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import innet
from innet.core.config import VariantBase
from innet.core.errors import ConfigError
from innet.core.phases import training_phases
from innet.core.plans import ROUTINGS, Plan
from innet.core.topology.model import Topology

LATENT_DIM, BATCH = 4, 32
FLOAT32_BYTES = 4

# A relay r offers every sensor a detour; the star routing must not take it.
KITE = {
    "name": "kite",
    "defaults": {"capacity": "10Mbps", "latency": "1ms"},
    "nodes": [
        {"id": "f", "role": "fusion"},
        {"id": "s1", "role": "sensor"},
        {"id": "s2", "role": "sensor"},
        {"id": "r", "role": "relay"},
    ],
    "links": [["s1", "f"], ["s2", "f"], ["s1", "r"], ["s2", "r"], ["r", "f"]],
}


def star_plan(topology: Topology, message_bits: float, hop_cost_s: float) -> Plan:
    """Each sensor linked to the fusion node sends to it directly; nobody else sends."""
    fusion = topology.fusion
    edges = [(s, fusion) for s in topology.sensors if topology.graph.has_edge(s, fusion)]
    return Plan("star", fusion, tuple(edges))


@pytest.fixture()
def star() -> Iterator[str]:
    """``star`` registered for the test only (removed afterwards, even on failure)."""
    ROUTINGS.register("star", star_plan)
    try:
        yield "star"
    finally:
        ROUTINGS.unregister("star")


@pytest.fixture()
def scenario(tmp_path: Path) -> dict[str, Any]:
    """A one-epoch, one-seed scenario on the kite topology with a single ``star`` variant."""
    topology = tmp_path / "kite.yaml"
    topology.write_text(yaml.safe_dump(KITE))
    return {
        "name": "star_recipe",
        "topology": str(topology),
        "data": {
            "dataset": "gaussian_mixture",
            "n_samples": 200,
            "n_features": 8,
            "n_classes": 3,
            "views": "noisy",
            "snr_db": 10,
        },
        "model": {"latent_dim": LATENT_DIM, "hidden": 8},
        "training": {"epochs": 1, "batch_size": BATCH, "lr": 0.05},
        "variants": {"star": {"routing": "star"}},
        "seeds": 1,
        "report": {"figures": False},
    }


def test_an_unregistered_routing_is_refused(scenario: dict[str, Any]) -> None:
    assert "star" not in ROUTINGS
    with pytest.raises(ConfigError, match=r"unknown routing 'star' \(expected one of: dense"):
        innet.run(scenario, progress=False)


def test_a_registered_routing_is_a_valid_choice(star: str) -> None:
    assert star in ROUTINGS.names()
    assert VariantBase(routing=star).routing == "star"
    with pytest.raises(ValueError, match="hop_cost_s applies to the dijkstra routing"):
        VariantBase(routing=star, hop_cost_s=0.001)


def test_a_registered_routing_runs_end_to_end(star: str, scenario: dict[str, Any]) -> None:
    results = innet.run(scenario, progress=False)

    assert results.plans["star"] == {
        "routing": "star",
        "fusion": "f",
        "edges": [["s1", "f"], ["s2", "f"]],
    }
    training = results.exchanges[results.exchanges["phase"].isin(training_phases())]
    forward = training[training["phase"] == "forward"]
    backward = training[training["phase"] == "backward"]
    # Latents go sensor -> fusion over the direct links only, gradients come back the same way.
    assert set(zip(forward["src"], forward["dst"], strict=True)) == {("s1", "f"), ("s2", "f")}
    assert set(zip(backward["src"], backward["dst"], strict=True)) == {("f", "s1"), ("f", "s2")}
    assert "r" not in set(training["src"]) | set(training["dst"])
    # Every training step: one latent per sensor, one gradient back, of the same size.
    per_step = forward.groupby("step")
    assert (per_step.size() == 2).all()
    assert sorted(forward["nbytes"]) == sorted(backward["nbytes"])
    # A full batch's latent is BATCH x LATENT_DIM float32 values; only a last batch is smaller.
    sizes = forward.groupby("step")["nbytes"].first()
    assert (sizes.iloc[:-1] == BATCH * LATENT_DIM * FLOAT32_BYTES).all()
    assert 0 < sizes.iloc[-1] <= BATCH * LATENT_DIM * FLOAT32_BYTES
    # The metrics' training bytes are exactly these messages' bytes.
    assert int(results.metrics["train_bytes"].sum()) == int(training["nbytes"].sum())
