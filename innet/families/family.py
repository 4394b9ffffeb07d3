"""What a scenario family is: the :class:`Family` record and the :data:`FAMILIES` registry.

A family supplies what differs between kinds of experiment (see
:mod:`innet.families`). Its two hooks for the command line, :meth:`Family.check`
(``validate``) and :meth:`Family.plans` (``plan``), work through the family's
own trainer, so the front ends never need to know which family they hold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from innet.core.registry import Registry
from innet.report.family import FamilyReport

if TYPE_CHECKING:
    from innet.core.config import LoadedScenario, ScenarioBase
    from innet.core.events import Timeline
    from innet.core.topology.model import Topology
    from innet.core.training import Trainer
    from innet.core.yamlio import LineMap

__all__ = ["FAMILIES", "Family", "plural"]


def _keep(config: dict[str, Any]) -> dict[str, Any]:
    return config


@dataclass(frozen=True)
class Family:
    """A kind of experiment (see :mod:`innet.families`).

    ``scenario_model`` validates its scenarios, ``resolve_variants`` merges each
    variant's overrides, ``prepare`` makes the trainer of a loaded scenario,
    ``report`` adds its summary fields, sections, figures and tables, and
    ``tidy_config`` drops the fields that do not apply from a resolved scenario
    before it is saved.
    """

    name: str
    scenario_model: type[ScenarioBase]
    # takes the family's own scenario model (``Any``: a subclass of ScenarioBase)
    resolve_variants: Callable[[Any, Path | None, LineMap | None], Sequence[Any]]
    prepare: Callable[[LoadedScenario, Topology], Trainer]
    report: FamilyReport = field(default_factory=FamilyReport)
    tidy_config: Callable[[dict[str, Any]], dict[str, Any]] = _keep

    def check(self, loaded: LoadedScenario, topology: Topology) -> list[str]:
        """What ``validate`` checks beyond the schema: the trainer is prepared as a run
        prepares it (a problem raises), and each line returned describes the training."""
        trainer = self.prepare(loaded, topology)
        shapes = sorted(
            {(trainer.epochs(name), trainer.steps_per_epoch(name)) for name in trainer.timelines}
        )
        text = "; ".join(f"{plural(e, 'epoch')} of {plural(s, 'step')}" for e, s in shapes)
        return [f"training: {text}" + ("" if len(shapes) == 1 else " (by variant)")]

    def plans(self, loaded: LoadedScenario, topology: Topology) -> dict[str, Timeline]:
        """Each variant's plans over the run (for ``plan``), without training."""
        return self.prepare(loaded, topology).timelines


def plural(count: int, noun: str) -> str:
    """``1 epoch``, ``3 epochs``."""
    return f"{count} {noun}{'s' * (count != 1)}"


FAMILIES: Registry[Family] = Registry("family")
"""Every family by name; the built-in ones are registered by :mod:`innet.families`."""
