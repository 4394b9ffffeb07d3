"""Scenario families: kinds of experiment that share the network, the records and the report.

Every experiment innet runs has the same outer shape: a topology, variants
compared over seeds, messages recorded from the real tensors, timed on the
network model, and reported. What differs is what the nodes learn and how.
A *family* supplies that part:

- ``scenario_model``: the pydantic model of its scenarios (extending
  :class:`~innet.core.config.ScenarioBase` with its own blocks and variant type),
  and ``resolve_variants`` to merge each variant's overrides;
- ``prepare``: given the loaded scenario and topology, a
  :class:`~innet.core.training.Trainer` that
  knows each variant's plans over the run (its :class:`~innet.core.events.Timeline`)
  and trains one (variant, seed) through a transport;
- ``report``: its own summary fields, headline columns, report sections,
  figures and tables (:class:`~innet.report.family.FamilyReport`).

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
from typing import TYPE_CHECKING, Any

from innet.report.family import FamilyReport

if TYPE_CHECKING:
    from innet.core.config import LoadedScenario, ScenarioBase
    from innet.core.topology.model import Topology
    from innet.core.training import Trainer
    from innet.core.yamlio import LineMap

__all__ = [
    "Family",
    "register_family",
    "get_family",
    "family_names",
]


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
