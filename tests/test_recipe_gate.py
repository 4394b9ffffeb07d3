"""The recipe "add a gate kind", tested: a toy kind registered from here runs end to end.

A gate kind is one :class:`~innet.families.inl.gates.GateKind` registered in
:data:`~innet.families.inl.gates.GATES`; nothing else is edited. The toy kind
``half`` sends the first half of the latent and zeros for the rest, and
reports a fixed rate of its own, so the run's node rates show that the
registry's object, and nothing else, decided them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import innet
from innet.core.errors import ConfigError
from innet.families.inl.gates import GATES, Gate, GateKind, GateOutput, RateEstimate, RateStats

ROOT = Path(__file__).resolve().parent.parent
TOY_RATE_BITS = 1.5


class HalfGate(Gate):
    """Keeps the first half of the latent, zeroes the rest; counts its calls."""

    kind = "half"
    calls = 0

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.wire_dim = dim

    def forward(self, z: torch.Tensor) -> GateOutput:
        HalfGate.calls += 1
        mask = torch.zeros(z.shape[1], dtype=z.dtype)
        mask[: z.shape[1] // 2] = 1.0
        return GateOutput(t=z * mask, rate_bits=z.new_zeros(()))


class HalfKind(GateKind):
    def build(self, dim: int, *, generator: torch.Generator, **options: Any) -> Gate:
        return HalfGate(dim)

    def estimate(self, stats: RateStats, bracket: bool) -> RateEstimate:
        return RateEstimate(TOY_RATE_BITS, TOY_RATE_BITS, stats.ceiling_bits, False, "toy")


@pytest.fixture
def half_gate() -> Iterator[None]:
    """The toy kind, registered for one test and removed afterwards."""
    GATES.register("half", HalfKind())
    HalfGate.calls = 0
    try:
        yield
    finally:
        GATES.unregister("half")


def scenario(kind: str) -> dict[str, Any]:
    return {
        "name": f"recipe_gate_{kind}",
        "topology": str(ROOT / "topologies" / "diamond.yaml"),
        "data": {
            "dataset": "gaussian_mixture",
            "n_samples": 120,
            "n_features": 8,
            "n_classes": 3,
            "views": "split",
        },
        "model": {"latent_dim": 4, "hidden": 8},
        "gate": {"kind": kind},
        "training": {"epochs": 1, "batch_size": 32, "executor": "per_node"},
        "variants": {"dense": {"routing": "dense"}},
        "seeds": 1,
    }


def test_a_gate_kind_registered_from_a_test_runs_end_to_end(half_gate: None) -> None:
    results = innet.run(scenario("half"), progress=False)
    assert HalfGate.calls > 0
    rates = results.node_rates
    assert len(rates) > 0
    assert np.allclose(rates["rate_bits"], TOY_RATE_BITS)
    assert set(rates["estimator"]) == {"toy"}
    assert results.metrics["latent_rate_bits"].iloc[-1] >= TOY_RATE_BITS * len(rates)


def test_the_toy_kind_is_gone_after_its_test() -> None:
    assert "half" not in GATES
    with pytest.raises(ConfigError, match="unknown gate kind 'half'"):
        innet.run(scenario("half"), progress=False)
