"""Simulated network time for the exchange records of one run.

Training is synchronous: step k+1 starts when the last gradient of step k has
reached its sensor. Each training step's forward and backward records go
through the network model together; steps with the same messages and compute
times are simulated once (the model caches them). The evaluation after an epoch
is timed from the end of that epoch's training, as a measurement that does not
delay the next epoch.

On lossy links every step is named to the network model by its key
``(kind, epoch, step)`` (``kind`` is ``train`` or ``eval``), so its
retransmissions depend only on the model's seed and that key: the same run
gives the same times, and a record's ``attempts`` (copies sent, 1 on a
loss-free link) can be read back next to its times.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from innet.engine import ExchangeRow
from innet.netsim import Message, NetworkModel
from innet.topology.model import Topology

__all__ = ["RunTiming", "time_records", "compute_seconds"]


@dataclass
class RunTiming:
    """Absolute simulated times per record (same order as the records) and per epoch.

    ``attempts`` is the number of copies of each record sent (all ones without
    lossy links; left out, it is filled with ones); ``(attempts - 1) * nbytes``
    are the record's retransmitted bytes.
    """

    t_start: np.ndarray
    t_end: np.ndarray
    queue_s: np.ndarray
    epoch_train_s: dict[int, float]
    attempts: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.attempts is None:
            self.attempts = np.ones(len(self.t_start), dtype=np.int64)
        elif len(self.attempts) != len(self.t_start):
            raise ValueError(
                f"attempts has {len(self.attempts)} entries for {len(self.t_start)} records"
            )


def compute_seconds(
    topology: Topology, flops_per_sample: Mapping[str, int], batch: int
) -> dict[str, tuple[float, float]]:
    """(forward, backward) compute seconds of each node for a batch, from its ``compute`` FLOP/s.

    Backward costs twice the forward FLOPs. Nodes without a ``compute`` attribute take no time.
    """
    seconds = {}
    for node, flops in flops_per_sample.items():
        rate = topology.graph.nodes[node].get("compute")
        if rate:
            forward = flops * batch / float(rate)
            seconds[node] = (forward, 2 * forward)
    return seconds


def time_records(
    records: Sequence[ExchangeRow],
    model: NetworkModel,
    *,
    batch_of_step: Mapping[tuple[str, int, int], int] | None = None,
    compute: Mapping[int, Mapping[str, tuple[float, float]]] | None = None,
) -> RunTiming:
    """Time every record of a run; ``compute`` maps a batch size to per-node compute seconds.

    ``batch_of_step`` maps (kind, epoch, step) with kind ``train`` or ``eval`` to the batch size.
    """
    groups: dict[tuple[str, int, int], list[int]] = {}
    for position, (epoch, step, phase, *_rest) in enumerate(records):
        kind = "eval" if phase == "eval" else "train"
        groups.setdefault((kind, epoch, step), []).append(position)

    t_start = np.zeros(len(records))
    t_end = np.zeros(len(records))
    queue_s = np.zeros(len(records))
    attempts = np.ones(len(records), dtype=np.int64)
    epoch_train_s: dict[int, float] = {}
    clock = 0.0

    def simulate(key: tuple[str, int, int], offset: float) -> float:
        positions = groups[key]
        messages = [
            Message(phase=records[i][2], src=records[i][3], dst=records[i][4], nbytes=records[i][6])
            for i in positions
        ]
        compute_s = None
        if compute is not None and batch_of_step is not None:
            compute_s = compute.get(batch_of_step[key])
        timing = model.simulate_step(messages, compute_s, step_key=key)
        for i, message_timing in zip(positions, timing.messages, strict=True):
            t_start[i] = offset + message_timing.t_start
            t_end[i] = offset + message_timing.t_end
            queue_s[i] = message_timing.queue_s
            attempts[i] = message_timing.attempts
        return timing.duration_s

    eval_clock = 0.0
    keys = sorted(groups, key=lambda key: (key[1], key[0] == "eval", key[2]))
    for index, key in enumerate(keys):
        kind, epoch, _step = key
        if kind == "train":
            duration = simulate(key, clock)
            clock += duration
            epoch_train_s[epoch] = epoch_train_s.get(epoch, 0.0) + duration
        else:
            if index == 0 or keys[index - 1][0] == "train" or keys[index - 1][1] != epoch:
                eval_clock = clock
            eval_clock += simulate(key, eval_clock)
    return RunTiming(
        t_start=t_start,
        t_end=t_end,
        queue_s=queue_s,
        epoch_train_s=epoch_train_s,
        attempts=attempts,
    )
