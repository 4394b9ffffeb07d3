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

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from innet.core.registry import Registry
from innet.core.seeding import node_generator, node_seed, seeded_torch
from innet.families.inl.gates import Gate, GateOutput, make_gate

__all__ = [
    "ModuleSpec",
    "NodeModule",
    "aggregate",
    "AGGREGATORS",
    "Aggregator",
    "linear_flops",
]


@dataclass(frozen=True)
class Aggregator:
    """How a node combines the latents it holds: ``combine`` them into one tensor of
    ``widens`` (one latent wide per input) or of one latent's width."""

    combine: Callable[[list[torch.Tensor]], torch.Tensor]
    widens: bool = False


def _sum(inputs: list[torch.Tensor]) -> torch.Tensor:
    return inputs[0] if len(inputs) == 1 else torch.stack(inputs).sum(dim=0)


def _mean(inputs: list[torch.Tensor]) -> torch.Tensor:
    return inputs[0] if len(inputs) == 1 else torch.stack(inputs).mean(dim=0)


def _concat(inputs: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(inputs, dim=1)


AGGREGATORS: Registry[Aggregator] = Registry("aggregator")
"""How a node combines the latents it holds (``model.aggregator``), by name."""
AGGREGATORS.register("sum", Aggregator(_sum))
AGGREGATORS.register("mean", Aggregator(_mean))
AGGREGATORS.register("concat", Aggregator(_concat, widens=True))


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
    """Combine a node's latents into one tensor (an :data:`AGGREGATORS` name: ``sum``...)."""
    return AGGREGATORS.get(how).combine(inputs)


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


def linear_flops(module: nn.Module) -> int:
    """Multiply-add FLOPs per sample of the Linear layers in ``module`` (2 * in * out each)."""
    return sum(
        2 * m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear)
    )


class NodeModule(nn.Module):
    """Encoder, aggregator, combiner and gate (or decoder) of one node."""

    encoder: nn.Sequential | None
    combiner: nn.Sequential | None
    decoder: nn.Sequential | None
    gate: Gate | None

    def __init__(self, spec: ModuleSpec, seed: int) -> None:
        super().__init__()
        aggregator = AGGREGATORS.get(spec.aggregator)  # unknown: an error listing the names
        if spec.n_inputs == 0:
            raise ValueError(f"node {spec.node} has nothing to process")
        self.spec = spec
        width = spec.latent_dim * (spec.n_inputs if aggregator.widens else 1)
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
        assert self.gate is not None, f"node {self.spec.node} sends nothing (the fusion node)"
        return self.gate(latent)

    def decode(self, received: list[torch.Tensor], batch: int = 0) -> torch.Tensor:
        """Class logits at the fusion node.

        With nothing received (every sensor cut off from it) the decoder sees zeros:
        its prediction then depends on no input at all. ``batch`` sizes that case.
        """
        assert self.decoder is not None, f"node {self.spec.node} decodes nothing (not fusion)"
        if not received:
            first = self.decoder[0]
            assert isinstance(first, nn.Linear)
            return self.decoder(torch.zeros(batch, first.in_features, device=first.weight.device))
        return self.decoder(self.hold(None, received))

    def flops_per_sample(self) -> int:
        """Forward FLOPs per sample (backward is counted as twice this)."""
        return linear_flops(self)
