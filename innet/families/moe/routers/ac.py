"""``ac``: the adaptive-clustering router: each token's features are weighted by those of the
cluster (expert) it was sent to in the layer before, then scored by the linear router
(:func:`ac_weights`, :func:`ac_logits`); normalised as the public ACMoE code does. The
first layer has no layer before and scores as top-k."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from innet.families.moe.routers.base import ROUTERS, Router

__all__ = ["AdaptiveClustering", "ac_logits", "ac_weights"]


@ROUTERS.register("ac")
class AdaptiveClustering(Router):
    """Top-k of the logits in the space weighted by the previous layer's clusters."""

    needs_layer_before = True

    def logits(
        self,
        layer: int,
        routers: Sequence[nn.Linear],
        tokens: list[torch.Tensor],
        previous: list[torch.Tensor] | None,
    ) -> list[torch.Tensor]:
        if layer == 0 or previous is None:
            return super().logits(layer, routers, tokens, previous)
        joint = torch.cat(tokens).detach()
        weights = ac_weights(joint, torch.cat(previous)[:, 0], self.experts, self.config.ac_clip)
        return [
            ac_logits(h, routers[s].weight, weights, previous[s][:, 0])
            for s, h in enumerate(tokens)
        ]


def ac_weights(
    tokens: torch.Tensor, assigned: torch.Tensor, experts: int, clip: float = 10.0
) -> torch.Tensor:
    """Per-expert feature weights of the adaptive-clustering router, ``[E, d]`` (no gradient).

    As the public ACMoE code does it (Fsoft-AIC/Tight-Clusters-Make-Specialized-Experts,
    ``language-modeling/custom_gates.py``, ``COSAGate_Balance.compute_W_var`` with
    ``mad=True``): for each expert ``k``, the tokens the previous layer sent to it
    (top-1 ``assigned``), per feature ``q``, ``W_kq = 1 / (MAD_kq + 1e-4)`` with
    ``MAD_kq`` the mean absolute deviation from the cluster's mean; then the
    upper clip ``W <= clip * mean(W)`` (the mean over every entry, as there;
    no lower clip); then each feature is divided by its mean over the clusters
    (``W / W.mean(dim=0)``, "dimwise mean scaling"), so every column averages 1.

    Where innet differs, and why: a cluster with fewer than two tokens has no
    dispersion to measure (the public code reads its MAD as 0, so ``W = 1e4``
    before the clip); here its row takes no part in the clip's or the
    columns' means and is set to ones, the columns' mean after scaling, so
    its tokens are scored by the base router. With no cluster of two tokens
    every weight is 1.

    >>> x = torch.tensor([[0.0, 0.0], [2.0, 2.0], [5.0, 5.0], [5.5, 5.5], [9.0, 9.0]])
    >>> w = ac_weights(x, torch.tensor([0, 0, 1, 1, 2]), 3)  # MAD 1 and 0.25; one lone token
    >>> [[round(v, 3) for v in row] for row in w.tolist()]  # 1 and 4, over their mean 2.5
    [[0.4, 0.4], [1.6, 1.6], [1.0, 1.0]]
    """
    with torch.no_grad():
        weights = torch.ones(experts, tokens.shape[1], dtype=tokens.dtype)
        rows = []
        for e in range(experts):
            cluster = tokens[assigned == e]
            if cluster.shape[0] < 2:
                continue
            rows.append(e)
            mad = (cluster - cluster.mean(dim=0)).abs().mean(dim=0)
            weights[e] = 1.0 / (mad + 1e-4)
        if rows:
            measured = weights[rows]
            measured = measured.clamp(max=clip * float(measured.mean()))
            weights[rows] = measured / measured.mean(dim=0)
    return weights


def ac_logits(
    tokens: torch.Tensor,
    router_weight: torch.Tensor,
    feature_weights: torch.Tensor,
    previous: torch.Tensor,
) -> torch.Tensor:
    """Scores in the transformed space: ``logit_te = <w_{k(t)} * x_t, r_e>``.

    Each token is scaled by the feature weights of the cluster it was sent to
    in the previous layer (``previous``: its top-1 expert there, ``k(t)``), then
    scored by the linear router ``router_weight`` (``[E, d]``, no bias) as in
    the paper. All-ones weights give the base router's logits ``x @ router_weight.T``.
    """
    return (tokens * feature_weights[previous]) @ router_weight.T
