"""Events during training: links and nodes that fail, come back, or change speed.

A scenario may list events, each at a training step given as ``{epoch, step}``
(``step`` counts within the epoch, default 0):

- ``link_down: [a, b]`` (or ``link_down: busiest``: the plan link that is
  busiest on the wire, i.e. with the most transmission time per step, ties to
  the one with the most sensors behind it, then node order), ``link_up: [a, b]``;
- ``node_down: x`` (all its links fail; the fusion node cannot fail),
  ``node_up: x``;
- ``link: [a, b]`` with ``capacity:`` and/or ``latency:``: the link changes speed.

An event happens *during* its step. That step still runs on the old plan, and
every message sent over a link that has just failed is lost: it is sent (and
counted) but never arrives, so the receiver goes without it and no gradient
comes back for it. From the next step on, training continues with the same
node modules on a plan rebuilt for the changed network (Dijkstra repair,
dense re-orientation). A sensor that can no longer reach the fusion node stops
contributing; accuracy is still measured at the fusion node.

:func:`build_timeline` turns a variant's events into :class:`Segment` s (a
stretch of steps with one topology and one plan) and :class:`PlanChange` s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

from innet.core.config import EVENT_ACTIONS, EventConfig
from innet.core.errors import InnetError
from innet.core.plans import Plan, build_plan
from innet.core.topology.model import Topology, node_key
from innet.core.units import parse_bitrate, parse_duration
from innet.core.yamlio import FieldError

__all__ = [
    "Segment",
    "StepPlan",
    "step_plan",
    "PlanChange",
    "Timeline",
    "build_timeline",
    "Link",
]

Link = frozenset[str]
"""An undirected link, named by its two endpoints."""


@dataclass
class Segment:
    """Steps ``first_step`` onwards (until the next segment) run on one topology and plan."""

    first_step: int
    topology: Topology
    plan: Plan


@dataclass
class PlanChange:
    """What one event did to a variant's plan."""

    step: int
    epoch: int
    event: str
    lost_links: list[Link]
    removed: list[tuple[str, str]]
    added: list[tuple[str, str]]
    cut_off: list[str]  # sensors that no longer reach the fusion node

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "event": self.event,
            "lost_links": [sorted(link, key=node_key) for link in self.lost_links],
            "removed_edges": [list(edge) for edge in self.removed],
            "added_edges": [list(edge) for edge in self.added],
            "cut_off_sensors": self.cut_off,
        }


@dataclass(frozen=True)
class StepPlan:
    """The plan one step really runs on.

    ``plan`` is the segment's plan: every node that computes sends to its
    parents in it. ``delivered`` is what arrives: ``plan`` without the links
    that fail during this step, and without the nodes left with no input.
    ``lost`` are the forward edges whose messages are sent but never arrive;
    ``working`` the nodes that compute (those of ``delivered`` and the senders
    of lost messages). On a step without failures all three are the plan's.
    """

    plan: Plan
    delivered: Plan
    lost: frozenset[tuple[str, str]]
    working: frozenset[str]


def step_plan(plan: Plan, failed: frozenset[Link], sensors: Sequence[str]) -> StepPlan:
    """The :class:`StepPlan` of a step of ``plan`` during which the links ``failed`` go down."""
    if not failed:
        return StepPlan(plan, plan, frozenset(), frozenset(plan.forward_order()))
    kept = tuple(edge for edge in plan.edges if frozenset(edge) not in failed)
    delivered = Plan(plan.routing, plan.fusion, kept).active(sensors)
    in_delivered = set(delivered.forward_order())
    senders = in_delivered | (set(sensors) & set(plan.forward_order()))
    lost = frozenset(
        edge for edge in plan.edges if frozenset(edge) in failed and edge[0] in senders
    )
    return StepPlan(plan, delivered, lost, frozenset(in_delivered | {src for src, _ in lost}))


@dataclass
class Timeline:
    """A variant's plans over the run, and the links that fail during each event step."""

    segments: list[Segment]
    failures: dict[int, frozenset[Link]] = field(default_factory=dict)
    changes: list[PlanChange] = field(default_factory=list)
    sensors: tuple[str, ...] = ()
    _step_plans: dict[int, StepPlan] = field(default_factory=dict, repr=False)

    def segment_indices(self, steps: Sequence[int] | np.ndarray) -> np.ndarray:
        """Index of the segment that each of ``steps`` runs in."""
        first_steps = np.array([segment.first_step for segment in self.segments])
        return np.maximum(np.searchsorted(first_steps, steps, side="right") - 1, 0)

    def segment_index(self, step: int) -> int:
        """Index of the segment that ``step`` runs in."""
        return int(self.segment_indices([step])[0])

    def segment_at(self, step: int) -> Segment:
        return self.segments[self.segment_index(step)]

    def step_plan(self, step: int) -> StepPlan:
        """The plan training step ``step`` really runs on (see :class:`StepPlan`)."""
        failed = self.failures.get(step, frozenset())
        key = step if failed else -1 - self.segment_index(step)
        if key not in self._step_plans:
            self._step_plans[key] = step_plan(self.segment_at(step).plan, failed, self.sensors)
        return self._step_plans[key]

    @property
    def plans(self) -> list[Plan]:
        return [segment.plan for segment in self.segments]


class _Network:
    """The network as events leave it: links and nodes down, link attributes changed."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.down_links: set[Link] = set()
        self.down_nodes: set[str] = set()
        self.attributes = {
            frozenset((u, v)): dict(data) for u, v, data in topology.graph.edges(data=True)
        }

    def snapshot(self) -> Topology:
        current = nx.Graph()
        for node, data in self.topology.graph.nodes(data=True):
            if node not in self.down_nodes:
                current.add_node(node, **data)
        for link, data in self.attributes.items():
            u, v = sorted(link, key=node_key)
            if link not in self.down_links and not {u, v} & self.down_nodes:
                current.add_edge(u, v, **data)
        return Topology(self.topology.name, current, self.topology.source)


def build_timeline(
    topology: Topology,
    routing: str,
    message_bits: float,
    events: Sequence[EventConfig],
    *,
    steps_per_epoch: int,
    epochs: int,
    hop_cost_s: float = 0.0,
) -> Timeline:
    """Apply ``events`` in order of time and build the plan of every stretch between them.

    Event problems (unknown node or link, a step outside the run) raise
    :class:`~innet.core.yamlio.FieldError` with the event's path in the scenario.
    """
    network = _Network(topology)

    def plan_of(current: Topology) -> Plan:
        sensors = [s for s in topology.sensors if s in current.graph]
        return build_plan(current, routing, message_bits, hop_cost_s=hop_cost_s).active(sensors)

    first = network.snapshot()
    timeline = Timeline(
        segments=[Segment(0, first, plan_of(first))], sensors=tuple(topology.sensors)
    )
    ordered = sorted(enumerate(events), key=lambda item: (item[1].at.epoch, item[1].at.step))
    for index, event in ordered:
        where = ("events", index)
        step = _event_step(event, where, steps_per_epoch, epochs)
        current = timeline.segment_at(step)
        action = next(name for name in _ACTIONS if getattr(event, name) is not None)
        failed, resolved = _ACTIONS[action](event, network, current, message_bits, where)
        used = {frozenset(edge) for edge in current.plan.edges}
        lost = sorted(failed & used, key=lambda link: sorted(link, key=node_key))
        if lost:
            timeline.failures[step] = timeline.failures.get(step, frozenset()) | frozenset(lost)
        following = network.snapshot()
        new_plan = plan_of(following)
        before, after = set(current.plan.edges), set(new_plan.edges)
        reached = set(new_plan.forward_order())
        timeline.changes.append(
            PlanChange(
                step=step,
                epoch=event.at.epoch,
                event=event.describe(resolved),
                lost_links=lost,
                removed=sorted(before - after),
                added=sorted(after - before),
                cut_off=[s for s in topology.sensors if s not in reached],
            )
        )
        timeline.segments = [s for s in timeline.segments if s.first_step <= step]
        timeline.segments.append(Segment(step + 1, following, new_plan))
    return timeline


def _event_step(event: EventConfig, where: tuple, steps_per_epoch: int, epochs: int) -> int:
    if event.at.epoch >= epochs:
        raise FieldError((*where, "at", "epoch"), f"the run has {epochs} epochs (0..{epochs - 1})")
    if event.at.step >= steps_per_epoch:
        raise FieldError(
            (*where, "at", "step"),
            f"an epoch has {steps_per_epoch} steps (0..{steps_per_epoch - 1})",
        )
    return event.at.epoch * steps_per_epoch + event.at.step


_Outcome = tuple[set[Link], Link | None]
"""What an event did: the links that failed during its step, and the link it resolved."""


def _link_down(
    event: EventConfig, network: _Network, current: Segment, bits: float, where: tuple
) -> _Outcome:
    if event.link_down == "busiest":
        link = _busiest_link(current.plan, current.topology, bits, network.topology.sensors)
    else:
        link = _known_link(network.attributes, event.link_down, (*where, "link_down"))
    network.down_links.add(link)
    return {link}, link


def _link_up(
    event: EventConfig, network: _Network, current: Segment, bits: float, where: tuple
) -> _Outcome:
    network.down_links.discard(_known_link(network.attributes, event.link_up, (*where, "link_up")))
    return set(), None


def _node_down(
    event: EventConfig, network: _Network, current: Segment, bits: float, where: tuple
) -> _Outcome:
    node = _known_node(network.topology.graph, event.node_down, (*where, "node_down"))
    if node == network.topology.fusion:
        raise FieldError((*where, "node_down"), "the fusion node cannot go down")
    network.down_nodes.add(node)
    return {link for link in network.attributes if node in link}, None


def _node_up(
    event: EventConfig, network: _Network, current: Segment, bits: float, where: tuple
) -> _Outcome:
    node = _known_node(network.topology.graph, event.node_up, (*where, "node_up"))
    network.down_nodes.discard(node)
    return set(), None


def _link_change(
    event: EventConfig, network: _Network, current: Segment, bits: float, where: tuple
) -> _Outcome:
    link = _known_link(network.attributes, event.link, (*where, "link"))
    try:
        if event.capacity is not None:
            network.attributes[link]["capacity"] = parse_bitrate(event.capacity)
        if event.latency is not None:
            network.attributes[link]["latency"] = parse_duration(event.latency)
    except ValueError as error:
        raise FieldError((*where, "link"), str(error)) from None
    return set(), None


_ACTIONS = dict(
    zip(EVENT_ACTIONS, (_link_down, _link_up, _node_down, _node_up, _link_change), strict=True)
)


def _known_link(attributes: dict[Link, dict], pair: Sequence[str] | None, loc: tuple) -> Link:
    assert pair is not None  # the event's own action names it
    link = frozenset(str(node) for node in pair)
    if link not in attributes:
        raise FieldError(loc, f"no link {'-'.join(str(n) for n in pair)} in the topology")
    return link


def _known_node(graph: nx.Graph, node: str | None, loc: tuple) -> str:
    assert node is not None  # the event's own action names it
    if str(node) not in graph:
        raise FieldError(loc, f"no node {node!r} in the topology")
    return str(node)


def _busiest_link(plan: Plan, topology: Topology, message_bits: float, sensors: list[str]) -> Link:
    """The plan link with the most transmission time per step (both directions)."""
    if not plan.edges:
        raise InnetError("link_down: busiest: the plan uses no link")
    upstream = {node: 0 for node in plan.forward_order()}
    for node in plan.forward_order():
        upstream[node] += 1 if node in sensors else 0
        for parent in plan.parents(node):
            upstream[parent] += upstream[node]

    def load(edge: tuple[str, str]) -> tuple:
        sender, receiver = edge
        capacity = topology.graph.edges[sender, receiver]["capacity"]
        occupancy = 2 * message_bits / capacity
        return (-occupancy, -upstream[sender], node_key(sender), node_key(receiver))

    busiest: tuple[str, str] = min(plan.edges, key=load)
    return frozenset(busiest)
