"""``capped``: at most a fraction ``cap`` of a source's tokens leave its group (FasterMoE
style, :func:`cap_remote`)."""

from __future__ import annotations

import numpy as np
import torch

from innet.families.moe.routers.base import ROUTERS, Router, topk

__all__ = ["Capped", "cap_remote"]


@ROUTERS.register("capped")
class Capped(Router):
    """Top-k, with the tokens sent outside the source's group capped."""

    def choose(self, layer: int, source: int, scores: torch.Tensor) -> torch.Tensor:
        local = self.expert_groups(layer) == self.groups[self.sources[source]]
        return cap_remote(scores, self.top_k, local, self.config.cap)


def cap_remote(scores: torch.Tensor, k: int, local: np.ndarray, cap: float) -> torch.Tensor:
    """Top-k where at most ``floor(cap * T)`` tokens use an expert outside the source's group.

    ``local`` marks the experts in the source's group. The tokens kept remote
    are those that gain most over their best local choice; the others are
    routed among the local experts only.

    >>> s = torch.tensor([[0.0, 3.0], [0.0, 1.0], [2.0, 0.0]])
    >>> cap_remote(s, 1, np.array([True, False]), 0.34).tolist()
    [[1], [0], [0]]
    """
    chosen = topk(scores, k)
    mask = torch.as_tensor(local)
    remote = ~mask[chosen].all(dim=1)
    allowed = int(np.floor(cap * scores.shape[0]))
    if int(remote.sum()) <= allowed or not bool(mask.any()):
        return chosen
    local_scores = scores.masked_fill(~mask, -torch.inf)
    local_choice = topk(local_scores, min(k, int(mask.sum())))
    if local_choice.shape[1] < k:  # fewer local experts than k: fill with the best remote ones
        rest = topk(scores.masked_fill(mask, -torch.inf), k - local_choice.shape[1])
        local_choice = torch.cat([local_choice, rest], dim=1)
    gain = scores.gather(1, chosen).sum(1) - scores.gather(1, local_choice).sum(1)
    gain = gain.masked_fill(~remote, -torch.inf)
    keep = torch.zeros_like(remote)
    if allowed > 0:
        keep[torch.topk(gain, allowed).indices] = True
    return torch.where((remote & ~keep)[:, None], local_choice, chosen)
