"""Information-theoretic generalisation bounds and the Gibbs posterior.

A learning algorithm turns a training set ``S`` of ``m`` examples into a
hypothesis ``W``. Xu & Raginsky (NeurIPS 2017) showed that the less ``W``
reveals about ``S`` the less it can overfit: if the loss of every fixed
hypothesis is ``sigma``-sub-Gaussian (a loss with values in ``[0, 1]`` is
``1/2``-sub-Gaussian, hence the default ``sigma = 0.5``), the expected gap
between test and training loss is at most ``sqrt(2 sigma^2 I(S;W) / m)``.

Units: **the mutual information must be in nats** (natural logarithms), as
in the sub-Gaussian moment bound the formula comes from. A value in bits is
converted with ``nats = bits * math.log(2)``, or computed in nats directly
with ``mixture_mutual_information(rows, base=math.e)``. The bounds are in
the units of the loss.

With ``K`` hypotheses ``I(S;W) <= H(W) <= ln K``, which gives
:func:`union_bound`, the familiar ``sqrt(ln K / (2 m))`` for losses in
``[0, 1]``. The *Gibbs posterior* ``q(w|S) ∝ prior(w) exp(-alpha L_S(w))``
(:func:`gibbs_posterior`) interpolates between ignoring the data
(``alpha = 0``, ``I = 0``) and picking the empirical risk minimiser (large
``alpha``); with rows for several resampled training sets, the finite-bank
estimate ``Î(S;W)`` is ``mixture_mutual_information`` of those rows.

For the Gibbs rule the expected gap is known exactly (Aminian et al., 2021):
``alpha * E[L_D(W) - L_S(W)] = I_SKL(S;W)``, the *symmetrised KL
information* ``D(P_SW || P_S P_W) + D(P_S P_W || P_SW)``
(:func:`symmetrized_kl_information`). With ``S`` uniform over ``n`` drawn
training sets (rows ``q_i``, mean row ``q̄``, losses ``L_i``, mean loss
``L̄``) it reads ``alpha * (q̄ · L̄ - mean_i q_i · L_i) = I_SKL`` exactly, for
any ``n``: the population loss is then the mean of the training losses.
With the population loss of the data distribution in place of ``L̄`` it holds
only in expectation over the drawn sets, not for one draw.

The plug-in ``Î = H(q̄) - mean_i H(q_i) = mean_i D(q_i || q̄)`` is a mean over
the drawn sets; :func:`mixture_information_se` is its Monte Carlo standard
error by the delta method: the linearised contribution of set ``i`` is
``D(q_i || q̄) - Î``, so the standard error is the standard deviation of the
``D(q_i || q̄)`` over ``sqrt(n)``. (The plug-in is biased low: ``q̄`` is the
centre that minimises ``mean_i D(q_i || r)`` over ``r``; the bias is of order
``1/n``.)

>>> import math
>>> round(union_bound(16, m=1000), 6)  # sqrt(ln 16 / 2000)
0.037233
>>> union_bound(16, m=1000) == xu_raginsky_bound(math.log(16), m=1000)
True
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import logsumexp

from innet.info._validate import as_float_array, as_positive_number, as_stochastic

__all__ = [
    "xu_raginsky_bound",
    "union_bound",
    "gibbs_posterior",
    "symmetrized_kl_information",
    "mixture_information_se",
]


def xu_raginsky_bound(mutual_information_nats: float, m: int, sigma: float = 0.5) -> float:
    """``sqrt(2 sigma^2 I / m)``: bound on the expected generalisation gap.

    ``mutual_information_nats``: ``I(S;W)`` **in nats** (``>= 0``); ``m``:
    the number of training examples; ``sigma``: the sub-Gaussian parameter of
    the loss (0.5 for a loss in ``[0, 1]``). The result is in units of the
    loss.

    >>> round(xu_raginsky_bound(0.5, m=100), 6)  # sqrt(2 * 0.25 * 0.5 / 100)
    0.05
    >>> xu_raginsky_bound(0.0, m=10)
    0.0
    """
    information = as_positive_number(
        mutual_information_nats, "mutual_information_nats", allow_zero=True
    )
    examples = _as_count(m, "m")
    scale = as_positive_number(sigma, "sigma")
    return math.sqrt(2.0 * scale**2 * information / examples)


def union_bound(K: int, m: int, sigma: float = 0.5) -> float:  # noqa: N803 (K as in the papers)
    """``sqrt(2 sigma^2 ln K / m)``: the bound above with ``I(S;W) <= ln K`` (nats).

    For ``K`` hypotheses; ``K = 1`` gives 0.

    >>> union_bound(1, m=50)
    0.0
    >>> round(union_bound(2, m=2, sigma=1.0), 6)  # sqrt(ln 2)
    0.832555
    """
    hypotheses = _as_count(K, "K")
    return xu_raginsky_bound(math.log(hypotheses), m, sigma)


def gibbs_posterior(
    losses: ArrayLike, alpha: float, prior: ArrayLike | None = None
) -> NDArray[np.float64]:
    """``q(w|S) ∝ prior(w) exp(-alpha L_S(w))``, one row per training set.

    ``losses``: a vector of ``K`` empirical losses ``L_S(w)`` (one training
    set) or an ``n x K`` matrix (row ``i`` for training set ``S_i``);
    ``alpha >= 0``: the inverse temperature; ``prior``: a distribution over
    the ``K`` hypotheses (uniform when ``None``). Returns an array of the
    shape of ``losses`` whose rows sum to 1, normalised with log-sum-exp so
    that large ``alpha * L`` neither overflows nor underflows to all zeros.

    >>> gibbs_posterior([0.0, 1.0], alpha=math.log(3)).tolist()  # odds 3 : 1
    [0.75, 0.25]
    >>> gibbs_posterior([[0.0, 1.0], [1.0, 0.0]], alpha=1e4).round(6).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    >>> from innet.info.entropy import mixture_mutual_information
    >>> float(mixture_mutual_information(gibbs_posterior([[0.0, 1.0], [1.0, 0.0]], alpha=1e4)))
    1.0
    """
    table = as_float_array(losses, "losses", ndim=(1, 2))
    strength = as_positive_number(alpha, "alpha", allow_zero=True)
    k = table.shape[-1]
    if prior is None:
        log_prior = np.full(k, -math.log(k))
    else:
        weights = as_stochastic(prior, "prior", ndim=(1,))
        if weights.shape[0] != k:
            raise ValueError(
                f"prior must have one entry per hypothesis ({k}), got {weights.shape[0]}"
            )
        with np.errstate(divide="ignore"):
            log_prior = np.log(weights)
    logits = log_prior - strength * table
    return np.exp(logits - logsumexp(logits, axis=-1, keepdims=True))


def _as_count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def symmetrized_kl_information(rows: ArrayLike, *, base: float = 2) -> float:
    """``D(P_SW || P_S P_W) + D(P_S P_W || P_SW)`` for ``S`` uniform over the rows.

    ``rows``: an ``n x K`` matrix, row ``i`` the distribution ``q(w|S_i)``.
    Equals ``mean_i sum_w (q_i(w) - q̄(w)) log(q_i(w) / q̄(w))`` with ``q̄``
    the mean row; ``inf`` when a row has a zero where ``q̄`` has mass. Units
    of ``base`` (bits by default; ``math.e`` for nats).

    >>> symmetrized_kl_information([[0.5, 0.5], [0.5, 0.5]])
    0.0
    >>> rows = gibbs_posterior([[0.0, 1.0], [1.0, 0.0]], alpha=math.log(3))  # [.75 .25], [.25 .75]
    >>> gap = 0.5 - 0.25  # q̄ · L̄ - mean_i q_i · L_i
    >>> round(symmetrized_kl_information(rows, base=math.e), 6), round(math.log(3) * gap, 6)
    (0.274653, 0.274653)
    """
    probs = as_stochastic(rows, "rows", ndim=(2,))
    log_base = math.log(as_positive_number(base, "base"))
    mean = probs.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = (probs - mean) * (np.log(probs) - np.log(mean))
    terms = np.where(probs == mean, 0.0, terms)  # both zero: no contribution
    return float(max(terms.sum(axis=1).mean(), 0.0) / log_base)


def mixture_information_se(rows: ArrayLike, *, base: float = 2) -> float:
    """Monte Carlo standard error of ``Î = H(mean rows) - mean H(rows)`` over the rows.

    ``rows``: an ``n x K`` matrix, row ``i`` the distribution ``q(w|S_i)`` of
    an independently drawn training set ``S_i`` (``n >= 2``). Delta method:
    ``std_i D(q_i || q̄) / sqrt(n)`` (ddof = 1), ``q̄`` the mean row, in units
    of ``base`` (bits by default; ``math.e`` for nats). 0 when every row is
    the same.

    >>> mixture_information_se([[0.5, 0.5], [0.5, 0.5]])
    0.0
    >>> round(mixture_information_se([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]), 12)
    0.0
    >>> # q̄ = (3/4, 1/4): D(q_1 || q̄) = ln(4/3), D(q_2 || q̄) = ln(4/3) / 2, SE = ln(4/3) / 4
    >>> round(mixture_information_se([[1.0, 0.0], [0.5, 0.5]], base=math.e), 6)
    0.071921
    """
    probs = as_stochastic(rows, "rows", ndim=(2,))
    n = probs.shape[0]
    if n < 2:
        raise ValueError(f"rows must hold at least two distributions for a standard error, got {n}")
    log_base = math.log(as_positive_number(base, "base"))
    mean = probs.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probs > 0, probs * (np.log(probs) - np.log(mean)), 0.0)
    divergences = terms.sum(axis=1)
    return float(divergences.std(ddof=1) / math.sqrt(n) / log_base)
