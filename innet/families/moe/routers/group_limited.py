"""``group_limited``: each token's experts lie in at most ``M`` groups
(:func:`group_limited_mask`)."""

from __future__ import annotations

import numpy as np
import torch

from innet.families.moe.routers.base import ROUTERS, Router, topk

__all__ = ["GroupLimited", "group_limited_mask"]


@ROUTERS.register("group_limited")
class GroupLimited(Router):
    """Top-k among the experts of each token's best ``max_groups`` groups."""

    def choose(self, layer: int, source: int, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(scores, dim=1)
        mask = group_limited_mask(probs, self.expert_groups(layer), self.config.max_groups)
        return topk(scores + mask, self.top_k)


def group_limited_mask(probs: torch.Tensor, group_of: np.ndarray, groups: int) -> torch.Tensor:
    """``-inf`` outside each token's best ``groups`` groups (a group's score: its best expert).

    >>> p = torch.tensor([[0.1, 0.5, 0.3, 0.1]])
    >>> group_limited_mask(p, np.array([0, 0, 1, 1]), 1).tolist()
    [[0.0, 0.0, -inf, -inf]]
    """
    members = torch.as_tensor(group_of)
    n_groups = int(members.max()) + 1
    best = torch.full((probs.shape[0], n_groups), -torch.inf, dtype=probs.dtype)
    best = best.scatter_reduce(1, members.expand_as(probs), probs, reduce="amax")
    keep = torch.topk(best, min(groups, n_groups), dim=1).indices
    allowed = torch.zeros_like(best, dtype=torch.bool).scatter(1, keep, True)
    return torch.where(allowed[:, members], 0.0, -torch.inf).to(probs.dtype)
