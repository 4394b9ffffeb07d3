"""The group of a torch.distributed run: gather on rank 0, broadcast from it, barriers.

:class:`ProcessGroup` implements :class:`~innet.core.group.Group` with
torch.distributed's object collectives. A peer that is gone, or a collective
that times out, raises :class:`~innet.distributed.context.DistributedError`
with one line saying which rank was doing what.
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist

from innet.core.group import LEADER_RANK, Group
from innet.distributed.context import DistContext, DistributedError
from innet.distributed.errors import first_line

__all__ = ["ProcessGroup"]


class ProcessGroup(Group):
    """Every rank of the torch.distributed job ``context`` joined."""

    def __init__(self, context: DistContext) -> None:
        self.context = context
        self.rank = context.rank
        self.world_size = context.world_size

    def gather(self, obj: Any) -> list[Any] | None:
        if self.world_size == 1:
            return [obj]
        gathered: list[Any] | None = [None] * self.world_size if self.is_leader else None
        try:
            dist.gather_object(obj, gathered, dst=LEADER_RANK)
        except RuntimeError as error:
            raise DistributedError(
                f"rank {self.rank}: collecting results on rank {LEADER_RANK} failed: "
                f"{first_line(error)}"
            ) from error
        return gathered

    def broadcast(self, obj: Any) -> Any:
        if self.world_size == 1:
            return obj
        box = [obj]
        try:
            dist.broadcast_object_list(box, src=LEADER_RANK)
        except RuntimeError as error:
            raise DistributedError(
                f"rank {self.rank}: receiving rank {LEADER_RANK}'s decision failed: "
                f"{first_line(error)}"
            ) from error
        return box[0]

    def barrier(self) -> None:
        if self.world_size == 1:
            return
        try:
            dist.barrier()
        except RuntimeError as error:
            raise DistributedError(
                f"rank {self.rank}: waiting for the other ranks failed: {first_line(error)}"
            ) from error
