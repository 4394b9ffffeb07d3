"""The ``finite_bank`` family: a bank of K pretrained experts and what a gate's rate buys.

A gate choosing one of ``K`` experts is a channel. The family trains a bank
of unequal experts once (cached, :mod:`~innet.families.finite_bank.bank`),
places them on the nodes of a star around a gate node and runs three
experiments:

- the selection experiment (:mod:`~innet.families.finite_bank.selection`): a
  Gibbs selection rule of strength ``alpha``; ``Î(S;W)`` against the generalisation gap, the
  Xu–Raginsky and union bounds, and the rule's exact identity;
- the accuracy–rate curve (:mod:`~innet.families.finite_bank.trainer`)
  over the bank by Blahut–Arimoto, and innet's discrete gate trained as a
  router through the network at several ``beta``;
- the finite-rate gating bound
  (:mod:`~innet.families.finite_bank.gating_bound`) on a synthetic Gaussian
  mixture.

Its blocks are in :mod:`~innet.families.finite_bank.config`, its report in
:mod:`~innet.families.finite_bank.report`; ``docs/finite_bank.md`` explains
the quantities and what we defined ourselves.
"""

from innet.core.config import LoadedScenario
from innet.core.topology.model import Topology
from innet.core.training import Trainer
from innet.families.family import Family
from innet.families.finite_bank.config import FiniteBankScenario, resolve_variants
from innet.families.finite_bank.report import FINITE_BANK_REPORT

__all__ = ["FINITE_BANK"]


def _prepare(loaded: LoadedScenario, topology: Topology) -> Trainer:
    """The trainer, imported only when a run starts (validating a scenario needs no torch)."""
    from innet.families.finite_bank.trainer import FiniteBankTrainer

    return FiniteBankTrainer(loaded, topology)


FINITE_BANK = Family(
    name="finite_bank",
    scenario_model=FiniteBankScenario,
    resolve_variants=resolve_variants,
    prepare=_prepare,
    report=FINITE_BANK_REPORT,
)
