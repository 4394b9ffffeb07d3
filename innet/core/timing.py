"""Simulated network time for the exchange records of one run.

Training is synchronous: step k+1 starts when the last message of step k has
arrived (in INL, when the last gradient has reached its sensor). Each training
step's records go through the network model together; steps with the same
messages and compute times are simulated once. The evaluation after an epoch
is timed from the end of that epoch's training, as a measurement that does not
delay the next epoch.

A run whose network changes (events) is timed stretch by stretch: each
*segment* of the variant's timeline on the network as it was then, its clock
continuing where the previous segment's training ended. An evaluation runs on
the network as it is at the end of its epoch. Lost messages (sent into a link
that had just failed) take no network time and get NaN times.

On lossy links every step is named to the network model by its key
``(kind, epoch, step)`` (``kind`` is ``train`` or ``eval``), so its
retransmissions depend only on the model's seed and that key: the same run
gives the same times, and a record's ``attempts`` (copies sent, 1 on a
loss-free link) can be read back next to its times.

:func:`time_run` needs only the records, the timeline and the compute times,
so a finished run can be timed again on a network with other capacities,
latencies or losses without training again (``run_sim.py retime``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from innet.core.netsim import ComputeTimes, Message, MessageTiming, NetworkModel
from innet.core.phases import get_phase, phase_names
from innet.core.records import ExchangeLog
from innet.core.topology.model import Topology, node_key
from innet.core.units import parse_flops
from innet.core.yamlio import FieldError

if TYPE_CHECKING:
    from innet.core.events import Timeline

__all__ = [
    "RunTiming",
    "time_run",
    "epoch_columns",
    "compute_seconds",
    "apply_node_flops",
    "node_rows",
    "NODE_COLUMNS",
]


@dataclass
class RunTiming:
    """Absolute simulated times per record (in the log's record order) and per epoch.

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


def apply_node_flops(topology: Topology, node_flops: Mapping[str, str | float]) -> Topology:
    """``topology`` with node ``compute`` FLOP/s overridden (``"*"``: every node).

    An unknown node raises :class:`~innet.core.yamlio.FieldError` at
    ``network.node_flops.NODE``.
    """
    if not node_flops:
        return topology
    graph = topology.graph.copy()
    default = node_flops.get("*")
    for node in graph.nodes:
        if default is not None:
            graph.nodes[node]["compute"] = parse_flops(default)
    for node, flops in node_flops.items():
        if node == "*":
            continue
        if node not in graph:
            raise FieldError(("network", "node_flops", node), f"no node {node!r} in the topology")
        graph.nodes[node]["compute"] = parse_flops(flops)
    return Topology(topology.name, graph, topology.source)


NODE_COLUMNS = (
    "variant", "node", "role", "label", "flops_per_sample", "compute_flops",
    "forward_s", "backward_s",
)  # fmt: skip
"""Columns of ``nodes.csv``: module FLOPs and compute seconds for one full training batch."""


def node_rows(
    variant: str,
    topology: Topology,
    log: ExchangeLog,
    flops: Mapping[str, int],
    compute: Mapping[int, ComputeTimes] | None,
) -> list[dict]:
    """Per node of a variant: module FLOPs and compute seconds for one full training batch.

    ``log`` is the variant's exchange log (its first training step gives the batch size),
    ``flops`` each node's forward FLOPs per sample.
    """
    batch = next((step[3] for step in log.steps if step[0] == "train"), 0)
    seconds = compute.get(batch, {}) if compute else {}
    return [
        {
            "variant": variant,
            "node": node,
            "role": topology.graph.nodes[node].get("role"),
            "label": topology.label(node),
            "flops_per_sample": count,
            "compute_flops": topology.graph.nodes[node].get("compute"),
            "forward_s": seconds.get(node, (0.0, 0.0))[0],
            "backward_s": seconds.get(node, (0.0, 0.0))[1],
        }
        for node, count in sorted(flops.items(), key=lambda item: node_key(item[0]))
    ]


def epoch_columns(log: ExchangeLog, timing: RunTiming, epochs: list[int]) -> list[dict]:
    """Per epoch of ``epochs``: training bytes and simulated seconds, and their running totals.

    Also the messages lost into failed links. These are the columns every
    family's ``metrics.csv`` ends with (:data:`~innet.core.records.CORE_METRICS_COLUMNS`).
    """
    train_bytes = log.train_bytes_per_epoch()
    lost = log.lost_per_epoch()
    rows, total_bytes, total_time = [], 0, 0.0
    for epoch in epochs:
        total_bytes += train_bytes.get(epoch, 0)
        total_time += timing.epoch_train_s.get(epoch, 0.0)
        rows.append(
            {
                "train_bytes": train_bytes.get(epoch, 0),
                "train_bytes_cum": total_bytes,
                "sim_time_s": timing.epoch_train_s.get(epoch, 0.0),
                "sim_time_cum_s": total_time,
                "lost_messages": lost.get(epoch, 0),
            }
        )
    return rows


def time_run(
    log: ExchangeLog,
    timeline: Timeline,
    *,
    steps_per_epoch: int,
    tx_ports: int | None = None,
    seed: int = 0,
    compute: Mapping[int, ComputeTimes] | None = None,
    model: str = "fifo",
    bandwidth_factor: float = 1.0,
    latency_factor: float = 1.0,
    step_compute: Callable[[tuple[Message, ...]], ComputeTimes | None] | None = None,
) -> RunTiming:
    """Time every record of ``log`` on the network of each segment of ``timeline``.

    ``compute`` maps a batch size to per-node (forward, backward) compute seconds;
    ``tx_ports`` is the default number of radios per node; ``seed`` seeds the
    retransmissions on lossy links; ``model`` (``fifo`` or ``flow``) and the two
    efficiency factors choose the network model (:class:`~innet.core.netsim.NetworkModel`).
    ``step_compute``, when given, derives each step's compute seconds from its
    messages instead (a family whose nodes compute on what they receive: MoE
    experts on the tokens dispatched to them); ``None`` from it falls back to
    ``compute``.
    """
    first_record = np.concatenate([[0], np.cumsum(log.step_sizes())])
    times = _TimesSoFar.unset(int(first_record[-1]))
    at = [
        (epoch + 1) * steps_per_epoch if kind == "eval" else step
        for kind, epoch, step, _batch, _block in log.steps
    ]
    segment_of = timeline.segment_indices(at) if log.steps else np.zeros(0, dtype=np.int64)
    messages = [_messages(log, block) for block in range(len(log.blocks))]

    def compute_s(batch: int, step_messages: tuple[Message, ...]) -> ComputeTimes | None:
        seconds = compute.get(batch) if compute is not None else None
        if step_compute is not None:
            seconds = step_compute(step_messages) or seconds
        return seconds

    epoch_train_s: dict[int, float] = {}
    offset = 0.0
    for segment_index, segment in enumerate(timeline.segments):
        positions = np.flatnonzero(segment_of == segment_index).tolist()
        if not positions:
            continue
        network = NetworkModel(
            segment.topology,
            tx_ports=tx_ports,
            seed=seed,
            model=model,
            bandwidth_factor=bandwidth_factor,
            latency_factor=latency_factor,
        )
        segment_train_s: dict[int, float] = {}
        clock = eval_clock = 0.0
        previous: tuple[str, int] | None = None
        for position in positions:
            kind, epoch, step, batch, block = log.steps[position]
            step_messages, delivered = messages[block]
            start = clock if kind == "train" else eval_clock
            if kind == "eval" and previous != ("eval", epoch):
                start = eval_clock = clock
            timing = network.simulate_step(
                step_messages, compute_s(batch, step_messages), step_key=(kind, epoch, step)
            )
            times.fill(first_record[position] + delivered, timing.messages, start, offset)
            if kind == "train":
                clock += timing.duration_s
                segment_train_s[epoch] = segment_train_s.get(epoch, 0.0) + timing.duration_s
            else:
                eval_clock += timing.duration_s
            previous = (kind, epoch)
        for epoch, seconds in segment_train_s.items():
            epoch_train_s[epoch] = epoch_train_s.get(epoch, 0.0) + seconds
        offset += sum(segment_train_s.values())
    return RunTiming(times.t_start, times.t_end, times.queue_s, epoch_train_s, times.attempts)


@dataclass
class _TimesSoFar:
    """The per-record arrays :func:`time_run` fills in, step by step."""

    t_start: np.ndarray
    t_end: np.ndarray
    queue_s: np.ndarray
    attempts: np.ndarray

    @classmethod
    def unset(cls, total: int) -> _TimesSoFar:
        """``total`` records not timed yet (NaN times, one copy each)."""
        return cls(
            np.full(total, np.nan),
            np.full(total, np.nan),
            np.full(total, np.nan),
            np.ones(total, dtype=np.int64),
        )

    def fill(
        self, records: np.ndarray, messages: Sequence[MessageTiming], start: float, offset: float
    ) -> None:
        """Set ``records`` from one step's timed ``messages``; the step began ``start`` seconds
        into its segment, which began ``offset`` seconds into the run."""
        self.t_start[records] = [(start + m.t_start) + offset for m in messages]
        self.t_end[records] = [(start + m.t_end) + offset for m in messages]
        self.queue_s[records] = [m.queue_s for m in messages]
        self.attempts[records] = [m.attempts for m in messages]


def _messages(log: ExchangeLog, block_index: int) -> tuple[tuple[Message, ...], np.ndarray]:
    """The network-model messages of one block (lost ones left out) and their positions.

    A message of a phase without a flow leaves when its step starts (``after=()``).
    """
    block = log.blocks[block_index]
    delivered = np.flatnonzero(~block.lost)
    names = phase_names()
    starts = {i for i, name in enumerate(names) if get_phase(name).flow is None}
    return (
        tuple(
            Message(
                phase=names[block.phase[i]],
                src=log.nodes[block.src[i]],
                dst=log.nodes[block.dst[i]],
                nbytes=int(block.nbytes[i]),
                after=() if block.phase[i] in starts else None,
            )
            for i in delivered.tolist()
        ),
        delivered,
    )
