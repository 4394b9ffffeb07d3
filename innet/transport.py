"""How tensors travel between nodes: the Transport interface and its in-process implementation.

The engine never knows where a node lives. It asks the transport to ``send``
a tensor from one node to another and to ``recv`` the tensor a node is owed,
naming the pair, the phase and the payload, and giving the shape it expects
(so a transport that needs buffers in advance, like torch.distributed, can
allocate them). ``owns(node)`` says whether this process runs a node.

:class:`InProcessTransport` keeps every node in this process: a send drops the
tensor in a mailbox, a receive takes it out. The tensor is detached on the way,
so no autograd graph ever spans two nodes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict, deque
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["Transport", "InProcessTransport", "MessageKey"]

MessageKey = tuple[str, str, str, str]
"""(src, dst, phase, payload) names one kind of message on one link direction."""


class Transport(ABC):
    """Moves tensors between nodes; implementations decide where nodes live."""

    @abstractmethod
    def owns(self, node: str) -> bool:
        """True when this process runs ``node``."""

    @abstractmethod
    def send(self, tensor: torch.Tensor, *, src: str, dst: str, phase: str, payload: str) -> None:
        """Hand ``tensor`` to ``dst``. Called by the process that owns ``src``."""

    @abstractmethod
    def recv(
        self,
        *,
        src: str,
        dst: str,
        phase: str,
        payload: str,
        shape: Sequence[int],
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Return the next tensor ``src`` sent to ``dst``. Called by the owner of ``dst``."""

    @abstractmethod
    def gather(self, obj: Any) -> list[Any] | None:
        """Collect one picklable object from every process: the list on the leader, else None."""

    @property
    def is_leader(self) -> bool:
        """True in the one process that writes outputs and prints."""
        return True

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; the in-process transport has none."""


class InProcessTransport(Transport):
    """All nodes in one process; messages wait in per-link mailboxes."""

    def __init__(self) -> None:
        self._mailboxes: dict[MessageKey, deque[torch.Tensor]] = defaultdict(deque)

    def owns(self, node: str) -> bool:
        return True

    def send(self, tensor: torch.Tensor, *, src: str, dst: str, phase: str, payload: str) -> None:
        self._mailboxes[(src, dst, phase, payload)].append(tensor.detach())

    def recv(
        self,
        *,
        src: str,
        dst: str,
        phase: str,
        payload: str,
        shape: Sequence[int],
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        mailbox = self._mailboxes.get((src, dst, phase, payload))
        if not mailbox:
            raise RuntimeError(f"no {phase} {payload} waiting from {src} to {dst}")
        tensor = mailbox.popleft()
        if tuple(tensor.shape) != tuple(shape) or tensor.dtype != dtype:
            raise RuntimeError(
                f"{src}->{dst} {phase} {payload}: expected {tuple(shape)} {dtype}, "
                f"got {tuple(tensor.shape)} {tensor.dtype}"
            )
        return tensor

    def gather(self, obj: Any) -> list[Any]:
        return [obj]

    def pending(self) -> int:
        """Number of messages sent but not yet received (0 after a complete step)."""
        return sum(len(box) for box in self._mailboxes.values())
