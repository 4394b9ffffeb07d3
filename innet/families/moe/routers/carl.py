"""``carl``: communication-aware routing with adaptive balance.

Each token's experts are the top-k of the utilities ``logit - lambda * cost - b``:
``cost`` the dispatch cost from the token's source to the expert's node,
``b`` the expert- and group-level balance biases of :mod:`..balance`, moved
after every step. The first ``warm_start`` steps select by Sinkhorn over those
utilities instead; every ``replace_every`` steps the experts are re-placed
from the load accumulated since the last re-placement, when that lowers the
predicted maximum group load (:mod:`..placement`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from innet.families.moe.balance import BalanceController
from innet.families.moe.placement import predicted_max_group_load, propose_placement
from innet.families.moe.routers.base import ROUTERS, Migration, Router, topk
from innet.families.moe.routers.sinkhorn import balanced_choice

__all__ = ["Carl"]


@ROUTERS.register("carl")
class Carl(Router):
    """CARL's selection, balance controller and re-placement (see the module docstring)."""

    balance_controlled = True
    state_fields = (*Router.state_fields, "controllers", "accumulated")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.controllers = [
            BalanceController(
                self.experts,
                self.expert_groups(layer),
                mode=self.config.balance,
                gamma=self.config.gamma,
            )
            for layer in range(len(self.placements))
        ]
        self.accumulated = [np.zeros(self.experts) for _ in self.placements]

    def select(
        self, layer: int, logits: list[torch.Tensor], step: int | None
    ) -> list[torch.Tensor]:
        if step is not None and step < self.config.warm_start:
            utilities = [self.utility(layer, s, x) for s, x in enumerate(logits)]
            return balanced_choice(utilities, self.top_k)
        return super().select(layer, logits, step)

    def choose(self, layer: int, source: int, scores: torch.Tensor) -> torch.Tensor:
        return topk(self.utility(layer, source, scores), self.top_k)

    def utility(self, layer: int, source: int, logits: torch.Tensor) -> torch.Tensor:
        """``logit - lambda * cost - b`` of one source's tokens (no gradient)."""
        cost = torch.as_tensor(self.costs[layer][source], dtype=logits.dtype)
        bias = torch.as_tensor(self.controllers[layer].bias(), dtype=logits.dtype)
        return logits.detach() - self.config.lam * cost - bias

    def after_step(self, layer: int, counts: np.ndarray) -> None:
        self.controllers[layer].update(counts)
        self.accumulated[layer] += counts

    def migrations(self, step: int) -> list[Migration]:
        every = self.config.replace_every
        if not every or (step + 1) % every:
            return []
        return [
            (layer, *move) for layer in range(len(self.placements)) for move in self.replace(layer)
        ]

    def replace(self, layer: int) -> list[tuple[int, str, str]]:
        """Re-placement from the accumulated load: the moves ``(expert, old, new)``."""
        current = self.placements[layer]
        load_ = self.accumulated[layer]
        proposal = propose_placement(load_, current, self.groups)
        self.accumulated[layer] = np.zeros(self.experts)
        if predicted_max_group_load(load_, proposal, self.groups) >= predicted_max_group_load(
            load_, current, self.groups
        ):
            return []
        moves = [
            (e, old, new)
            for e, (old, new) in enumerate(zip(current, proposal, strict=True))
            if old != new
        ]
        self.placements[layer] = proposal
        self.costs[layer] = self._costs(layer)
        self.controllers[layer].group_of = self.expert_groups(layer)
        return moves
