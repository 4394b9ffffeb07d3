"""Routers: which experts each token goes to, and with what gate weight.

A router sees the scores of ``T`` tokens over ``E`` experts and picks ``k``
experts per token. Every router here returns the chosen experts (``[T, k]``
indices) and their gate weights (the softmax probabilities of the chosen
experts, so gradients reach the router through the weights; selection itself
has no gradient). What differs is how they choose:

- ``topk``: the ``k`` most probable experts; trained with the Switch/GShard
  auxiliary loss :func:`switch_loss`.
- ``bias``: loss-free balancing, top-k of ``logits + b`` where
  ``b_i += u * sign(mean load - load_i)`` after each step (:func:`bias_update`).
- ``ta``: topology-weighted auxiliary loss (TA-MoE style,
  :func:`switch_loss` with per-expert weights: the dispatch cost from the
  token's source, normalised to mean 1).
- ``capped``: at most a fraction ``cap`` of a source's tokens leave its group
  (FasterMoE style, :func:`cap_remote`).
- ``group_limited``: each token's experts lie in at most ``M`` groups
  (:func:`group_limited_mask`).
- ``sinkhorn``: balanced assignment by Sinkhorn with uniform marginals
  (:func:`sinkhorn`), top-k of the plan's rows; selection only.
- ``carl``: communication-aware utilities ``logit - lambda * cost - b`` with
  adaptive expert- and group-level balance biases (:mod:`.balance`), a
  Sinkhorn warm start and periodic re-placement (see the trainer).
- ``ac``: the adaptive-clustering router (:func:`ac_weights`): token features
  weighted per expert before scoring, normalised as the public ACMoE code does.

>>> import torch
>>> probs = torch.full((8, 4), 0.25)
>>> round(float(switch_loss(probs, torch.arange(8).remainder(4)[:, None], 4)), 6)
1.0
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "ROUTERS",
    "switch_loss",
    "topk",
    "sinkhorn",
    "bias_update",
    "group_limited_mask",
    "cap_remote",
    "ac_weights",
    "ac_logits",
    "load",
]

ROUTERS = ("topk", "bias", "ta", "capped", "group_limited", "sinkhorn", "carl", "ac")
"""Every router kind a variant may name (``router.kind``)."""


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
        f = log_a - _logsumexp(scores + g[None, :], axis=1)
        g_new = log_b - _logsumexp(scores + f[:, None], axis=0)
        done = np.max(np.abs(g_new - g)) < tol
        g = g_new
        if done:
            break
    return np.exp(scores + f[:, None] + g[None, :])


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    from scipy.special import logsumexp

    return logsumexp(x, axis=axis)


def bias_update(bias: np.ndarray, counts: np.ndarray, rate: float) -> np.ndarray:
    """Loss-free balancing: ``b_i + rate * sign(mean load - load_i)``.

    >>> bias_update(np.zeros(3), np.array([5, 1, 3]), 0.1).tolist()
    [-0.1, 0.1, 0.0]
    """
    return bias + rate * np.sign(counts.mean() - counts)


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
