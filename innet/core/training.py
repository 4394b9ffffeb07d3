"""Training: the protocol a family's trainer follows, and what training one (variant, seed)
produces (its metrics per epoch and every message it sent)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

    from innet.core.events import Timeline
    from innet.core.group import Group
    from innet.core.netsim import ComputeTimes, Message
    from innet.core.records import ExchangeLog
    from innet.core.transport import RecordingTransport

__all__ = ["Checkpoints", "TrainResult", "Trainer"]


@dataclass
class TrainResult:
    """What training one (variant, seed) produced, on the leader.

    ``metrics``: one row per epoch (``epoch`` and the family's metrics); the
    runner adds bytes and simulated time. ``log``: every message sent, merged
    from all processes. ``flops``: forward FLOPs per sample
    of each node's module (for compute time). ``tables``: rows of the family's
    own tables, by table name (see :attr:`FamilyReport.tables`).
    """

    metrics: list[dict[str, Any]]
    log: ExchangeLog
    flops: dict[str, int] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class Checkpoints(Protocol):
    """Where one (variant, seed)'s training saves its state and finds it again."""

    def resume(self) -> dict[str, Any] | None:
        """The state this process saved last for this (variant, seed), or None: start afresh."""
        ...

    def due(self, epoch: int) -> bool:
        """Whether to save after ``epoch`` (0-based) finished."""
        ...

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        """Keep ``state`` (anything torch.save can write: tensors, numpy arrays, dicts, an
        ExchangeLog) atomically; every process of the group calls it for its own nodes."""
        ...


class Trainer(Protocol):
    """Trains the variants of one scenario (made by :attr:`Family.prepare`).

    A trainer subclasses this protocol, which gives :meth:`step_compute` its default.
    """

    timelines: dict[str, Timeline]
    """Each variant's plans over the run."""

    def steps_per_epoch(self, variant: str) -> int:
        """Training steps in one epoch of ``variant``."""
        ...

    def epochs(self, variant: str) -> int:
        """Epochs of ``variant`` (for progress bars)."""
        ...

    def train(
        self,
        variant: str,
        seed: int,
        transport: RecordingTransport,
        group: Group,
        device: torch.device | str,
        on_epoch: Callable[[int], None],
        checkpoints: Checkpoints | None = None,
    ) -> TrainResult | None:
        """Train one (variant, seed); every message through ``transport`` (which records it).

        With ``checkpoints``: start from :meth:`Checkpoints.resume`'s state when it gives
        one (it holds at least the last finished ``epoch`` and everything needed to go
        on: every node's weights, optimiser state and random-number generators, the
        metrics and exchange log so far, step counters), and call
        :meth:`Checkpoints.save` after each epoch for which :meth:`Checkpoints.due` is
        True. Returns the result on the group's leader, None elsewhere.
        """
        ...

    def step_compute(self, messages: tuple[Message, ...]) -> ComputeTimes | None:
        """Each node's compute seconds in one step, from the step's messages.

        None (the default): from the nodes' FLOPs, the same in every step.
        """
        return None
