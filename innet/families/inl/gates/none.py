"""The ``none`` gate: ``t = z``, deterministic, no rate term.

Its ``I(Z;T)`` is not finite (a deterministic channel with a continuous
output), so the reported rate is the *ceiling*: the bits its message carries
per sample (the default of :class:`~innet.families.inl.gates.base.GateKind`).

>>> gate = IdentityGate(3)
>>> z = torch.ones(2, 3)
>>> out = gate(z)
>>> out.t is z, float(out.rate_bits)
(True, 0.0)
"""

from __future__ import annotations

from typing import Any

import torch

from innet.families.inl.gates.base import GATES, Gate, GateKind, GateOutput

__all__ = ["IdentityGate", "IdentityKind"]


class IdentityGate(Gate):
    """The ``none`` gate: sends ``z`` unchanged and reports rate 0."""

    kind = "none"

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.wire_dim = dim

    def forward(self, z: torch.Tensor) -> GateOutput:
        return GateOutput(t=z, rate_bits=z.new_zeros(()))


class IdentityKind(GateKind):
    """The ``none`` kind: the identity gate; its rate is the ceiling."""

    def build(self, dim: int, *, generator: torch.Generator, **options: Any) -> Gate:
        return IdentityGate(dim)


GATES.register("none", IdentityKind())
