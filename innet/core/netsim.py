"""Network time of a training step: when each message leaves, when it arrives.

The network model turns the messages of one training step into simulated
seconds, using `SimPy <https://simpy.readthedocs.io>`_. It knows nothing about
neural networks: it sees a list of :class:`Message` objects (who sends how many
bytes to whom, in which phase) and the links of a
:class:`~innet.core.topology.model.Topology`.

**Links.** Every link is two *transmitters*, one per direction. A transmitter
has the link's ``capacity`` in bits/s and sends one message at a time: a message
of ``nbytes`` bytes occupies it for ``8 * nbytes / capacity`` seconds, and its
last bit reaches the other end ``latency`` seconds after leaving. Propagation
does not occupy the transmitter, so the next message starts as soon as the
previous one has been sent. Messages waiting for a busy transmitter queue in the
order they asked for it (first in, first out).

**Radios.** A node may have a limited number of radios (``tx_ports``). A message
first takes one of its sender's radios, then the link's transmitter, and gives
both back when its last bit has left. With one radio, a node that sends to two
parents over two different links sends one message after the other; with no
limit (``None``) it sends both at once.

**Who waits for whom** is read off the message list. A node's forward (or eval)
messages leave when every forward or eval message *into* that node has arrived,
plus the node's forward compute time. Its backward messages leave when every
backward message into it has arrived, plus its backward compute time. A node
that receives no backward message -- the fusion node, where backpropagation
starts -- sends its gradients when its forward inputs have arrived, plus its
forward and its backward compute time. A node sends its messages of one phase
in the order they appear in the list; with free radios and links they all start
together. What counts as forward or backward is the phase's *flow* (see
:mod:`innet.core.records`: ``eval`` and ``codebook`` flow like ``forward``). A message may instead
name its dependencies (``Message.after``: the messages that must have arrived
before it leaves, no compute time added), which is how traffic of other kinds
(e.g. tokens dispatched to experts and their results) is timed.

**Routed messages.** A message of a phase registered with ``routed=True``
may join two nodes that share no link (e.g. a token sent from its source to an
expert's node). It travels the capacity-aware shortest path (link weight
``latency + 8 * nbytes / capacity``, networkx's Dijkstra), store and forward:
each hop is one link transmission, taking the hop sender's radio and the
link's transmitter, and the next hop leaves when the previous one has arrived.
Only its arrival at the last node counts as an input of that node. Its timing
is the journey's: ``t_start`` of the first hop, ``t_end`` of the last, the sum
of the hops' queueing, and the copies sent on every hop (``attempts`` is one
plus the retransmissions along the path).

**Lossy links.** A link may lose messages: its ``loss`` attribute (default 0)
is the probability that one transmission of a message over it is lost, in
either direction, independently of every other transmission. The sender keeps
sending copies until one gets through (stop and wait). Every copy occupies the
sender's radio and the link's transmitter for ``8 * nbytes / capacity`` seconds,
like the first one. The sender learns that a copy was lost when no
acknowledgement has come back one *retransmission timeout* after it started
sending it: ``RTO = 8 * nbytes / capacity + 2 * latency``, the round trip of the
copy and of a (size-less, never lost) acknowledgement. It then asks for its
radio and the link again, behind whatever queued meanwhile; radio and link serve
other messages while it waits for the timeout. The message arrives when the
successful copy does: with ``k`` copies and no other traffic, ``t_end = t_start +
(k - 1) * RTO + 8 * nbytes / capacity + latency``. ``t_start`` is when the first
copy started and ``queue_s`` the wait before it, as on a loss-free link.

The number of copies of each message, ``attempts``, is geometric with success
probability ``1 - loss`` (mean ``1 / (1 - loss)``). The draws come from a random
generator seeded by the model's ``seed`` and the step's ``step_key`` (any value
with a stable ``repr``: ints, strings, tuples of them), one draw per message in
the order given, so a step gives the same times however often and in whatever
order it is simulated, and a different seed gives other draws. A step without a
``step_key`` uses the number of lossy steps this model has simulated before it.

**The flow model.** ``NetworkModel(..., model="flow")`` keeps the
dependencies, compute times and radios above but replaces the transmitters by
*flows*: a message that has its sender's radio starts at once, as a flow of
``8 * nbytes`` bits over its path (a routed message crosses its whole path as
one flow, no store and forward), and the flows crossing a link direction at the
same time share its capacity max-min fairly (:func:`max_min_rates`,
progressive filling). Rates are computed again whenever a flow starts or ends,
for the flows that share links with it. A flow's last bit arrives the sum of
its path's latencies after it has left. A radio is held from a flow's start
until its last bit has left; a lost copy (a copy gets through with probability
``prod(1 - loss)`` over the path, one draw per message) waits ``2 *`` that
latency after its last bit and is sent again as a new flow. One message alone
on one link takes the same time in both models. ``bandwidth_factor`` and
``latency_factor`` (SimGrid's efficiency factors, default 1) scale every
link's capacity and latency, in both models. :func:`time_messages` times one
list of messages with either model and returns a DataFrame.

**A step** starts at time 0; every time reported for it is relative to that
start. It ends when its last message arrives (in a training step: when the last
gradient reaches the last sensor), or, in a step that sends nothing, when the
slowest node has finished computing. Training is synchronous, so
:func:`simulate_run` starts step ``k + 1`` when step ``k`` ends.

**The cache.** Training repeats the same step thousands of times: same
messages, same sizes, same compute times. :class:`NetworkModel` simulates each
distinct step once and returns the stored result for every repetition
(``unique_steps_simulated`` and ``cache_hits`` count both). On lossy links
steps are random, so they cannot all be cached: a step whose draws give every
message one copy times exactly like the loss-free step and shares its cache
entry; a step with any retransmission is simulated every time and not kept, so
memory stays bounded however long the run.

>>> import networkx as nx
>>> from innet.core.topology.model import Topology
>>> graph = nx.Graph()
>>> graph.add_node("s", role="sensor")
>>> graph.add_node("f", role="fusion")
>>> graph.add_edge("s", "f", capacity=1e6, latency=0.001)
>>> model = NetworkModel(Topology("pair", graph))
>>> step = [Message("forward", "s", "f", 1000), Message("backward", "f", "s", 1000)]
>>> timing = model.simulate_step(step)
>>> round(timing.messages[0].t_end, 6)  # 8000 bits at 1 Mbit/s, then 1 ms
0.009
>>> round(timing.duration_s, 6)
0.018
"""

from __future__ import annotations

import hashlib
import heapq
import math
import numbers
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import networkx as nx
import numpy as np
import simpy
from simpy.resources.resource import Request

from innet.core.phases import get_phase
from innet.core.topology.model import Topology

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "MODELS",
    "ComputeTimes",
    "Message",
    "MessageTiming",
    "StepTiming",
    "NetworkModel",
    "max_min_rates",
    "simulate_run",
    "time_messages",
]

Link = TypeVar("Link", bound=Hashable)
"""A link's name in :func:`max_min_rates` (any hashable)."""

MODELS = ("fifo", "flow")
"""The network models: store-and-forward FIFO transmitters, or max-min fair flows."""


@dataclass(frozen=True)
class Message:
    """One tensor of ``nbytes`` bytes sent from ``src`` to ``dst`` over their link.

    ``after`` lists the indices (in the step's message list) of the messages that
    must have arrived before this one leaves; ``None`` lets the phase's flow decide
    (see the module docstring). A phase registered without a flow needs ``after``.
    """

    phase: str
    src: str
    dst: str
    nbytes: int
    after: tuple[int, ...] | None = None


@dataclass(frozen=True)
class MessageTiming:
    """When one message was sent and arrived, in seconds from the start of its step.

    ``t_start`` is when its first bit left, ``t_end`` when its last bit arrived
    (``t_start + 8 * nbytes / capacity + latency``), and ``queue_s`` how long it
    waited for a radio or the link between its sender being ready and ``t_start``.
    On a lossy link ``attempts`` copies were sent, and ``t_start`` and ``queue_s``
    belong to the first, ``t_end`` to the last (the one that got through).
    """

    t_start: float
    t_end: float
    queue_s: float
    attempts: int = 1


@dataclass(frozen=True)
class StepTiming:
    """Timings of a step's messages (in the order they were given) and its duration."""

    messages: tuple[MessageTiming, ...]
    duration_s: float


ComputeTimes = Mapping[str, tuple[float, float]]
"""Per node: (forward compute seconds, backward compute seconds)."""


@dataclass(frozen=True)
class _Hop(Message):
    """One hop of a routed message; a ``relay`` hop's arrival is no input of its receiver."""

    relay: bool = False


def _routed(phase: str) -> bool:
    return get_phase(phase).routed


def _journeys(timing: StepTiming, last_hop: list[int]) -> StepTiming:
    """Fold the timings of hops back into one timing per routed message."""
    out, first = [], 0
    for last in last_hop:
        hops = timing.messages[first : last + 1]
        out.append(
            MessageTiming(
                t_start=hops[0].t_start,
                t_end=hops[-1].t_end,
                queue_s=sum(h.queue_s for h in hops),
                attempts=1 + sum(h.attempts - 1 for h in hops),
            )
        )
        first = last + 1
    return StepTiming(messages=tuple(out), duration_s=timing.duration_s)


class NetworkModel:
    """The links and radios of a topology, able to time the messages of a step.

    ``tx_ports`` is the number of radios of every node whose ``tx_ports``
    attribute is unset (``None``); the node attribute wins when set. ``None``
    here means unlimited. ``seed`` seeds the retransmissions on lossy links
    (links with a ``loss`` attribute > 0; see the module docstring). The model
    keeps the timing of every distinct step without retransmissions it has
    simulated, so memory grows with the number of distinct steps, not steps.
    """

    def __init__(
        self,
        topology: Topology,
        *,
        tx_ports: int | None = None,
        seed: int = 0,
        model: str = "fifo",
        bandwidth_factor: float = 1.0,
        latency_factor: float = 1.0,
    ) -> None:
        _check_options(tx_ports, seed, model, bandwidth_factor, latency_factor)
        self.topology = topology
        self.seed = int(seed)
        self.model = model
        self._links, self._loss = _link_tables(topology, bandwidth_factor, latency_factor)
        self._radios = _radio_counts(topology, tx_ports)
        self._cache: dict[Hashable, StepTiming] = {}
        self._routes: dict[tuple[str, str, int], list[str]] = {}
        self._lossy_steps = 0
        self.unique_steps_simulated = 0
        self.cache_hits = 0

    @property
    def lossy(self) -> bool:
        """Whether any link of the topology loses messages."""
        return bool(self._loss)

    def tx_ports(self, node: str) -> int | None:
        """Number of radios of ``node`` (``None``: unlimited)."""
        return self._radios.get(node)

    def simulate_step(
        self,
        messages: Sequence[Message],
        compute_s: ComputeTimes | None = None,
        *,
        step_key: Hashable | None = None,
    ) -> StepTiming:
        """Time one step's messages; ``compute_s`` maps nodes to (forward, backward) seconds.

        Nodes missing from ``compute_s`` compute instantly; eval messages use the
        forward time. ``step_key`` names the step for the retransmission draws and
        matters only when a message crosses a lossy link (see the module
        docstring). ``unique_steps_simulated`` counts the simulations run,
        ``cache_hits`` the steps answered from the cache. Raises ``ValueError`` for a
        message between nodes that are not linked (and, in a routed phase, not
        connected), an unknown phase, a negative
        size or compute time, or messages that wait for each other in a cycle.
        """
        step = tuple(messages)
        compute = _compute_signature(compute_s)
        paths = None
        if self.model == "fifo":
            hops, last_hop = self._hops(step)
            if hops is not step:
                timing = self.simulate_step(hops, compute_s, step_key=step_key)
                return _journeys(timing, last_hop)
        else:
            paths = self._paths(step)
        attempts = self._draw_attempts(step, step_key, paths)
        key = (step, compute)
        cached = self._cache.get(key) if attempts is None else None
        if cached is not None:
            self.cache_hits += 1
            return cached
        timing = self._simulate(step, dict(compute), attempts, paths)
        self.unique_steps_simulated += 1
        if attempts is None:
            self._cache[key] = timing
        return timing

    def route(self, src: str, dst: str, nbytes: int) -> list[str]:
        """The nodes a routed message of ``nbytes`` bytes passes, ``src`` to ``dst``.

        The capacity-aware shortest path: link weight ``latency + 8 * nbytes / capacity``.
        """
        key = (src, dst, nbytes)
        path = self._routes.get(key)
        if path is None:
            links = self._links
            path = nx.shortest_path(
                self.topology.graph,
                src,
                dst,
                weight=lambda u, v, _attrs: links[(u, v)][1] + 8 * nbytes / links[(u, v)][0],
            )
            self._routes[key] = path
        return path

    def _hops(self, step: tuple[Message, ...]) -> tuple[tuple[Message, ...], list[int]]:
        """``step`` with every routed message between unlinked nodes split into hops.

        Returns the hop messages and, per message of ``step``, the index of its
        last hop; ``step`` itself (and identity indices) when nothing is split.
        """
        routed = {phase for phase in {m.phase for m in step} if _routed(phase)}
        if not any(m.phase in routed and (m.src, m.dst) not in self._links for m in step):
            return step, list(range(len(step)))
        paths = self._paths(step, routed)
        last_hop = list(np.cumsum([len(path) - 1 for path in paths]) - 1)
        hops: list[Message] = []
        for m, path in zip(step, paths, strict=True):
            after = None if m.after is None else tuple(int(last_hop[i]) for i in m.after)
            first = len(hops)
            for h, (u, v) in enumerate(zip(path, path[1:], strict=False)):
                final = h == len(path) - 2
                hop_after = after if h == 0 else (first + h - 1,)
                hops.append(_Hop(m.phase, u, v, m.nbytes, hop_after, relay=not final))
        return tuple(hops), [int(i) for i in last_hop]

    def _paths(self, step: tuple[Message, ...], routed: set[str] | None = None) -> list[list[str]]:
        """The nodes each message of ``step`` passes: its route if routed and unlinked."""
        if routed is None:
            routed = {phase for phase in {m.phase for m in step} if _routed(phase)}
        graph = self.topology.graph
        paths = []
        for index, m in enumerate(step):
            if m.phase in routed and (m.src, m.dst) not in self._links:
                if m.src not in graph or m.dst not in graph or not nx.has_path(graph, m.src, m.dst):
                    raise ValueError(
                        f"message {index}: no path between {m.src!r} and {m.dst!r} "
                        f"in topology {self.topology.name!r}"
                    )
                paths.append(self.route(m.src, m.dst, m.nbytes))
            else:
                paths.append([m.src, m.dst])
        return paths

    def _draw_attempts(
        self,
        messages: tuple[Message, ...],
        step_key: Hashable | None,
        paths: Sequence[Sequence[str]] | None = None,
    ) -> list[int] | None:
        """Copies sent of each message, or None when every message is sent once.

        A copy gets through with probability ``1 - loss`` of its link, or, on a
        path (the flow model), the product of that over the path's links.
        """
        if not self._loss:
            return None
        if paths is None:
            success = [1.0 - self._loss.get((m.src, m.dst), 0.0) for m in messages]
        else:
            success = [
                math.prod(1.0 - self._loss.get(link, 0.0) for link in zip(p, p[1:], strict=False))
                for p in paths
            ]
        if all(p == 1.0 for p in success):
            return None
        if step_key is None:
            step_key = self._lossy_steps
        self._lossy_steps += 1
        digest = hashlib.sha256(repr((self.seed, _plain_key(step_key))).encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:16], "little"))
        attempts = rng.geometric(np.asarray(success)).tolist()
        return attempts if max(attempts) > 1 else None

    def _simulate(
        self,
        messages: tuple[Message, ...],
        compute: dict[str, tuple[float, float]],
        attempts: list[int] | None = None,
        paths: list[list[str]] | None = None,
    ) -> StepTiming:
        self._check(messages, compute, paths)
        if not messages:
            duration = max(
                (forward + backward for forward, backward in compute.values()), default=0
            )
            return StepTiming(messages=(), duration_s=float(duration))
        if paths is not None:
            return _FlowSimulation(
                messages, compute, self._links, self._radios, attempts, paths
            ).run()
        return _StepSimulation(messages, compute, self._links, self._radios, attempts).run()

    def _check(
        self,
        messages: tuple[Message, ...],
        compute: dict[str, tuple[float, float]],
        paths: list[list[str]] | None = None,
    ) -> None:
        name = self.topology.name
        flows: dict[str, str | None] = {}
        for index, message in enumerate(messages):
            if message.phase not in flows:
                try:
                    flows[message.phase] = get_phase(message.phase).flow
                except ValueError as error:
                    raise ValueError(f"message {index}: {error}") from None
            if message.after is None and flows[message.phase] is None:
                raise ValueError(
                    f"message {index}: phase {message.phase!r} has no flow; give `after`"
                )
            _check_after(message, index, len(messages))
            hop = paths is None or len(paths[index]) == 2  # sent over one link, not routed
            if hop and (message.src, message.dst) not in self._links:
                raise ValueError(
                    f"message {index}: no link between {message.src!r} and {message.dst!r} "
                    f"in topology {name!r}"
                )
            if not message.nbytes >= 0:
                raise ValueError(f"message {index}: nbytes must be >= 0, got {message.nbytes}")
        self._check_compute(compute)

    def _check_compute(self, compute: dict[str, tuple[float, float]]) -> None:
        name = self.topology.name
        for node, times in compute.items():
            if node not in self.topology.graph:
                raise ValueError(f"compute_s: unknown node {node!r} in topology {name!r}")
            if not all(math.isfinite(t) and t >= 0 for t in times):
                raise ValueError(f"compute_s[{node!r}]: times must be finite and >= 0, got {times}")


def simulate_run(
    model: NetworkModel,
    steps: Sequence[Sequence[Message]],
    compute_s: ComputeTimes | None = None,
) -> tuple[list[StepTiming], list[float]]:
    """Time synchronous training steps laid back to back.

    Returns each step's timing and start time; step ``k + 1`` starts when step
    ``k`` ends, so a message's absolute time is its step's start plus its
    relative time. ``compute_s`` applies to every step; step ``k`` has step key ``k``.
    """
    timings: list[StepTiming] = []
    starts: list[float] = []
    clock = 0.0
    for step_key, messages in enumerate(steps):
        timing = model.simulate_step(messages, compute_s, step_key=step_key)
        timings.append(timing)
        starts.append(clock)
        clock += timing.duration_s
    return timings, starts


def _compute_signature(
    compute_s: ComputeTimes | None,
) -> tuple[tuple[str, tuple[float, float]], ...]:
    """A hashable, order-independent form of ``compute_s`` for the cache key."""
    if not compute_s:
        return ()
    return tuple(
        sorted(
            (node, (float(forward), float(backward)))
            for node, (forward, backward) in compute_s.items()
        )
    )


def _plain_key(key: Hashable) -> Hashable:
    """``key`` with numpy integers as Python ints, so that ``repr`` does not depend on types."""
    if isinstance(key, tuple):
        return tuple(_plain_key(part) for part in key)
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        return int(key)
    return key


def _check_options(
    tx_ports: int | None, seed: int, model: str, bandwidth_factor: float, latency_factor: float
) -> None:
    """``ValueError`` for an option of :class:`NetworkModel` out of its range."""
    _check_ports(tx_ports, "tx_ports")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    for name, factor in (
        ("bandwidth_factor", bandwidth_factor),
        ("latency_factor", latency_factor),
    ):
        if not (isinstance(factor, numbers.Real) and math.isfinite(factor) and factor > 0):
            raise ValueError(f"{name} must be a positive number, got {factor!r}")


def _link_tables(
    topology: Topology, bandwidth_factor: float, latency_factor: float
) -> tuple[dict[tuple[str, str], tuple[float, float]], dict[tuple[str, str], float]]:
    """Each link direction's (capacity, latency) after the efficiency factors, and the
    loss of each lossy link direction."""
    links: dict[tuple[str, str], tuple[float, float]] = {}
    losses: dict[tuple[str, str], float] = {}
    for u, v, attrs in topology.graph.edges(data=True):
        capacity_and_latency = (
            float(attrs["capacity"]) * float(bandwidth_factor),
            float(attrs["latency"]) * float(latency_factor),
        )
        links[(u, v)] = links[(v, u)] = capacity_and_latency
        loss = attrs.get("loss")
        loss = 0.0 if loss is None else float(loss)
        if not 0 <= loss < 1:
            raise ValueError(f"link {u}-{v}: loss must be >= 0 and < 1, got {loss!r}")
        if loss > 0:
            losses[(u, v)] = losses[(v, u)] = loss
    return links, losses


def _radio_counts(topology: Topology, tx_ports: int | None) -> dict[str, int]:
    """Each node's radios (its own ``tx_ports``, else ``tx_ports``); unlimited ones left out."""
    radios: dict[str, int] = {}
    for node, node_ports in topology.graph.nodes(data="tx_ports"):
        _check_ports(node_ports, f"node {node!r}: tx_ports")
        ports = tx_ports if node_ports is None else node_ports
        if ports is not None:
            radios[node] = int(ports)
    return radios


def _check_after(message: Message, index: int, count: int) -> None:
    if message.after is not None and not all(
        0 <= other < count and other != index for other in message.after
    ):
        raise ValueError(f"message {index}: after {message.after} names no other message")


def _check_ports(ports: int | None, what: str) -> None:
    if ports is not None and (
        isinstance(ports, bool) or not isinstance(ports, numbers.Integral) or ports < 1
    ):
        raise ValueError(f"{what} must be a positive integer or None, got {ports!r}")


class _StepSimulation:
    """One step on a fresh SimPy environment.

    A message goes through five stages, each a SimPy event whose callback starts
    the next: its sender is ready (:meth:`_send`) and it asks for a radio
    (:meth:`_request`); it has a radio, or needs none, and asks for the link's
    transmitter (:meth:`_take_link`); it has the transmitter and sends its bits
    (:meth:`_transmit`); its last bit has left, so it gives back the transmitter
    and the radio and propagates (:meth:`_sent`); it has arrived, which may make
    its receiver ready (:meth:`_arrive`). A copy that will be lost instead waits
    out the retransmission timeout and asks for a radio again. Callbacks rather
    than one SimPy process per message give the same times, about 1.5 times
    faster.
    """

    def __init__(
        self,
        messages: tuple[Message, ...],
        compute: Mapping[str, tuple[float, float]],
        links: Mapping[tuple[str, str], tuple[float, float]],
        radio_counts: Mapping[str, int],
        attempts: Sequence[int] | None = None,
    ) -> None:
        self.env = simpy.Environment()
        self.messages = messages
        self.links = links
        self.attempts = list(attempts) if attempts is not None else [1] * len(messages)
        self.copies_left = list(self.attempts)
        self.transmitters = {(m.src, m.dst): simpy.Resource(self.env, 1) for m in messages}
        self.radios = {
            m.src: simpy.Resource(self.env, radio_counts[m.src])
            for m in messages
            if m.src in radio_counts
        }
        self.issued = [0.0] * len(messages)
        self.starts = [0.0] * len(messages)
        self.ends = [math.nan] * len(messages)
        # A group is one side of a node, (node, is_forward). `waiting` counts the
        # messages into a group still to arrive; `on_ready` lists what is sent once
        # they all have: (compute seconds, indices of the messages to send).
        # A message with explicit dependencies (`after`) waits for those alone:
        # `blocked` counts its dependencies still to arrive, `unblocks` says whom an
        # arrival frees. Other messages belong to the groups of their phase's flow.
        self.waiting: dict[tuple[str, bool], int] = {}
        self.groups: list[tuple[str, bool] | None] = []
        self.blocked: dict[int, int] = {}
        self.unblocks: dict[int, list[int]] = {}
        self.on_ready = self._on_ready(self._dependencies(), compute)

    def _dependencies(self) -> dict[tuple[str, bool], list[int]]:
        """Fill ``groups``, ``waiting``, ``blocked`` and ``unblocks``; return the messages
        each side of a node sends when it is ready, ``{(node, is_forward): [indices]}``."""
        messages = self.messages
        sends: dict[tuple[str, bool], list[int]] = {}
        flows = {phase: get_phase(phase).flow for phase in {m.phase for m in messages}}
        for index, message in enumerate(messages):
            flow = flows[message.phase]
            relay = getattr(message, "relay", False)
            group = (message.dst, flow == "forward") if flow is not None and not relay else None
            self.groups.append(group)
            if group is not None:
                self.waiting[group] = self.waiting.get(group, 0) + 1
            if message.after is not None:
                self.blocked[index] = len(message.after)
                for other in message.after:
                    self.unblocks.setdefault(other, []).append(index)
            else:
                sends.setdefault((message.src, flow == "forward"), []).append(index)
        return sends

    def _on_ready(
        self,
        sends: Mapping[tuple[str, bool], list[int]],
        compute: Mapping[str, tuple[float, float]],
    ) -> dict[tuple[str, bool], list[tuple[float, list[int]]]]:
        """Which group's arrival triggers each of ``sends``, after how many compute seconds."""
        on_ready: dict[tuple[str, bool], list[tuple[float, list[int]]]] = {}
        for (node, forward), indices in sends.items():
            forward_s, backward_s = compute.get(node, (0.0, 0.0))
            if forward:
                trigger, delay = (node, True), forward_s
            elif (node, False) in self.waiting:
                trigger, delay = (node, False), backward_s
            else:  # backpropagation starts here (the fusion node)
                trigger, delay = (node, True), forward_s + backward_s
            on_ready.setdefault(trigger, []).append((delay, indices))
        return on_ready

    def run(self) -> StepTiming:
        for group in self.on_ready:
            if group not in self.waiting:
                self._ready(group)
        self._send([index for index, count in self.blocked.items() if count == 0])
        self.env.run()
        stuck = [m for m, end in zip(self.messages, self.ends, strict=True) if math.isnan(end)]
        if stuck:
            raise ValueError(
                f"{len(stuck)} message(s) wait for each other in a cycle and are never sent, "
                f"first: {stuck[0]}"
            )
        timings = tuple(
            MessageTiming(t_start=start, t_end=end, queue_s=start - issued, attempts=attempts)
            for start, end, issued, attempts in zip(
                self.starts, self.ends, self.issued, self.attempts, strict=True
            )
        )
        return StepTiming(messages=timings, duration_s=max(self.ends))

    def _ready(self, group: tuple[str, bool]) -> None:
        """Every message into ``group`` has arrived: compute, then send."""
        for delay, indices in self.on_ready.get(group, ()):
            if delay > 0:
                self.env.timeout(delay).callbacks.append(partial(self._send, indices))
            else:
                self._send(indices)

    def _send(self, indices: list[int], _event: simpy.Event | None = None) -> None:
        for index in indices:
            self.issued[index] = self.env.now
            self._request(index)

    def _request(self, index: int, _event: simpy.Event | None = None) -> None:
        radio = self.radios.get(self.messages[index].src)
        if radio is None:
            self._take_link(index, None)
        else:
            radio.request().callbacks.append(partial(self._take_link, index))

    def _take_link(self, index: int, radio_request: Request | None) -> None:
        message = self.messages[index]
        link_request = self.transmitters[(message.src, message.dst)].request()
        link_request.callbacks.append(partial(self._transmit, index, radio_request))

    def _transmit(self, index: int, radio_request: Request | None, link_request: Request) -> None:
        message = self.messages[index]
        capacity, _ = self.links[(message.src, message.dst)]
        if self.copies_left[index] == self.attempts[index]:  # the first copy
            self.starts[index] = self.env.now
        transmission = self.env.timeout(8 * message.nbytes / capacity)
        transmission.callbacks.append(partial(self._sent, index, radio_request, link_request))

    def _sent(
        self,
        index: int,
        radio_request: Request | None,
        link_request: Request,
        _event: simpy.Event,
    ) -> None:
        message = self.messages[index]
        link_request.resource.release(link_request)
        if radio_request is not None:
            radio_request.resource.release(radio_request)
        _, latency = self.links[(message.src, message.dst)]
        self.copies_left[index] -= 1
        if self.copies_left[index] > 0:  # lost: retransmit one round trip after sending
            self.env.timeout(2 * latency).callbacks.append(partial(self._request, index))
        else:
            self.env.timeout(latency).callbacks.append(partial(self._arrive, index))

    def _arrive(self, index: int, _event: simpy.Event) -> None:
        self.ends[index] = self.env.now
        group = self.groups[index]
        if group is not None:
            self.waiting[group] -= 1
            if self.waiting[group] == 0:
                self._ready(group)
        freed = []
        for other in self.unblocks.get(index, ()):
            self.blocked[other] -= 1
            if self.blocked[other] == 0:
                freed.append(other)
        if freed:
            self._send(freed)


def max_min_rates(paths: Sequence[Sequence[Link]], capacity: Mapping[Link, float]) -> list[float]:
    """Max-min fair rates of flows crossing shared links, by progressive filling.

    ``paths[i]`` lists the links flow ``i`` crosses (any hashable names) and
    ``capacity`` maps every link to its capacity. All rates grow together; when
    a link is full, the flows crossing it keep the rate they have (its *share*:
    its capacity left over, divided by the flows still growing on it), and the
    others go on growing. Every flow thus has a bottleneck: a full link on which
    no flow gets more than it does. A flow that crosses no link raises
    ``ValueError``.

    >>> max_min_rates([["ab", "bc"], ["ab"], ["bc"]], {"ab": 1.0, "bc": 2.0})
    [0.5, 0.5, 1.5]
    """
    users = _flows_by_link(paths)
    left = {link: float(capacity[link]) for link in users}
    growing = {link: len(flows) for link, flows in users.items()}
    order = {link: position for position, link in enumerate(users)}
    heap = [(left[link] / growing[link], order[link], link) for link in users]
    heapq.heapify(heap)
    rates: list[float | None] = [None] * len(paths)
    while heap:
        share, _, link = heapq.heappop(heap)
        if growing[link] == 0:
            continue
        current = left[link] / growing[link]
        if current != share:  # shares only grow as flows freeze: look again later
            heapq.heappush(heap, (current, order[link], link))
            continue
        for index in users[link]:
            if rates[index] is None:
                rates[index] = share
                for other in paths[index]:
                    left[other] = max(0.0, left[other] - share)
                    growing[other] -= 1
    return [float(rate) for rate in rates]  # type: ignore[arg-type]


def _flows_by_link(paths: Sequence[Sequence[Link]]) -> dict[Link, list[int]]:
    """The flows crossing each link, links in the order flows first cross them."""
    users: dict[Link, list[int]] = {}
    for index, path in enumerate(paths):
        if not path:
            raise ValueError(f"flow {index} crosses no link")
        for link in path:
            users.setdefault(link, []).append(index)
    return users


def time_messages(
    topology: Topology,
    messages: Sequence[Message],
    *,
    model: str = "fifo",
    compute_s: ComputeTimes | None = None,
    tx_ports: int | None = None,
    seed: int = 0,
    bandwidth_factor: float = 1.0,
    latency_factor: float = 1.0,
    step_key: Hashable | None = None,
) -> pd.DataFrame:
    """Time one step's ``messages`` on ``topology`` with network ``model`` (``fifo`` or ``flow``).

    Returns one row per message, in the order given: ``phase, src, dst, nbytes,
    t_start, t_end, queue_s, attempts`` (seconds from the step's start). The
    other arguments are those of :class:`NetworkModel` and
    :meth:`NetworkModel.simulate_step`.
    """
    import pandas as pd

    network = NetworkModel(
        topology,
        tx_ports=tx_ports,
        seed=seed,
        model=model,
        bandwidth_factor=bandwidth_factor,
        latency_factor=latency_factor,
    )
    timing = network.simulate_step(messages, compute_s, step_key=step_key)
    return pd.DataFrame(
        {
            "phase": [m.phase for m in messages],
            "src": [m.src for m in messages],
            "dst": [m.dst for m in messages],
            "nbytes": np.array([m.nbytes for m in messages], dtype=np.int64),
            "t_start": np.array([t.t_start for t in timing.messages], dtype=float),
            "t_end": np.array([t.t_end for t in timing.messages], dtype=float),
            "queue_s": np.array([t.queue_s for t in timing.messages], dtype=float),
            "attempts": np.array([t.attempts for t in timing.messages], dtype=np.int64),
        }
    )


class _FlowSimulation(_StepSimulation):
    """One step on the flow model: messages share each link direction max-min fairly.

    Dependencies, compute and radios are those of :class:`_StepSimulation`. A
    message that has its sender's radio (or needs none) starts a *flow* over its
    path at once: no transmitter to wait for. Whenever flows start or end, the
    rates of the flows that share links with them, directly or through other
    flows, are computed again (:func:`max_min_rates`); the others keep theirs.
    When a flow's last bit has left, the radio is given back and the message
    arrives the path's summed latency later; a lost copy instead waits twice
    that latency and asks for the radio again.
    """

    def __init__(
        self,
        messages: tuple[Message, ...],
        compute: Mapping[str, tuple[float, float]],
        links: Mapping[tuple[str, str], tuple[float, float]],
        radio_counts: Mapping[str, int],
        attempts: Sequence[int] | None,
        paths: Sequence[Sequence[str]],
    ) -> None:
        super().__init__(messages, compute, links, radio_counts, attempts)
        self.paths = [list(zip(path, path[1:], strict=False)) for path in paths]
        self.path_latency = [sum(links[link][1] for link in path) for path in self.paths]
        self.capacity = {link: links[link][0] for path in self.paths for link in path}
        self.on_link: dict[tuple[str, str], set[int]] = {}
        # per active flow: [bits left, rate, time of last update, version, radio request]
        self.active: dict[int, list] = {}
        self.dirty: set[int] = set()
        self.pending = False

    def _take_link(self, index: int, radio_request: Request | None) -> None:
        if self.copies_left[index] == self.attempts[index]:  # the first copy
            self.starts[index] = self.env.now
        bits = 8 * self.messages[index].nbytes
        if bits == 0:
            self._flow_sent(index, radio_request)
            return
        self.active[index] = [float(bits), 0.0, self.env.now, 0, radio_request]
        for link in self.paths[index]:
            self.on_link.setdefault(link, set()).add(index)
        self._reshare({index})

    def _reshare(self, flows: set[int]) -> None:
        """Share again, once every change at this instant is in, around ``flows``."""
        self.dirty |= flows
        if not self.pending:
            self.pending = True
            self.env.timeout(0).callbacks.append(self._share)

    def _share(self, _event: simpy.Event) -> None:
        self.pending = False
        component = self._component(self.dirty)
        self.dirty = set()
        if not component:
            return
        flows = sorted(component)
        now = self.env.now
        rates = max_min_rates([self.paths[i] for i in flows], self.capacity)
        for index, rate in zip(flows, rates, strict=True):
            state = self.active[index]
            state[0] = max(0.0, state[0] - state[1] * (now - state[2]))
            state[2] = now
            if rate != state[1] or state[3] == 0:
                state[1] = rate
                state[3] += 1
                done = self.env.timeout(state[0] / rate)
                done.callbacks.append(partial(self._flow_done, index, state[3]))

    def _component(self, seeds: set[int]) -> set[int]:
        """The active flows linked to ``seeds`` through shared links."""
        found = {index for index in seeds if index in self.active}
        todo = list(found)
        while todo:
            for link in self.paths[todo.pop()]:
                for other in self.on_link.get(link, ()):
                    if other not in found:
                        found.add(other)
                        todo.append(other)
        return found

    def _flow_done(self, index: int, version: int, _event: simpy.Event) -> None:
        state = self.active.get(index)
        if state is None or state[3] != version:  # rescheduled since
            return
        del self.active[index]
        neighbours: set[int] = set()
        for link in self.paths[index]:
            flows = self.on_link[link]
            flows.discard(index)
            neighbours |= flows
        if neighbours:
            self._reshare(neighbours)
        self._flow_sent(index, state[4])

    def _flow_sent(self, index: int, radio_request: Request | None) -> None:
        if radio_request is not None:
            radio_request.resource.release(radio_request)
        self.copies_left[index] -= 1
        latency = self.path_latency[index]
        if self.copies_left[index] > 0:  # lost: retransmit one round trip later
            self.env.timeout(2 * latency).callbacks.append(partial(self._request, index))
        else:
            self.env.timeout(latency).callbacks.append(partial(self._arrive, index))
