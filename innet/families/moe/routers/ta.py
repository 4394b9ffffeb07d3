"""``ta``: the topology-weighted auxiliary loss (TA-MoE style): the Switch loss with
per-expert weights, the dispatch cost from the token's source normalised to mean 1."""

from __future__ import annotations

import torch

from innet.families.moe.routers.base import ROUTERS, Router

__all__ = ["TopologyAware"]


@ROUTERS.register("ta")
class TopologyAware(Router):
    """Top-k selection; the auxiliary loss weighs each expert by its dispatch cost."""

    def aux_weights(self, layer: int, source: int, probs: torch.Tensor) -> torch.Tensor | None:
        cost = torch.as_tensor(self.costs[layer][source], dtype=probs.dtype)
        weights = cost / cost.mean() if cost.mean() > 0 else torch.ones_like(cost)
        return weights.expand_as(probs)
