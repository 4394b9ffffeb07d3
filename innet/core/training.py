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

__all__ = ["TrainResult", "Trainer"]


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
    ) -> TrainResult | None:
        """Train one (variant, seed); every message through ``transport`` (which records it).

        Returns the result on the group's leader, None elsewhere.
        """
        ...

    def step_compute(self, messages: tuple[Message, ...]) -> ComputeTimes | None:
        """Each node's compute seconds in one step, from the step's messages.

        None (the default): from the nodes' FLOPs, the same in every step.
        """
        return None
