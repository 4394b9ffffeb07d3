"""The neural module that runs on one node.

A node's module has up to four parts:

- an **encoder** (sensors only) that maps the node's view of the input to a latent;
- an **aggregator** that combines the latents the node holds: its own encoding
  and those received from its children (``sum`` keeps the shape whatever the
  plan, ``mean`` too, ``concat`` grows with the number of inputs);
- a **combiner** (relays, and sensors that also relay) that maps the
  aggregate to a new latent ``Z``;
- a **gate** (every node that sends) that turns ``Z`` into what is sent, ``T``,
  with a rate estimate; or, on the fusion node, a **decoder** to class logits.

Each node's parameters are initialised from its own seed, so a node's module
is the same whichever process builds it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from innet.core.errors import InnetError
from innet.core.seeding import node_generator, node_seed, seeded_torch
from innet.families.inl.gates import GateOutput, make_gate

__all__ = [
    "ModuleSpec",
    "NodeModule",
    "aggregate",
    "AGGREGATORS",
    "linear_flops",
]

AGGREGATORS = ("sum", "mean", "concat")


@dataclass(frozen=True)
class ModuleSpec:
    """What a node's module must be built for: its role and its inputs in the plan."""

    node: str
    is_fusion: bool
    view_dim: int | None  # features of the node's view; None when it observes nothing
    n_received: int  # number of children sending latents to it
    latent_dim: int
    hidden: int
    aggregator: str
    gate_kind: str
    n_classes: int
    codewords: int = 16
    tau: float = 1.0

    @property
    def n_inputs(self) -> int:
        return self.n_received + (1 if self.view_dim is not None else 0)


def aggregate(inputs: list[torch.Tensor], how: str) -> torch.Tensor:
    """Combine a node's latents into one tensor (``sum``, ``mean`` or ``concat``)."""
    if how == "sum":
        return inputs[0] if len(inputs) == 1 else torch.stack(inputs).sum(dim=0)
    if how == "mean":
        return inputs[0] if len(inputs) == 1 else torch.stack(inputs).mean(dim=0)
    if how == "concat":
        return torch.cat(inputs, dim=1)
    raise InnetError(f"unknown aggregator {how!r} (expected one of {', '.join(AGGREGATORS)})")


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


def linear_flops(module: nn.Module) -> int:
    """Multiply-add FLOPs per sample of the Linear layers in ``module`` (2 * in * out each)."""
    return sum(
        2 * m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear)
    )


class NodeModule(nn.Module):
    """Encoder, aggregator, combiner and gate (or decoder) of one node."""

    def __init__(self, spec: ModuleSpec, seed: int) -> None:
        super().__init__()
        if spec.aggregator not in AGGREGATORS:
            raise InnetError(
                f"unknown aggregator {spec.aggregator!r} (expected one of {', '.join(AGGREGATORS)})"
            )
        if spec.n_inputs == 0:
            raise ValueError(f"node {spec.node} has nothing to process")
        self.spec = spec
        width = spec.latent_dim * (spec.n_inputs if spec.aggregator == "concat" else 1)
        with seeded_torch(node_seed(seed, spec.node, "init")):
            self.encoder = (
                _mlp(spec.view_dim, spec.hidden, spec.latent_dim) if spec.view_dim else None
            )
            if spec.is_fusion:
                self.combiner = None
                self.decoder = _mlp(width, spec.hidden, spec.n_classes)
                self.gate = None
            else:
                self.combiner = (
                    _mlp(width, spec.hidden, spec.latent_dim) if spec.n_received > 0 else None
                )
                self.decoder = None
                self.gate = make_gate(
                    spec.gate_kind,
                    spec.latent_dim,
                    generator=node_generator(seed, spec.node, "gate"),
                    codewords=spec.codewords,
                    tau=spec.tau,
                )

    @property
    def wire_dim(self) -> int:
        """Features per sample of the latent this node sends."""
        assert self.gate is not None
        return self.gate.wire_dim

    def hold(self, view: torch.Tensor | None, received: list[torch.Tensor]) -> torch.Tensor:
        """Aggregate the node's own encoding (if any) and the received latents."""
        inputs = ([self.encoder(view)] if self.encoder is not None else []) + received
        return aggregate(inputs, self.spec.aggregator)

    def send_forward(self, view: torch.Tensor | None, received: list[torch.Tensor]) -> GateOutput:
        """The gated latent this node sends to its parents."""
        held = self.hold(view, received)
        latent = self.combiner(held) if self.combiner is not None else held
        return self.gate(latent)

    def decode(self, received: list[torch.Tensor], batch: int = 0) -> torch.Tensor:
        """Class logits at the fusion node.

        With nothing received (every sensor cut off from it) the decoder sees zeros:
        its prediction then depends on no input at all. ``batch`` sizes that case.
        """
        if not received:
            width = self.decoder[0].in_features
            return self.decoder(torch.zeros(batch, width, device=self.decoder[0].weight.device))
        return self.decoder(self.hold(None, received))

    def flops_per_sample(self) -> int:
        """Forward FLOPs per sample (backward is counted as twice this)."""
        return linear_flops(self)
