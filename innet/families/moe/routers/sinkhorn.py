"""``sinkhorn``: balanced assignment by Sinkhorn with uniform marginals (:func:`sinkhorn`),
top-k of the plan's rows; selection only (no balance state)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import logsumexp

from innet.families.moe.routers.base import ROUTERS, Router, topk

__all__ = ["SinkhornRouter", "balanced_choice", "sinkhorn"]


@ROUTERS.register("sinkhorn")
class SinkhornRouter(Router):
    """Top-k of the Sinkhorn plan over every source's tokens at once."""

    def select(
        self, layer: int, logits: list[torch.Tensor], step: int | None
    ) -> list[torch.Tensor]:
        return balanced_choice([x.detach() for x in logits], self.top_k)


def balanced_choice(scores: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Every source's ``k`` experts per token: top-k of the rows of the Sinkhorn plan of all
    the sources' ``scores`` together."""
    joint = torch.cat(scores)
    if joint.shape[0] == 0:
        return [torch.zeros(0, k, dtype=torch.long) for _ in scores]
    plan = torch.as_tensor(sinkhorn(joint.double().numpy()))
    return list(torch.split(topk(plan, k), [x.shape[0] for x in scores]))


def sinkhorn(scores: np.ndarray, iterations: int = 200, tol: float = 1e-9) -> np.ndarray:
    """The balanced transport plan between ``T`` tokens and ``E`` experts.

    ``scores`` are log-affinities ``[T, E]``; the plan is
    ``diag(u) exp(scores) diag(v)`` with row sums ``1/T`` and column sums
    ``1/E`` (uniform marginals), i.e. the entropic optimal transport plan for the
    cost ``-scores`` at regularisation 1 (POT's ``ot.sinkhorn(a, b, -scores, 1)``).
    Computed in log space (stable for large scores).

    >>> plan = sinkhorn(np.log([[4.0, 1.0], [1.0, 4.0], [2.0, 2.0], [1.0, 1.0]]))
    >>> np.allclose(plan.sum(axis=0), 0.5), np.allclose(plan.sum(axis=1), 0.25)
    (True, True)
    """
    scores = np.asarray(scores, dtype=np.float64)
    t, e = scores.shape
    log_a, log_b = -np.log(t), -np.log(e)
    f = np.zeros(t)
    g = np.zeros(e)
    for _ in range(iterations):
        f = log_a - logsumexp(scores + g[None, :], axis=1)
        g_new = log_b - logsumexp(scores + f[:, None], axis=0)
        done = np.max(np.abs(g_new - g)) < tol
        g = g_new
        if done:
            break
    return np.exp(scores + f[:, None] + g[None, :])
