"""The Transport protocol's process and bundle members, and the executor registries."""

from __future__ import annotations

import pytest
import torch

from innet.core.records import ExchangeLog
from innet.core.registry import UnknownNameError
from innet.core.transport import InProcessTransport, RecordingTransport
from innet.distributed.transport import DistributedTransport
from innet.families.inl.executors import EXECUTORS, OPTIMIZERS, make_optimizer
from innet.families.inl.executors.batched import BatchedExecutor
from innet.families.inl.executors.per_node import PerNodeExecutor
from innet.families.inl.executors.stacked_optim import STACKED_OPTIMIZERS, make_stacked_optimizer


def test_one_process_is_rank_0_of_1_with_empty_rounds():
    transport = InProcessTransport()
    assert (transport.rank, transport.world_size, transport.rank_of("anything")) == (0, 1, 0)
    transport.connect([(0, 1)])  # nothing to greet
    assert transport.exchange({}, {}, what="forward 0") == {}
    with pytest.raises(ValueError, match="forward 0"):
        transport.exchange({1: torch.zeros(1)}, {}, what="forward 0")


def test_recording_transport_passes_processes_and_rounds_on():
    inner = DistributedTransport({"a": 0, "b": 1}, 1, 2, "cpu")
    recorder = RecordingTransport(inner, ExchangeLog(["a", "b"]))
    assert (recorder.rank, recorder.world_size) == (1, 2)
    assert [recorder.rank_of(node) for node in ("a", "b")] == [0, 1]
    assert recorder.exchange({}, {}) == {}  # a round with nothing to exchange
    assert len(recorder.log) == 0  # rounds are not recorded: the executor records messages


def test_executor_names_and_optimizers_are_registered():
    assert {PerNodeExecutor.name, BatchedExecutor.name} | {"auto"} == set(EXECUTORS.names())
    assert OPTIMIZERS.names() == STACKED_OPTIMIZERS.names()
    weight = torch.nn.Parameter(torch.zeros(2, 2))
    with pytest.raises(UnknownNameError, match="unknown optimizer 'rmsprop'"):
        make_optimizer("rmsprop", [weight], 0.1)
    with pytest.raises(UnknownNameError, match="adam, sgd"):
        make_stacked_optimizer("rmsprop", [weight], rows=2, lr=0.1)
