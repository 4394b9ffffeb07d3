"""How tensors travel between nodes: the Transport interface and its in-process implementation.

The executor never knows where a node lives. It asks the transport to ``send``
a tensor from one node to another and to ``recv`` the tensor a node is owed,
naming the pair, the phase and the payload, and giving the shape it expects
(so a transport that needs buffers in advance, like torch.distributed, can
allocate them). ``owns(node)`` says whether this process runs a node.

Before each phase (the forward pass, the backward pass, one evaluation batch)
the executor announces every message of that phase with ``expect``, in the
*canonical order*: the order in which their senders send them. The executor
walks the nodes of ``plan.forward_order()`` (reversed for the backward pass)
and each node sends to its parents (children, backward) in sorted order, so
the canonical list is what :func:`phase_messages` returns. A transport whose
messages cross process boundaries uses the list to match sends with receives
without tags; the in-process transport ignores it. ``flush`` ends a step: it
returns once every message this process sent has left.

:class:`InProcessTransport` keeps every node in this process: a send drops the
tensor in a mailbox, a receive takes it out. The tensor is detached on the way,
so no autograd graph ever spans two nodes.

:class:`RecordingTransport` wraps any transport and writes every send into an
:class:`~innet.core.records.ExchangeLog`, its size taken from the real tensor
(``numel * element_size``, plus a per-message header). It is also where the
network loses messages: a send over a link named in :meth:`~RecordingTransport.drop`
is recorded as lost and never handed on. The executor knows neither.

Sizes need not be known in advance: the in-process transport takes any
tensor, and the torch.distributed one checks each send against the shape
announced for it (a family whose message sizes vary announces them per step).

**Processes and bundles.** Every transport says which process it is
(``rank``, of ``world_size``) and where each node runs (:meth:`Transport.rank_of`).
An executor that computes many nodes at once sends, instead of one message
per node pair, one *bundle* per pair of processes and round
(:meth:`Transport.exchange`, after :meth:`Transport.connect` greeted the
pairs). The defaults are those of one process: rank 0 of 1, every node on
it, nothing to connect, and a round with nobody to exchange with.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

if TYPE_CHECKING:
    from innet.core.plans import Plan
    from innet.core.records import ExchangeLog

__all__ = [
    "ANY",
    "ExpectedMessage",
    "shape_matches",
    "InProcessTransport",
    "MessageKey",
    "RecordingTransport",
    "Transport",
    "phase_messages",
]

ANY = -1
"""A dimension of an announced shape that only the sender knows."""

MessageKey = tuple[str, str, str, str]
"""(src, dst, phase, payload) names one kind of message on one link direction."""


class ExpectedMessage(NamedTuple):
    """One message announced by :meth:`Transport.expect`: who, which phase, what shape.

    A plain ``(src, dst, phase, payload, shape)`` tuple works too; ``dtype``
    defaults to float32. A dimension of ``-1`` (:data:`ANY`) is known only when
    the message is sent (e.g. how many tokens a router sends to an expert).
    """

    src: str
    dst: str
    phase: str
    payload: str
    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32


def shape_matches(shape: Sequence[int], announced: Sequence[int]) -> bool:
    """True when ``shape`` fits ``announced`` (whose :data:`ANY` dimensions fit any size).

    >>> shape_matches((5, 4), (ANY, 4)), shape_matches((5, 4), (5, 3))
    (True, False)
    """
    return len(shape) == len(announced) and all(
        want == ANY or got == want for got, want in zip(shape, announced, strict=True)
    )


def phase_messages(
    plan: Plan,
    phase: str,
    batch: int,
    latent_dims: Mapping[str, int],
    order: Sequence[str] | None = None,
) -> list[ExpectedMessage]:
    """Every message of one phase of ``plan``, in canonical (sending) order.

    ``forward`` and ``eval``: each node of ``plan.forward_order()`` sends its
    ``(batch, latent_dims[node])`` latent to each parent, parents in sorted
    order. ``backward``: each node of the reversed order sends each child, in
    sorted order, the ``(batch, latent_dims[child])`` gradient of the latent
    that child sent. ``order`` is ``plan.forward_order()``, when the caller
    has it already.

    >>> from innet.core.plans import Plan
    >>> plan = Plan("dense", "f", (("a", "f"), ("b", "f"), ("a", "b")))
    >>> [(m.src, m.dst) for m in phase_messages(plan, "forward", 2, {"a": 3, "b": 3})]
    [('a', 'b'), ('a', 'f'), ('b', 'f')]
    >>> [(m.src, m.dst, m.shape) for m in phase_messages(plan, "backward", 2, {"a": 3, "b": 4})]
    [('f', 'a', (2, 3)), ('f', 'b', (2, 4)), ('b', 'a', (2, 3))]
    """
    order = plan.forward_order() if order is None else order
    if phase in ("forward", "eval"):
        return [
            ExpectedMessage(node, parent, phase, "latent", (batch, latent_dims[node]))
            for node in order
            for parent in plan.parents(node)
        ]
    if phase == "backward":
        return [
            ExpectedMessage(node, child, phase, "grad", (batch, latent_dims[child]))
            for node in reversed(order)
            for child in plan.children(node)
        ]
    raise ValueError(f"unknown phase {phase!r} (expected forward, backward or eval)")


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

    rank: int = 0
    """This process's number, ``0 .. world_size - 1``."""

    world_size: int = 1
    """How many processes share the nodes."""

    def rank_of(self, node: str) -> int:
        """The process that runs ``node`` (one process: 0)."""
        return 0

    def connect(self, pairs: Sequence[tuple[int, int]]) -> None:  # noqa: B027 - optional hook
        """Greet each pair of processes ``(a, b)`` before they first exchange bundles.

        Every process calls it with the same pairs; one process has none to greet.
        """

    def exchange(
        self,
        sends: Mapping[int, torch.Tensor],
        receives: Mapping[int, tuple[Sequence[int], torch.dtype]],
        *,
        what: str = "bundle",
    ) -> dict[int, torch.Tensor]:
        """One round of bundles: ``sends[peer]`` goes to process ``peer``; returns what each
        process ``receives`` names sent (its shape and dtype given there).

        Every process calls it for the same rounds in the same order. One
        process has no other to exchange with: its rounds are empty.
        """
        if sends or receives:
            raise ValueError(f"{what}: bundles between processes, but there is only one")
        return {}

    def expect(self, messages: Sequence[tuple]) -> None:  # noqa: B027 - optional hook
        """Announce all messages of the next phase, in canonical order (see the module docs).

        Every process calls it with the same full list, including messages
        between nodes it does not run. Each item is an :class:`ExpectedMessage`
        or a ``(src, dst, phase, payload, shape)`` tuple.
        """

    def flush(self) -> None:  # noqa: B027 - optional hook
        """Wait until every message this process sent has left; called at the end of a step."""

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
        if not shape_matches(tuple(tensor.shape), tuple(shape)) or tensor.dtype != dtype:
            raise RuntimeError(
                f"{src}->{dst} {phase} {payload}: expected {tuple(shape)} {dtype}, "
                f"got {tuple(tensor.shape)} {tensor.dtype}"
            )
        return tensor

    def pending(self) -> int:
        """Number of messages sent but not yet received (0 after a complete step)."""
        return sum(len(box) for box in self._mailboxes.values())

    def waiting(self) -> list[MessageKey]:
        """The key of every message sent but not yet received."""
        return [key for key, box in self._mailboxes.items() for _ in box]


class RecordingTransport(Transport):
    """Records every send of ``inner`` into ``log``; drops sends over failed links.

    ``header_bytes`` is added to every message's size (a per-message header).
    """

    def __init__(self, inner: Transport, log: ExchangeLog, header_bytes: int = 0) -> None:
        self.inner = inner
        self.rank, self.world_size = inner.rank, inner.world_size
        self.log = log
        self.header_bytes = header_bytes
        self._dropped: frozenset[tuple[str, str]] = frozenset()

    def drop(self, links: frozenset[tuple[str, str]]) -> None:
        """From now on, sends from ``src`` to ``dst`` for each pair in ``links`` are lost."""
        self._dropped = links

    def owns(self, node: str) -> bool:
        return self.inner.owns(node)

    def rank_of(self, node: str) -> int:
        return self.inner.rank_of(node)

    def connect(self, pairs: Sequence[tuple[int, int]]) -> None:
        self.inner.connect(pairs)

    def exchange(
        self,
        sends: Mapping[int, torch.Tensor],
        receives: Mapping[int, tuple[Sequence[int], torch.dtype]],
        *,
        what: str = "bundle",
    ) -> dict[int, torch.Tensor]:
        """The inner transport's round; not recorded here (the executor records the
        messages a bundle carries with :meth:`record_many`)."""
        return self.inner.exchange(sends, receives, what=what)

    def send(self, tensor: torch.Tensor, *, src: str, dst: str, phase: str, payload: str) -> None:
        wire = tensor.detach()
        if self.record(wire, src=src, dst=dst, phase=phase, payload=payload):
            self.inner.send(wire, src=src, dst=dst, phase=phase, payload=payload)

    def record(self, tensor: torch.Tensor, *, src: str, dst: str, phase: str, payload: str) -> bool:
        """Record a message without handing it to ``inner``; whether it arrives.

        For executors that keep the sent values in one process themselves (the
        batched executor's tensors never leave its autograd graph): the record
        is the same as :meth:`send` would make, from the tensor actually sent.
        """
        lost = (src, dst) in self._dropped
        nbytes = tensor.numel() * tensor.element_size() + self.header_bytes
        self.log.add(phase, src, dst, payload, nbytes, lost)
        return not lost

    def record_many(
        self,
        nbytes: np.ndarray,
        *,
        src: Sequence[str],
        dst: Sequence[str],
        phase: str,
        payload: str,
    ) -> None:
        """:meth:`record` for many messages: ``nbytes[i]`` from ``src[i]`` to ``dst[i]``.

        The caller measures each size from the tensor it sent (``numel *
        element_size``); the header and losses are added here, as for one.
        """
        lost = (
            np.fromiter(
                ((s, d) in self._dropped for s, d in zip(src, dst, strict=True)),
                dtype=bool,
                count=len(src),
            )
            if self._dropped
            else np.zeros(len(src), dtype=bool)
        )
        self.log.add_many(phase, src, dst, payload, np.asarray(nbytes) + self.header_bytes, lost)

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
        return self.inner.recv(
            src=src, dst=dst, phase=phase, payload=payload, shape=shape, dtype=dtype
        )

    def expect(self, messages: Sequence[tuple]) -> None:
        self.inner.expect(messages)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()
