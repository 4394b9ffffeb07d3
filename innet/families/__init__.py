"""Scenario families: kinds of experiment that share the network, the records and the report.

Every experiment innet runs has the same outer shape: a topology, variants
compared over seeds, messages recorded from the real tensors, timed on the
network model, and reported. What differs is what the nodes learn and how.
A *family* (:class:`~innet.families.family.Family`) supplies that part:

- ``scenario_model``: the pydantic model of its scenarios (extending
  :class:`~innet.core.config.ScenarioBase` with its own blocks and variant type),
  and ``resolve_variants`` to merge each variant's overrides;
- ``prepare``: given the loaded scenario and topology, a
  :class:`~innet.core.training.Trainer` that knows each variant's plans over the
  run (its :class:`~innet.core.events.Timeline`) and trains one (variant, seed)
  through a transport; through it the family answers ``validate``
  (:meth:`~innet.families.family.Family.check`) and ``plan``
  (:meth:`~innet.families.family.Family.plans`);
- ``report``: its own summary fields, headline columns, report sections,
  figures and tables (:class:`~innet.report.family.FamilyReport`).

The runner, the timing and the core report (bytes per link, simulated time,
busiest links, placement, events) are the same for every family. A scenario
names its family with ``family:``; without one it belongs to
:data:`DEFAULT_FAMILY`, the first built-in family (in-network learning).
``FAMILIES.register(family.name, family)`` adds one, e.g. from a test or a plug-in.

>>> FAMILIES.names() == (DEFAULT_FAMILY, "finite_bank", "moe")
True
"""

from innet.families.family import FAMILIES, Family
from innet.families.finite_bank import FINITE_BANK
from innet.families.inl import INL
from innet.families.moe import MOE

__all__ = ["DEFAULT_FAMILY", "FAMILIES", "Family"]

for _built_in in (INL, FINITE_BANK, MOE):
    FAMILIES.register(_built_in.name, _built_in)

DEFAULT_FAMILY = INL.name
"""The family of a scenario that names none."""
