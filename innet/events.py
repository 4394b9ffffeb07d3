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
from typing import Any, Literal

import networkx as nx
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from innet.errors import InnetError
from innet.plans import Plan, build_plan
from innet.topology.model import Topology, node_key
from innet.units import parse_bitrate, parse_duration
from innet.yamlio import FieldError

__all__ = [
    "EventTime",
    "EventConfig",
    "Segment",
    "PlanChange",
    "Timeline",
    "build_timeline",
    "Link",
]

Link = frozenset[str]
"""An undirected link, named by its two endpoints."""

ACTIONS = ("link_down", "link_up", "node_down", "node_up", "link")


class EventTime(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epoch: int = Field(ge=0)
    step: int = Field(0, ge=0)


class EventConfig(BaseModel):
    """One event of a scenario's ``events:`` list."""

    model_config = ConfigDict(extra="forbid")
    at: EventTime
    link_down: tuple[str, str] | Literal["busiest"] | None = None
    link_up: tuple[str, str] | None = None
    node_down: str | None = None
    node_up: str | None = None
    link: tuple[str, str] | None = None
    capacity: str | float | None = None
    latency: str | float | None = None

    @model_validator(mode="after")
    def _one_action(self) -> EventConfig:
        given = [name for name in ACTIONS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"an event needs exactly one of {', '.join(ACTIONS)}")
        if self.link is not None and self.capacity is None and self.latency is None:
            raise ValueError("a `link:` event needs capacity and/or latency")
        if self.link is None and (self.capacity is not None or self.latency is not None):
            raise ValueError("capacity/latency belong to a `link: [a, b]` event")
        return self

    def describe(self, resolved_link: Link | None = None) -> str:
        """A short human description, e.g. ``link_down r1-f``."""
        if self.link_down is not None:
            pair = resolved_link or frozenset(self.link_down)
            suffix = " (busiest)" if self.link_down == "busiest" else ""
            return f"link_down {_name(pair)}{suffix}"
        if self.link_up is not None:
            return f"link_up {_name(frozenset(self.link_up))}"
        if self.node_down is not None:
            return f"node_down {self.node_down}"
        if self.node_up is not None:
            return f"node_up {self.node_up}"
        assert self.link is not None
        changes = []
        if self.capacity is not None:
            changes.append(f"capacity {self.capacity}")
        if self.latency is not None:
            changes.append(f"latency {self.latency}")
        return f"link {_name(frozenset(self.link))}: {', '.join(changes)}"


def _name(link: Link) -> str:
    return "-".join(sorted(link, key=node_key))


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


@dataclass
class Timeline:
    """A variant's plans over the run, and the links that fail during each event step."""

    segments: list[Segment]
    failures: dict[int, frozenset[Link]] = field(default_factory=dict)
    changes: list[PlanChange] = field(default_factory=list)

    def segment_indices(self, steps: Sequence[int] | np.ndarray) -> np.ndarray:
        """Index of the segment that each of ``steps`` runs in."""
        first_steps = np.array([segment.first_step for segment in self.segments])
        return np.maximum(np.searchsorted(first_steps, steps, side="right") - 1, 0)

    def segment_index(self, step: int) -> int:
        """Index of the segment that ``step`` runs in."""
        return int(self.segment_indices([step])[0])

    def segment_at(self, step: int) -> Segment:
        return self.segments[self.segment_index(step)]

    @property
    def plans(self) -> list[Plan]:
        return [segment.plan for segment in self.segments]


def build_timeline(
    topology: Topology,
    routing: str,
    message_bits: float,
    events: Sequence[EventConfig],
    *,
    steps_per_epoch: int,
    epochs: int,
) -> Timeline:
    """Apply ``events`` in order of time and build the plan of every stretch between them.

    Event problems (unknown node or link, a step outside the run) raise
    :class:`~innet.yamlio.FieldError` with the event's path in the scenario.
    """
    graph = topology.graph
    down_links: set[Link] = set()
    down_nodes: set[str] = set()
    attributes = {frozenset((u, v)): dict(data) for u, v, data in graph.edges(data=True)}

    def snapshot() -> Topology:
        current = nx.Graph()
        for node, data in graph.nodes(data=True):
            if node not in down_nodes:
                current.add_node(node, **data)
        for link, data in attributes.items():
            u, v = sorted(link, key=node_key)
            if link not in down_links and u not in down_nodes and v not in down_nodes:
                current.add_edge(u, v, **data)
        return Topology(topology.name, current, topology.source)

    def plan_of(current: Topology) -> Plan:
        sensors = [s for s in topology.sensors if s in current.graph]
        return build_plan(current, routing, message_bits).active(sensors)

    first = snapshot()
    timeline = Timeline(segments=[Segment(0, first, plan_of(first))])
    ordered = sorted(enumerate(events), key=lambda item: (item[1].at.epoch, item[1].at.step))
    for index, event in ordered:
        where = ("events", index)
        if event.at.epoch >= epochs:
            raise FieldError(
                (*where, "at", "epoch"), f"the run has {epochs} epochs (0..{epochs - 1})"
            )
        if event.at.step >= steps_per_epoch:
            raise FieldError(
                (*where, "at", "step"),
                f"an epoch has {steps_per_epoch} steps (0..{steps_per_epoch - 1})",
            )
        step = event.at.epoch * steps_per_epoch + event.at.step
        current = timeline.segment_at(step)
        failed: set[Link] = set()
        resolved: Link | None = None
        if event.link_down is not None:
            resolved = (
                _busiest_link(current.plan, current.topology, message_bits, topology.sensors)
                if event.link_down == "busiest"
                else _known_link(attributes, event.link_down, (*where, "link_down"))
            )
            down_links.add(resolved)
            failed.add(resolved)
        elif event.link_up is not None:
            down_links.discard(_known_link(attributes, event.link_up, (*where, "link_up")))
        elif event.node_down is not None:
            node = _known_node(graph, event.node_down, (*where, "node_down"))
            if node == topology.fusion:
                raise FieldError((*where, "node_down"), "the fusion node cannot go down")
            down_nodes.add(node)
            failed.update(link for link in attributes if node in link)
        elif event.node_up is not None:
            down_nodes.discard(_known_node(graph, event.node_up, (*where, "node_up")))
        else:
            assert event.link is not None
            link = _known_link(attributes, event.link, (*where, "link"))
            try:
                if event.capacity is not None:
                    attributes[link]["capacity"] = parse_bitrate(event.capacity)
                if event.latency is not None:
                    attributes[link]["latency"] = parse_duration(event.latency)
            except ValueError as error:
                raise FieldError((*where, "link"), str(error)) from None
        used = {frozenset(edge) for edge in current.plan.edges}
        lost = sorted(failed & used, key=lambda link: sorted(link, key=node_key))
        if lost:
            timeline.failures[step] = timeline.failures.get(step, frozenset()) | frozenset(lost)
        following = snapshot()
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


def _known_link(attributes: dict[Link, dict], pair: Sequence[str], loc: tuple) -> Link:
    link = frozenset(str(node) for node in pair)
    if link not in attributes:
        raise FieldError(loc, f"no link {'-'.join(str(n) for n in pair)} in the topology")
    return link


def _known_node(graph: nx.Graph, node: str, loc: tuple) -> str:
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

    return frozenset(min(plan.edges, key=load))
