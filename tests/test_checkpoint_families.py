"""Checkpoints of the ``moe`` and ``finite_bank`` families: a run resumed from the state saved
after an intermediate epoch finishes with the uninterrupted run's numbers.

Each trainer is driven directly with checkpoints kept in memory (every state
goes through ``torch.save`` and back, as a file would), saving after every
epoch; a fresh trainer resumed from an intermediate epoch's state must give
the same metrics, family tables and exchange records as the run that never
stopped.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml

from innet.app.scenario import load_scenario
from innet.core.config import LoadedScenario
from innet.core.group import LocalGroup
from innet.core.records import ExchangeLog
from innet.core.topology import load_topology
from innet.core.training import TrainResult
from innet.core.transport import InProcessTransport, RecordingTransport
from innet.families import FAMILIES

ROOT = Path(__file__).resolve().parents[1]

MOE = {
    "name": "moe_checkpoint",
    "family": "moe",
    "topology": str(ROOT / "topologies" / "two_level16.yaml"),
    "seeds": 1,
    "moe": {
        "dataset": "clusters",
        "n_samples": 300,
        "experts": 12,
        "top_k": 2,
        "layers": 2,
        "batch_size": 60,
        "epochs": 4,
        "balance_check": {"steps": 3, "tokens": 64, "gammas": [0.02]},
    },
    "variants": {
        # balance state, warm start and re-placement every 3 steps (so that experts still to
        # migrate are pending when an epoch of 4 steps ends)
        "carl": {
            "router": {
                "kind": "carl",
                "lambda": 1,
                "balance": "adaptive",
                "warm_start": 2,
                "replace_every": 3,
            }
        },
        "bias": {"router": {"kind": "bias", "bias_rate": 0.01}},
        "ac": {"router": {"kind": "ac"}},
    },
}

BANK_TOPOLOGY = (
    "name: star8\ndefaults: {capacity: 1Mbps, latency: 1ms}\nnodes:\n  - {id: g, role: fusion}\n"
    + "".join(f"  - {{id: e{i}, role: sensor}}\n" for i in range(1, 9))
    + "links:\n"
    + "".join(f"  - [g, e{i}]\n" for i in range(1, 9))
)
BANK = {
    "name": "bank_checkpoint",
    "family": "finite_bank",
    "topology": "star8.yaml",
    "seeds": 1,
    "bank": {"experts": 8},
    "gibbs": {"alphas": [0, 10], "sample_sizes": [10], "resamples": 5},
    "router": {"betas": [0, 0.01, 0.1], "steps": 3, "batch_size": 16, "slopes": [0.5, 2, 8]},
    "gating_bound": {
        "population": 200,
        "temperatures": [1],
        "sample_sizes": [10],
        "resamples": 5,
        "slopes": [0.3, 3, 30],
    },
    "variants": {"router": {"routing": "dijkstra"}},
}


class MemoryCheckpoints:
    """Checkpoints in memory: saved after every epoch, each state written with ``torch.save``
    and read back with ``torch.load`` as from a file; resumes from ``start`` (or afresh)."""

    def __init__(self, start: bytes | None = None) -> None:
        self.start = start
        self.saved: dict[int, bytes] = {}
        self.resumed = 0

    def resume(self) -> dict[str, Any] | None:
        if self.start is None:
            return None
        self.resumed += 1
        return torch.load(io.BytesIO(self.start), weights_only=False)

    def due(self, epoch: int) -> bool:
        return True

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.saved[epoch] = buffer.getvalue()


def _train(
    loaded: LoadedScenario, variant: str, checkpoints: MemoryCheckpoints
) -> tuple[TrainResult, list[int]]:
    """Train one variant (seed 0) with a fresh trainer; the result and the epochs reported."""
    topology = load_topology(loaded.topology_path)
    trainer = FAMILIES.get(loaded.scenario.family).prepare(loaded, topology)
    transport = RecordingTransport(
        InProcessTransport(),
        ExchangeLog(topology.graph.nodes),
        loaded.scenario.network.header_bytes,
    )
    epochs: list[int] = []
    result = trainer.train(
        variant, 0, transport, LocalGroup(), "cpu", epochs.append, checkpoints=checkpoints
    )
    assert result is not None
    return result, epochs


def _assert_same_run(resumed: TrainResult, whole: TrainResult, variant: str) -> None:
    assert resumed.metrics == whole.metrics
    assert resumed.tables.keys() == whole.tables.keys()
    for name, rows in whole.tables.items():
        pd.testing.assert_frame_equal(pd.DataFrame(resumed.tables[name]), pd.DataFrame(rows))
    frames = [result.log.frame(variant, 0) for result in (resumed, whole)]
    assert len(frames[1]) > 0
    pd.testing.assert_frame_equal(frames[0], frames[1])


def _resume_everywhere(loaded: LoadedScenario, variant: str, epochs: int) -> None:
    """The uninterrupted run, then a fresh one resumed after an intermediate epoch (the
    second: state has moved by then, and epochs remain to run)."""
    whole = MemoryCheckpoints()
    uninterrupted, reported = _train(loaded, variant, whole)
    assert reported == list(range(epochs)) and sorted(whole.saved) == reported
    for stopped in (1,):
        again = MemoryCheckpoints(whole.saved[stopped])
        resumed, reported = _train(loaded, variant, again)
        assert again.resumed == 1 and reported == list(range(stopped + 1, epochs))
        _assert_same_run(resumed, uninterrupted, variant)
        # the resumed run saves what the uninterrupted one saved, so it resumes again alike
        last = epochs - 1
        assert torch.load(io.BytesIO(again.saved[last]), weights_only=False)["metrics"] == (
            uninterrupted.metrics
        )


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["carl", "bias"])  # the routers with state
def test_a_resumed_moe_run_gives_the_uninterrupted_numbers(variant):
    loaded = load_scenario(ROOT / "moe_checkpoint.yaml", content=MOE)
    _resume_everywhere(loaded, variant, MOE["moe"]["epochs"])


def test_carl_keeps_moving_state_across_epochs():
    """The CARL variant's checkpoint does hold state that training moved: balance biases,
    placements changed by re-placement and experts waiting to migrate."""
    loaded = load_scenario(ROOT / "moe_checkpoint.yaml", content=MOE)
    checkpoints = MemoryCheckpoints()
    _train(loaded, "carl", checkpoints)
    first = torch.load(io.BytesIO(checkpoints.saved[0]), weights_only=False)
    router = first["router"]
    assert any(c.expert_bias.any() for c in router["controllers"])
    assert any(placement != router["placements"][0] for placement in router["placements"][1:])
    pending = [torch.load(io.BytesIO(checkpoints.saved[epoch]), weights_only=False)["migrations"]
               for epoch in range(MOE["moe"]["epochs"])]  # fmt: skip
    assert any(pending)


@pytest.mark.slow
def test_a_resumed_finite_bank_run_gives_the_uninterrupted_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv("INNET_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "star8.yaml").write_text(BANK_TOPOLOGY)
    (tmp_path / "bank.yaml").write_text(yaml.safe_dump(BANK))
    loaded = load_scenario(tmp_path / "bank.yaml")
    _resume_everywhere(loaded, "router", len(BANK["router"]["betas"]))
