"""The ``inl`` family: in-network learning, the default kind of scenario.

Sensors encode their views, relays combine what they receive, the fusion node
decodes the class; latents go forward and gradients backward over the links
of a plan (dense INL, D-INL and other trees), through finite-rate gates. The
family's scenario blocks are in :mod:`~innet.families.inl.config`, its
training loop in :mod:`~innet.families.inl.trainer` and its report additions
in :mod:`~innet.families.inl.report`.
"""

from innet.core.config import LoadedScenario
from innet.core.topology.model import Topology
from innet.core.training import Trainer
from innet.families.family import Family
from innet.families.inl.config import InlScenario, resolve_variants, tidy_config
from innet.families.inl.report import INL_REPORT

__all__ = ["INL"]


def _prepare(loaded: LoadedScenario, topology: Topology) -> Trainer:
    """The trainer, imported only when a run starts (validating a scenario needs no torch)."""
    from innet.families.inl.trainer import InlTrainer

    return InlTrainer(loaded, topology)


INL = Family(
    name="inl",
    scenario_model=InlScenario,
    resolve_variants=resolve_variants,
    prepare=_prepare,
    report=INL_REPORT,
    tidy_config=tidy_config,
)
