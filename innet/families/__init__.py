"""Scenario families: kinds of experiment that share the network, the records and the report.

Every experiment innet runs has the same outer shape: a topology, variants
compared over seeds, messages recorded from the real tensors, timed on the
network model, and reported. What differs is what the nodes learn and how.
A *family* supplies that part:

- ``scenario_model``: the pydantic model of its scenarios (extending
  :class:`~innet.core.scenario.ScenarioBase` with its own blocks and variant type),
  and ``resolve_variants`` to merge each variant's overrides;
- ``prepare``: given the loaded scenario and topology, a :class:`Trainer` that
  knows each variant's plans over the run (its :class:`~innet.core.events.Timeline`)
  and trains one (variant, seed) through a transport;
- ``report``: its own summary fields, headline columns, report sections,
  figures and tables (:class:`FamilyReport`).

The runner, the timing and the core report (bytes per link, simulated time,
busiest links, placement, events) are the same for every family. A scenario
names its family with ``family:`` (default ``inl``); :func:`register_family`
adds one, e.g. from a test or a plug-in.

>>> family_names()[:1]
('inl',)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

    from innet.core.events import Timeline
    from innet.core.group import Group
    from innet.core.records import ExchangeLog
    from innet.core.scenario import LoadedScenario, ScenarioBase
    from innet.core.topology.model import Topology
    from innet.core.transport import RecordingTransport
    from innet.core.yamlio import LineMap
    from innet.rundir.io import RunData

__all__ = [
    "Family",
    "FamilyReport",
    "FamilyTable",
    "HeadlineColumn",
    "TrainResult",
    "Trainer",
    "register_family",
    "get_family",
    "family_names",
]


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
    """Trains the variants of one scenario (made by :attr:`Family.prepare`)."""

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


@dataclass(frozen=True)
class HeadlineColumn:
    """A column a family adds to the headline table: its header and how to fill it."""

    header: str
    value: Callable[[dict[str, Any], str, dict[str, Any]], str]  # (variant summary, name, summary)
    align: str = "right"
    before_exchange: bool = False  # placed before the training-exchange columns


@dataclass(frozen=True)
class FamilyTable:
    """A table a family's runs write (``FILE.csv``) with its columns.

    ``optional`` columns follow ``columns`` in the file; a run directory
    written without them (an older run, a hand-made table) reads back with
    them empty. A table that is not ``required`` reads back empty from a run
    directory without its file.
    """

    file: str
    columns: tuple[str, ...]
    optional: tuple[str, ...] = ()
    required: bool = True


@dataclass(frozen=True)
class FamilyReport:
    """How a family's runs are summarised and reported, next to the core report."""

    variant_summary: Callable[[RunData, str, list[int]], dict[str, Any]] = (
        lambda run, variant, seeds: {}
    )
    comparison: Callable[[str, str, dict[str, Any], dict[str, Any]], dict[str, Any]] = (
        lambda a, b, summary_a, summary_b: {}
    )
    headline: tuple[HeadlineColumn, ...] = ()
    sections: tuple[Callable[[RunData, dict[str, Any]], str], ...] = ()
    figures: Callable[[RunData, Path], list[tuple[str, str]]] = lambda run, out_dir: []
    tables: dict[str, FamilyTable] = field(default_factory=dict)
    metric_names: tuple[str, ...] = ()  # the family's columns of metrics.csv
    primary_metric: str | None = None  # shown around events
    follows_plan: bool = True
    """Whether training traffic runs along the variant's plan (topology figures draw its
    arrows, the report shows each variant's routing and plan); False for families that
    send where they choose (tokens to experts)."""
    node_roles: Callable[[RunData], dict[str, str]] | None = None
    """Each node's role in the family's words (the report's overview counts them);
    None: the topology's roles (fusion, sensor, relay)."""
    exchange_label: str = "training exchange"
    """What the headline calls the training bytes of ``train_exchange_bytes``."""
    traffic_label: str = "forward latents and backward gradients"
    """What the training traffic on the links is, in the report's words."""
    tradeoff_metrics: tuple[str, ...] | None = None
    """Final-epoch metrics a sweep plots the primary metric against (the ``inl`` family's
    latent rate: the beta curve); None: every one of ``metric_names`` but the primary."""

    def tradeoffs(self) -> tuple[str, ...]:
        """The metrics a sweep plots the primary metric against (see ``tradeoff_metrics``)."""
        if self.tradeoff_metrics is not None:
            return self.tradeoff_metrics
        return tuple(name for name in self.metric_names if name != self.primary_metric)


@dataclass(frozen=True)
class Family:
    """A kind of experiment (see the module docstring)."""

    name: str
    scenario_model: type[ScenarioBase]
    resolve_variants: Callable[[ScenarioBase, Path | None, LineMap | None], Sequence[Any]]
    prepare: Callable[[LoadedScenario, Topology], Trainer]
    report: FamilyReport = field(default_factory=FamilyReport)
    tidy_config: Callable[[dict[str, Any]], dict[str, Any]] = lambda config: config
    """Drops the fields that do not apply from a resolved scenario before it is saved."""


_FAMILIES: dict[str, Family] = {}
_BUILT_IN = (
    "innet.families.inl",
    "innet.families.finite_bank",
    "innet.families.moe",
)


def register_family(family: Family) -> Family:
    """Make ``family`` available to scenarios as ``family: NAME`` (replacing one of that name)."""
    _FAMILIES[family.name] = family
    return family


def _load_built_in() -> None:
    import importlib

    for module in _BUILT_IN:
        importlib.import_module(module)


def family_names() -> tuple[str, ...]:
    """The names of every registered family, built-in ones first."""
    _load_built_in()
    return tuple(_FAMILIES)


def get_family(name: str) -> Family:
    """The family called ``name``; ``KeyError`` naming the known ones otherwise."""
    _load_built_in()
    try:
        return _FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown family {name!r} (known: {', '.join(_FAMILIES)})") from None
