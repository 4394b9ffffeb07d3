"""The torch.distributed transport: nodes spread over processes, messages sent point-to-point.

Each process (rank) runs the nodes a placement gives it. A message between
two nodes of the same rank waits in an in-memory mailbox, as in
:class:`~innet.core.transport.InProcessTransport`. A message between ranks is a
tensor sent with ``torch.distributed.isend`` and received into a buffer
posted with ``irecv``.

**Matching without tags.** NCCL, the GPU backend, has no message tags: it
pairs the k-th send from rank A to rank B with the k-th receive B posted
from A. So both sides must agree on one order of all messages. That order is
the *canonical order*, the order in which the executor sends (see
:mod:`innet.core.transport`); before each phase the executor announces the whole
list with :meth:`~DistributedTransport.expect`, every rank the same list.
Then each rank keeps two queues in canonical order: the sends its nodes owe
and the receives its nodes are owed from other ranks. Sends must come in
canonical order (anything else raises at once). A receive is posted no
later than the moment it is needed and always in canonical order: before
sending message k, every receive numbered below k is posted; to deliver
message k, every receive up to k is posted. So every rank issues its
operations in increasing canonical number, which keeps each pair of ranks
in step and rules out deadlock, with gloo or NCCL, even when one GPU stream
serves all peers. Shapes play no part in the matching.

**Connections.** NCCL builds a connection between two ranks on their first
message, and both must be there. So the first time ``expect`` names a pair
of ranks, all ranks meet at a barrier and then greet each such pair in one
fixed order, a tiny exchange that is not counted as traffic.

**Sizes known only when sent.** A message announced with a dimension of
:data:`~innet.core.transport.ANY` (e.g. the number of tokens routed to an expert)
is preceded on the wire by its shape, a small int64 tensor; the receiver
posts the receive for the shape, waits for it, then posts the receive for the
data, before any later receive. Waiting there cannot deadlock: the sender
sends in canonical order and needs nothing numbered after the message.

**Bundles.** An executor that computes many nodes at once (the batched
executor) sends, instead of one message per node pair, one *bundle* per pair
of ranks: a tensor whose rows are the messages of many node pairs, in an
order both ranks derive from the plan. :meth:`~DistributedTransport.exchange`
sends and receives the bundles of one round (one phase at one level), and
:meth:`~DistributedTransport.connect` greets the pairs of ranks that will
exchange them. The canonical order of bundles is (round, sending rank,
receiving rank): every rank issues its rounds in the same order, and within a
round its sends and receives in increasing (sending rank, receiving rank), so
the first bundle not yet exchanged always has both its ranks ready for it:
no deadlock, with gloo or NCCL. Bundles and announced messages do not mix
within a phase: a round is refused while announced messages are pending.

Counters: ``bytes_sent_cross_rank`` (``numel * element_size`` of every
message or bundle tensor this rank handed to torch.distributed, shapes sent
ahead of messages of unknown size not counted), ``messages_sent_cross_rank``
(tensors: a bundle counts once) and ``cross_rank_bytes_by_link[(src, dst)]``
(messages sent one by one; a bundle's rows are not split by node pair here:
the exchange records of its node pairs hold their sizes).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from innet.core.transport import (
    ANY,
    ExpectedMessage,
    InProcessTransport,
    MessageKey,
    Transport,
    shape_matches,
)
from innet.distributed.context import DistributedError
from innet.distributed.errors import first_line

__all__ = ["DistributedTransport"]


@dataclass(frozen=True)
class _Announced:
    """A message announced by ``expect``: its canonical number and the rank at the other end."""

    index: int
    message: ExpectedMessage
    peer: int

    @property
    def key(self) -> MessageKey:
        return _key(self.message)


@dataclass(frozen=True)
class _PostedReceive:
    announced: _Announced
    buffer: torch.Tensor
    work: Any  # torch.distributed Work


def _key(message: ExpectedMessage) -> MessageKey:
    return (message.src, message.dst, message.phase, message.payload)


def _wait(work: Any) -> None:
    """Wait for a torch.distributed operation (None: this rank is not in its group)."""
    if work is None:
        raise RuntimeError("this rank is not in the process group")
    work.wait()


def _describe(key: MessageKey) -> str:
    src, dst, phase, payload = key
    return f"{phase} {payload} {src}->{dst}"


class DistributedTransport(Transport):
    """Runs the nodes ``placement`` gives to ``rank``; talks to other ranks via torch.distributed.

    ``placement`` maps every node to a rank of ``group`` (the default group
    when None); ``device`` is where messages live (CUDA with NCCL, CPU with
    gloo). With ``world_size == 1`` no process group is needed.
    """

    def __init__(
        self,
        placement: Mapping[str, int],
        rank: int,
        world_size: int,
        device: torch.device | str,
        group: dist.ProcessGroup | None = None,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        outside = sorted(node for node, r in placement.items() if not 0 <= r < world_size)
        if outside:
            raise ValueError(f"nodes placed outside 0..{world_size - 1}: {', '.join(outside)}")
        self.placement = dict(placement)
        self.rank = rank
        self.world_size = world_size
        self.device = torch.device(device)
        self.group = group
        self.bytes_sent_cross_rank = 0
        self.messages_sent_cross_rank = 0
        self.cross_rank_bytes_by_link: dict[tuple[str, str], int] = defaultdict(int)
        self._next_index = 0
        self._sends_due: deque[_Announced] = deque()  # this rank's sends, canonical order
        self._inbound: deque[_Announced] = deque()  # receives from other ranks, not yet posted
        self._posted: dict[MessageKey, deque[_PostedReceive]] = defaultdict(deque)
        self._in_flight: list[tuple[torch.Tensor, Any]] = []  # sends not yet known to be done
        self._same_rank = InProcessTransport()  # messages between this rank's own nodes
        self._linked_pairs: set[tuple[int, int]] = set()

    # -- who runs what ----------------------------------------------------------------------

    def owns(self, node: str) -> bool:
        return self.rank_of(node) == self.rank

    def rank_of(self, node: str) -> int:
        """The rank ``placement`` gives ``node``; an error for a node it does not place."""
        try:
            return self.placement[node]
        except KeyError:
            raise RuntimeError(f"node {node!r} has no rank in the placement") from None

    def _global_rank(self, rank: int) -> int:
        return rank if self.group is None else dist.get_global_rank(self.group, rank)

    # -- announcing a phase -----------------------------------------------------------------

    def expect(self, messages: Sequence[tuple]) -> None:
        """Queue this rank's part of ``messages`` (all messages of a phase, canonical order).

        Every rank must call it with the same list. Phases queue up one after
        the other, so announcing several phases at once is fine too.
        """
        pairs: set[tuple[int, int]] = set()
        for item in messages:
            message = ExpectedMessage(*item)
            message = message._replace(shape=tuple(int(size) for size in message.shape))
            src_rank, dst_rank = self.rank_of(message.src), self.rank_of(message.dst)
            index, self._next_index = self._next_index, self._next_index + 1
            if src_rank != dst_rank:
                pairs.add((min(src_rank, dst_rank), max(src_rank, dst_rank)))
            if src_rank == self.rank:
                self._sends_due.append(_Announced(index, message, dst_rank))
            elif dst_rank == self.rank:
                self._inbound.append(_Announced(index, message, src_rank))
        self.connect(sorted(pairs))

    def connect(self, pairs: Sequence[tuple[int, int]]) -> None:
        """Greet each pair of ranks ``(low, high)`` not greeted yet (see :meth:`_link`).

        Every rank must call it with the same pairs (e.g. derived from the
        plan and the placement), before the pairs first exchange bundles.
        """
        new_pairs = sorted({(min(a, b), max(a, b)) for a, b in pairs if a != b}
                           - self._linked_pairs)  # fmt: skip
        if new_pairs:
            self._link(new_pairs)

    def _link(self, pairs: list[tuple[int, int]]) -> None:
        """Meet every rank, then greet each new pair of ranks in one order all ranks share."""
        try:
            dist.barrier(group=self.group)
            for low, high in pairs:
                if self.rank not in (low, high):
                    continue
                peer = self._global_rank(high if self.rank == low else low)
                outgoing = torch.zeros(1, device=self.device)
                incoming = torch.empty(1, device=self.device)
                works = dist.batch_isend_irecv(
                    [
                        dist.P2POp(dist.isend, outgoing, peer, self.group),
                        dist.P2POp(dist.irecv, incoming, peer, self.group),
                    ]
                )
                for work in works:
                    work.wait()
        except RuntimeError as error:
            raise DistributedError(
                f"rank {self.rank}: connecting to the other ranks failed: {first_line(error)}"
            ) from error
        self._linked_pairs.update(pairs)

    # -- sending ----------------------------------------------------------------------------

    def send(self, tensor: torch.Tensor, *, src: str, dst: str, phase: str, payload: str) -> None:
        key = (src, dst, phase, payload)
        if not self._sends_due:
            raise RuntimeError(f"rank {self.rank}: send {_describe(key)} was not announced")
        due = self._sends_due[0]
        if due.key != key:
            raise RuntimeError(
                f"rank {self.rank}: send {_describe(key)} is out of canonical order; "
                f"the next announced send is {_describe(due.key)}"
            )
        self._check(key, tuple(tensor.shape), tensor.dtype, due.message)
        self._sends_due.popleft()
        wire = tensor.detach()
        if due.peer == self.rank:
            self._same_rank.send(wire, src=src, dst=dst, phase=phase, payload=payload)
            return
        self._post_receives(below=due.index)
        wire = wire.to(self.device).contiguous()
        try:
            if ANY in due.message.shape:  # the receiver learns the shape first
                size = torch.tensor(wire.shape, dtype=torch.int64, device=self.device)
                self._in_flight.append(
                    (size, dist.isend(size, dst=self._global_rank(due.peer), group=self.group))
                )
            work = dist.isend(wire, dst=self._global_rank(due.peer), group=self.group)
        except RuntimeError as error:
            raise DistributedError(
                f"rank {self.rank}: sending {_describe(key)} to rank {due.peer} failed: "
                f"{first_line(error)}"
            ) from error
        self._in_flight.append((wire, work))
        nbytes = wire.numel() * wire.element_size()
        self.bytes_sent_cross_rank += nbytes
        self.messages_sent_cross_rank += 1
        self.cross_rank_bytes_by_link[(src, dst)] += nbytes

    def flush(self) -> None:
        """Wait for this rank's sends; raise if an announced message was not exchanged."""
        leftover = [a.key for a in self._sends_due] + [a.key for a in self._inbound]
        leftover += [p.announced.key for queue in self._posted.values() for p in queue]
        leftover += self._same_rank.waiting()
        if leftover:
            raise RuntimeError(
                f"rank {self.rank}: step ended with {len(leftover)} announced messages not "
                f"exchanged, e.g. {_describe(leftover[0])}"
            )
        try:
            for _, work in self._in_flight:
                work.wait()
        except RuntimeError as error:
            raise DistributedError(
                f"rank {self.rank}: a send to another rank failed: {first_line(error)}"
            ) from error
        self._in_flight.clear()

    # -- bundles ----------------------------------------------------------------------------

    def exchange(
        self,
        sends: Mapping[int, torch.Tensor],
        receives: Mapping[int, tuple[Sequence[int], torch.dtype]],
        *,
        what: str = "bundle",
    ) -> dict[int, torch.Tensor]:
        """One round of bundles: ``sends[peer]`` goes to ``peer``; returns what each peer sent.

        ``receives[peer]`` is the shape and dtype of the bundle ``peer`` sends
        this rank in this round. Every rank calls it for the same rounds in the
        same order (ranks with nothing to exchange in a round may skip it);
        sends and receives are issued in canonical order (see the module docs),
        the receives are waited for here and the sends by :meth:`flush`.
        ``what`` names the round in errors.
        """
        if self._sends_due or self._inbound or any(self._posted.values()):
            raise RuntimeError(
                f"rank {self.rank}: {what}: announced messages are still pending; "
                "bundles and announced messages cannot share a phase"
            )
        if self.rank in sends or self.rank in receives:
            raise ValueError(f"rank {self.rank}: {what}: a bundle from a rank to itself")
        operations: list[tuple[tuple[int, int], int, torch.Tensor | None]] = sorted(
            [((self.rank, peer), peer, tensor) for peer, tensor in sends.items()]
            + [((peer, self.rank), peer, None) for peer in receives],
            key=lambda operation: operation[0],
        )
        received: dict[int, tuple[torch.Tensor, Any]] = {}
        try:
            for _, peer, tensor in operations:
                if tensor is None:
                    shape, dtype = receives[peer]
                    buffer = torch.empty(tuple(shape), dtype=dtype, device=self.device)
                    work = dist.irecv(buffer, src=self._global_rank(peer), group=self.group)
                    received[peer] = (buffer, work)
                    continue
                wire = tensor.detach().to(self.device).contiguous()
                work = dist.isend(wire, dst=self._global_rank(peer), group=self.group)
                self._in_flight.append((wire, work))
                self.bytes_sent_cross_rank += wire.numel() * wire.element_size()
                self.messages_sent_cross_rank += 1
            for _, work in received.values():
                work.wait()
        except RuntimeError as error:
            raise DistributedError(
                f"rank {self.rank}: {what} with the other ranks failed: {first_line(error)}"
            ) from error
        return {peer: buffer for peer, (buffer, _) in received.items()}

    # -- receiving --------------------------------------------------------------------------

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
        key = (src, dst, phase, payload)
        if self.rank_of(src) == self.rank:
            return self._same_rank.recv(
                src=src, dst=dst, phase=phase, payload=payload, shape=shape, dtype=dtype
            )
        if not self._posted.get(key):
            target = next((a for a in self._inbound if a.key == key), None)
            if target is None:
                raise RuntimeError(f"rank {self.rank}: receive {_describe(key)} was not announced")
            self._post_receives(below=target.index + 1)
        posted = self._posted[key][0]
        announced = posted.announced
        self._check(key, tuple(shape), dtype, announced.message)
        if self._sends_due and self._sends_due[0].index < announced.index:
            raise RuntimeError(
                f"rank {self.rank}: receive {_describe(key)} before sending "
                f"{_describe(self._sends_due[0].key)}, which comes first in canonical order"
            )
        self._posted[key].popleft()
        try:
            posted.work.wait()
        except RuntimeError as error:
            raise DistributedError(
                f"rank {self.rank}: waiting for {_describe(key)} from rank {announced.peer} "
                f"failed: {first_line(error)}"
            ) from error
        return posted.buffer

    def _post_receives(self, *, below: int) -> None:
        """Post, in canonical order, the queued receives numbered below ``below``."""
        while self._inbound and self._inbound[0].index < below:
            announced = self._inbound.popleft()
            message = announced.message
            peer = self._global_rank(announced.peer)
            try:
                shape = message.shape
                if ANY in shape:  # its shape comes first; wait for it before posting more
                    size = torch.empty(len(shape), dtype=torch.int64, device=self.device)
                    _wait(dist.irecv(size, src=peer, group=self.group))
                    shape = tuple(int(value) for value in size.tolist())
                buffer = torch.empty(shape, dtype=message.dtype, device=self.device)
                work = dist.irecv(buffer, src=peer, group=self.group)
            except RuntimeError as error:
                raise DistributedError(
                    f"rank {self.rank}: receiving {_describe(announced.key)} from rank "
                    f"{announced.peer} failed: {first_line(error)}"
                ) from error
            self._posted[announced.key].append(_PostedReceive(announced, buffer, work))

    def _check(
        self,
        key: MessageKey,
        shape: tuple[int, ...],
        dtype: torch.dtype,
        announced: ExpectedMessage,
    ) -> None:
        if not shape_matches(shape, announced.shape) or dtype != announced.dtype:
            raise RuntimeError(
                f"rank {self.rank}: {_describe(key)} announced as {announced.shape} "
                f"{announced.dtype}, handled as {shape} {dtype}"
            )

    # -- everything else --------------------------------------------------------------------

    def pending(self) -> int:
        """Announced messages of this rank's nodes not yet sent or delivered (0 after a step)."""
        posted = sum(len(queue) for queue in self._posted.values())
        boxed = self._same_rank.pending()
        return len(self._sends_due) + len(self._inbound) + posted + boxed

    def close(self) -> None:
        """Forget queued messages without waiting (call :meth:`flush` first after a good step)."""
        self._sends_due.clear()
        self._inbound.clear()
        self._posted.clear()
        self._same_rank = InProcessTransport()
        self._in_flight.clear()
