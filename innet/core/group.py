"""The processes of a run, as a group: who leads, and how results reach the leader.

A run happens in one process (the default) or in several processes started
by ``torchrun``, each running some of the nodes. Point-to-point messages
between nodes go through a :class:`~innet.core.transport.Transport`; everything
else the processes do together goes through a *group*: collecting each
process's results on the leader (:meth:`Group.gather`), sharing the leader's
decision with everyone (:meth:`Group.broadcast`), and waiting for each other
(:meth:`Group.barrier`).

The *leader* is rank 0: the one process that prints, draws progress bars and
writes the run directory. :data:`LEADER_RANK` is the only place that says so.
:class:`LocalGroup` is the group of a one-process run; the torch.distributed
group lives in :mod:`innet.distributed.group`.

>>> group = LocalGroup()
>>> group.is_leader, group.gather("result"), group.broadcast(42)
(True, ['result'], 42)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from innet.core.transport import InProcessTransport, Transport

__all__ = [
    "LEADER_RANK",
    "Group",
    "LocalGroup",
    "LocalProcesses",
    "Processes",
    "is_leader_rank",
]

LEADER_RANK = 0


def is_leader_rank(rank: int) -> bool:
    """True for the rank that prints and writes (rank 0)."""
    return rank == LEADER_RANK


class Group(ABC):
    """The processes of one run."""

    rank: int
    world_size: int

    @property
    def is_leader(self) -> bool:
        """True in the one process that writes outputs and prints."""
        return is_leader_rank(self.rank)

    @abstractmethod
    def gather(self, obj: Any) -> list[Any] | None:
        """``obj`` from every process, in rank order, on the leader; None elsewhere."""

    @abstractmethod
    def broadcast(self, obj: Any) -> Any:
        """The leader's ``obj``, in every process."""

    @abstractmethod
    def barrier(self) -> None:
        """Return once every process has called it."""


class LocalGroup(Group):
    """A run in one process: it leads, and collecting results is a no-op."""

    rank = 0
    world_size = 1

    def gather(self, obj: Any) -> list[Any]:
        return [obj]

    def broadcast(self, obj: Any) -> Any:
        return obj

    def barrier(self) -> None:
        return None


class Processes(ABC):
    """Where a run's nodes live: the group of processes and a transport per (variant, seed).

    The runner asks for a transport before training each (variant, seed) and
    reports it back when done; :meth:`placement_record` is what the run
    directory keeps about the processes (``placement.json``), or None.
    """

    group: Group

    @abstractmethod
    def transport(self, variant: str) -> Transport:
        """A fresh transport for training ``variant``."""

    def finished(self, variant: str, seed: int, transport: Transport) -> None:  # noqa: B027
        """Called on every process once a (variant, seed) is trained."""

    def placement_record(self) -> dict[str, Any] | None:
        """What ``placement.json`` says about the processes (leader only), or None."""
        return None


class LocalProcesses(Processes):
    """Every node in this one process."""

    def __init__(self) -> None:
        self.group = LocalGroup()

    def transport(self, variant: str) -> Transport:
        return InProcessTransport()
