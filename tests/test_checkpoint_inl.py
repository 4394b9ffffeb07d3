"""INL checkpoints: a fit resumed from a saved epoch gives exactly the uninterrupted fit.

A fake in-memory :class:`~innet.core.training.Checkpoints` keeps each saved
state as torch.save bytes (as a file would); a fresh trainer resumed from the
state after epoch 1 trains epochs 2 and 3, and its metrics, exchange log and
tables must equal the uninterrupted four-epoch run's bit for bit. Per-node and
batched executors, Gaussian gates, and a trained discrete gate whose codebook
is published over codeword-index messages (buffers, generator, counters and
the receivers' copies all carry over).
"""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
import pytest
import torch

from innet.app.scenario import find_scenario, load_scenario
from innet.core.group import LocalGroup
from innet.core.records import ExchangeLog
from innet.core.topology import load_topology
from innet.core.training import TrainResult
from innet.core.transport import InProcessTransport, RecordingTransport
from innet.families.inl.trainer import InlTrainer

EPOCHS = 4
RESUME_AFTER = 1


class MemoryCheckpoints:
    """Saves every epoch's state as bytes; resumes from the one of ``start`` (or none)."""

    def __init__(self, saved: dict[int, bytes] | None = None, start: int | None = None) -> None:
        self.saved: dict[int, bytes] = {} if saved is None else saved
        self.start = start

    def resume(self) -> dict[str, Any] | None:
        if self.start is None:
            return None
        return torch.load(io.BytesIO(self.saved[self.start]), weights_only=False)

    def due(self, epoch: int) -> bool:
        return True

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.saved[epoch] = buffer.getvalue()


@pytest.fixture(scope="module")
def trainer_of():
    """A fresh trainer of the smoke scenario (4 epochs) with ``executor``, per call."""
    overrides = [
        f"training.epochs={EPOCHS}",
        "data.n_samples=200",
        # a trained discrete gate publishing its codebook: codeword indices forward
        "variants.disc.routing=dense",
        "variants.disc.gate={kind: discrete, codewords: 8, groups: 2, beta: 0.01}",
        "variants.disc.wire={forward: index, backward: int8}",
        "variants.disc.training={executor: per_node}",
    ]
    path = find_scenario("smoke")

    def make(executor: str) -> tuple[InlTrainer, Any]:
        loaded = load_scenario(path, [*overrides, f"training.executor={executor}"])
        topology = load_topology(loaded.topology_path)
        return InlTrainer(loaded, topology), topology

    return make


def _train(trainer: InlTrainer, topology, variant: str, checkpoints) -> TrainResult:
    recorder = RecordingTransport(InProcessTransport(), ExchangeLog(topology.graph.nodes), 40)
    result = trainer.train(variant, 0, recorder, LocalGroup(), "cpu", lambda epoch: None,
                           checkpoints=checkpoints)  # fmt: skip
    assert result is not None
    return result


@pytest.mark.parametrize(
    ("executor", "variant"),
    [("per_node", "dense"), ("per_node", "dijkstra_rate"), ("per_node", "disc"),
     ("batched", "dense"), ("batched", "dijkstra_rate")],
)  # fmt: skip
def test_resumed_fit_equals_uninterrupted(trainer_of, executor, variant):
    trainer, topology = trainer_of(executor)
    saving = MemoryCheckpoints()
    whole = _train(trainer, topology, variant, saving)
    assert sorted(saving.saved) == list(range(EPOCHS))
    assert whole.tables["executors"][0]["executor"] == executor

    fresh, _ = trainer_of(executor)
    resumed = _train(fresh, topology, variant, MemoryCheckpoints(saving.saved, RESUME_AFTER))

    expected = pd.DataFrame(whole.metrics)
    assert list(expected["epoch"]) == list(range(EPOCHS))
    pd.testing.assert_frame_equal(pd.DataFrame(resumed.metrics), expected, check_exact=True)
    pd.testing.assert_frame_equal(
        resumed.log.frame(variant, 0), whole.log.frame(variant, 0), check_exact=True
    )
    for table in ("node_rates", "executors"):
        pd.testing.assert_frame_equal(
            pd.DataFrame(resumed.tables[table]), pd.DataFrame(whole.tables[table]),
            check_exact=True,
        )  # fmt: skip
    assert resumed.flops == whole.flops


def test_resume_without_saved_state_trains_from_the_start(trainer_of):
    """A checkpoints object with nothing saved yet: the fit starts at epoch 0, saves as due."""
    trainer, topology = trainer_of("batched")

    class EveryOther(MemoryCheckpoints):
        def due(self, epoch: int) -> bool:
            return epoch % 2 == 1

    saving = EveryOther()
    result = _train(trainer, topology, "dijkstra", saving)
    assert [row["epoch"] for row in result.metrics] == list(range(EPOCHS))
    assert sorted(saving.saved) == [1, 3]
    last = torch.load(io.BytesIO(saving.saved[3]), weights_only=False)
    assert last["epoch"] == 3 and len(last["metrics"]) == EPOCHS
