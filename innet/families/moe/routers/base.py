"""What every MoE router shares: the registry of router kinds, the base router, the top-k
selection, the load count and the Switch/GShard auxiliary loss.

A router sees the scores of ``T`` tokens over ``E`` experts and picks ``k``
experts per token; the gate weights are the softmax probabilities of the
chosen experts (the trainer takes them), so gradients reach the router through
the weights and selection itself has no gradient. A router kind is a subclass
of :class:`Router` registered in :data:`ROUTERS` under its ``router.kind``; it
overrides only what differs from top-k (the scores it selects on, the logits,
the auxiliary loss's weights, the balance state after a step, re-placement).

>>> import torch
>>> probs = torch.full((8, 4), 0.25)
>>> round(float(switch_loss(probs, torch.arange(8).remainder(4)[:, None], 4)), 6)
1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from torch import nn

from innet.core.netsim import NetworkModel
from innet.core.registry import Registry
from innet.families.moe.balance import BALANCE_MODES
from innet.families.moe.placement import dispatch_costs

__all__ = [
    "ROUTERS",
    "Migration",
    "Router",
    "RouterConfig",
    "load",
    "switch_loss",
    "topk",
]

ROUTERS: Registry[type[Router]] = Registry("router kind")
"""Every router kind a variant may name (``router.kind``), by name (filled by the modules
of :mod:`innet.families.moe.routers`)."""


class RouterConfig(BaseModel):
    """A scenario's ``router`` block: the router every variant starts from (a variant
    overrides any of its fields in ``variants.NAME.router``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: Annotated[str, AfterValidator(ROUTERS.check)] = "topk"
    # auxiliary loss (topk, ta, and every router's reported loss)
    alpha: float = Field(default=0.01, ge=0)
    bias_rate: float = Field(default=0.001, ge=0)  # bias: u
    # capped: fraction of a source's tokens leaving its group
    cap: float = Field(default=0.25, ge=0, le=1)
    max_groups: int = Field(default=1, ge=1)  # group_limited: M
    lam: float = Field(default=0.0, ge=0, alias="lambda")  # carl: cost weight
    balance: Annotated[str, AfterValidator(BALANCE_MODES.check)] = "adaptive"
    gamma: float = Field(default=0.02, ge=0)  # carl: gamma0
    warm_start: int = Field(default=0, ge=0)  # carl: W steps of Sinkhorn selection
    replace_every: int = Field(default=0, ge=0)  # carl: P (0: never re-place)
    # ac: weights clipped at ac_clip × their mean (above only)
    ac_clip: float = Field(default=10.0, gt=0)


Migration = tuple[int, int, str, str]
"""An expert re-placed: ``(layer, expert, old node, new node)``."""


class Router:
    """Top-k selection with the state every router keeps: the placement of each layer's
    experts and the dispatch cost from each source to each expert."""

    needs_layer_before = False
    """Whether the kind scores with the routing of the layer before (then ``moe.layers >= 2``)."""
    balance_controlled = False
    """Whether the kind balances with :class:`~innet.families.moe.balance.BalanceController`
    (the first such variant's run also traces the controller alone: ``moe.balance_check``)."""
    state_fields: tuple[str, ...] = ("placements", "costs")
    """The attributes that change while training: what a checkpoint keeps (:meth:`state`)."""

    def __init__(
        self,
        config: RouterConfig,
        experts: int,
        top_k: int,
        layers: int,
        sources: list[str],
        placement: list[str],
        groups: dict[str, int],
        model: NetworkModel,
        token_bytes: int,
    ) -> None:
        self.config, self.experts, self.sources = config, experts, sources
        self.top_k = min(top_k, experts)
        self.groups, self.model, self.token_bytes = groups, model, token_bytes
        self.placements = [list(placement) for _ in range(layers)]
        self.costs = [self._costs(layer) for layer in range(layers)]

    def state(self) -> dict[str, Any]:
        """What changed while training (:attr:`state_fields`), for a checkpoint: the objects
        themselves, to be written before training goes on."""
        return {name: getattr(self, name) for name in self.state_fields}

    def restore(self, state: dict[str, Any]) -> None:
        """Take up a :meth:`state` again (a router built from the same config)."""
        for name in self.state_fields:
            setattr(self, name, state[name])

    def expert_groups(self, layer: int) -> np.ndarray:
        """The group of each expert's node."""
        return np.array([self.groups[node] for node in self.placements[layer]])

    def _costs(self, layer: int) -> np.ndarray:
        return dispatch_costs(self.model, self.sources, self.placements[layer], self.token_bytes)

    def logits(
        self,
        layer: int,
        routers: Sequence[nn.Linear],
        tokens: list[torch.Tensor],
        previous: list[torch.Tensor] | None,
    ) -> list[torch.Tensor]:
        """Every source's router logits (``previous``: the experts chosen in the layer before)."""
        return [router(h) for router, h in zip(routers, tokens, strict=True)]

    def select(
        self, layer: int, logits: list[torch.Tensor], step: int | None
    ) -> list[torch.Tensor]:
        """The chosen experts ``[T_s, k]`` of every source's tokens (``step`` None: evaluation)."""
        return [self.choose(layer, s, x.detach()) for s, x in enumerate(logits)]

    def choose(self, layer: int, source: int, scores: torch.Tensor) -> torch.Tensor:
        """The chosen experts of one source's tokens, from their (detached) logits."""
        return topk(scores, self.top_k)

    def aux_weights(self, layer: int, source: int, probs: torch.Tensor) -> torch.Tensor | None:
        """Per-token, per-expert weights of the auxiliary loss (None: unweighted)."""
        return None

    def after_step(self, layer: int, counts: np.ndarray) -> None:
        """Update the balance state with the step's tokens per expert (none here)."""

    def migrations(self, step: int) -> list[Migration]:
        """The experts moved after training step ``step`` (none here)."""
        return []


def load(chosen: torch.Tensor, experts: int) -> np.ndarray:
    """Tokens routed to each expert (a token with ``k`` experts counts once at each).

    >>> load(torch.tensor([[0], [2], [2]]), 4).tolist()
    [1, 0, 2, 0]
    """
    return np.bincount(chosen.reshape(-1).numpy(), minlength=experts)


def switch_loss(
    probs: torch.Tensor,
    chosen: torch.Tensor,
    experts: int,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The Switch/GShard auxiliary loss ``E * sum_i f_i P_i`` (times ``alpha`` by the caller).

    ``probs``: ``[T, E]`` router probabilities (one softmax, taken once by the
    caller); ``chosen``: ``[T, k]`` selected experts; ``f_i`` is the fraction of
    the ``T * k`` assignments that went to expert ``i`` (no gradient), ``P_i``
    the mean probability of ``i``. 1 at uniform routing, ``E`` when every
    token goes to one expert with probability 1. ``weights`` (``[T, E]``,
    optional) weighs each token's term per expert (the topology-weighted
    variant): ``E * sum_i f_i * mean_t(w_ti p_ti)``.

    >>> collapse = torch.zeros(6, 4); collapse[:, 2] = 1
    >>> float(switch_loss(collapse, torch.full((6, 1), 2), 4))
    4.0
    """
    fraction = torch.bincount(chosen.reshape(-1), minlength=experts).to(probs.dtype)
    fraction = fraction / chosen.numel()
    weighted = probs if weights is None else probs * weights
    return experts * (fraction * weighted.mean(dim=0)).sum()


def topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` highest-scoring experts per row (``[T, k]``; ties to the lowest index)."""
    return torch.topk(scores, k, dim=1, sorted=True).indices
