"""Entropy and mutual information of finite distributions.

The entropy ``H(p) = -sum_k p_k log p_k`` of a distribution is the average
number of bits (base 2) needed to name an outcome drawn from it; ``0 log 0``
counts as 0, so impossible outcomes cost nothing.

Mutual information measures how much one variable tells about another. The
workhorse here is :func:`mixture_mutual_information`: given rows ``p_i`` (one
distribution over ``K`` outcomes per "input" ``i``) and weights ``w_i`` (how
often each input occurs), it returns ``H(sum_i w_i p_i) - sum_i w_i H(p_i)``,
the information that the outcome carries about which input produced it.
The same estimator serves three quantities in innet; only what is averaged
over changes:

- the discrete gate's rate ``I(X;T)``: rows are ``p(t|x)`` for each sample
  ``x`` of a batch, equal weights;
- ``I(X;Y)`` of a channel used with input distribution ``w``: rows are
  ``p(y|x)``, weights are ``p(x)`` (see :func:`mutual_information` for a
  joint table);
- the finite-bank ``Î(S;W)`` between a training set and the hypothesis
  learned from it: rows are ``q(w|S)`` for each resampled training set ``S``
  (e.g. from :func:`innet.info.bounds.gibbs_posterior`), equal weights.

>>> import numpy as np
>>> float(entropy([0.5, 0.5]))
1.0
>>> float(mixture_mutual_information(np.eye(4)))  # four inputs, told apart perfectly
2.0
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from innet.info._validate import as_float_array, as_stochastic, log_of_base

__all__ = ["entropy", "kl_divergence", "mixture_mutual_information", "mutual_information"]


def entropy(p: ArrayLike, base: float = 2) -> float | NDArray[np.float64]:
    """Shannon entropy of a distribution, or of each row of a matrix, in units of ``base``.

    ``p`` is a probability vector (returns a float) or a matrix whose rows are
    probability vectors (returns one entropy per row). ``0 log 0 = 0``.
    ``base=2`` gives bits, ``base=math.e`` nats. Entries must be non-negative
    and each distribution must sum to 1 (within 1e-5; it is then renormalised).

    >>> float(entropy([0.25, 0.25, 0.5]))
    1.5
    >>> entropy([[1.0, 0.0], [0.5, 0.5]]).tolist()
    [0.0, 1.0]
    >>> round(float(entropy([0.5, 0.5], base=math.e)), 6)  # ln 2
    0.693147
    """
    log_base = log_of_base(base)
    probs = as_stochastic(p, "p")
    nats = -_xlogx(probs).sum(axis=-1)
    # -sum p log p >= 0 holds exactly; float error can only make it a tiny negative.
    result = np.maximum(nats, 0.0) / log_base
    return float(result) if probs.ndim == 1 else result


def kl_divergence(p: ArrayLike, q: ArrayLike, base: float = 2) -> float | NDArray[np.float64]:
    """Relative entropy ``D(p || q) = sum_k p_k log(p_k / q_k)`` in units of ``base``.

    ``p`` and ``q`` are probability vectors of the same length (returns a
    float) or matrices of the same shape (returns one divergence per row). The
    result is ``inf`` when ``p`` puts mass where ``q`` has none.

    >>> float(kl_divergence([0.5, 0.5], [0.5, 0.5]))
    0.0
    >>> float(kl_divergence([1.0, 0.0], [0.5, 0.5]))
    1.0
    >>> float(kl_divergence([0.5, 0.5], [1.0, 0.0]))
    inf
    """
    log_base = log_of_base(base)
    pp = as_stochastic(p, "p")
    qq = as_stochastic(q, "q")
    if pp.shape != qq.shape:
        raise ValueError(f"p and q must have the same shape, got {pp.shape} and {qq.shape}")
    nats = _relative_entropy_nats(pp, qq)
    return float(nats) / log_base if pp.ndim == 1 else nats / log_base


def mixture_mutual_information(
    rows: ArrayLike, weights: ArrayLike | None = None, *, base: float = 2
) -> float:
    """``H(sum_i w_i p_i) - sum_i w_i H(p_i)``: what an outcome says about its row, in bits.

    ``rows`` is an ``n x K`` matrix; row ``i`` is the distribution ``p_i``
    over ``K`` outcomes when the input is ``i``. ``weights`` is the input
    distribution ``w`` (length ``n``; uniform when ``None``). The result is
    ``I(I;Y)`` for ``i ~ w`` and ``Y ~ p_i``, in units of ``base`` (bits by
    default).

    It is computed as ``sum_i w_i D(p_i || m)`` with ``m = sum_i w_i p_i``,
    which has no cancellation between two large entropies. In exact
    arithmetic the value lies in ``[0, min(log K, H(w))]`` and ``H(w) <= log
    n``; float rounding can push it a few ulps outside, so it is clipped into
    that interval (the clipping never moves it by more than rounding error).

    Rows for the discrete gate's rate are ``p(t|x)`` per sample (a torch
    tensor must be converted first: ``probs.detach().cpu().numpy()``).

    >>> import numpy as np
    >>> float(mixture_mutual_information([[0.9, 0.1], [0.9, 0.1]]))  # same row twice
    0.0
    >>> round(float(mixture_mutual_information([[0.89, 0.11], [0.11, 0.89]])), 6)  # BSC(0.11)
    0.500084
    >>> round(float(mixture_mutual_information(np.eye(3), weights=[0.5, 0.25, 0.25])), 6)
    1.5
    """
    log_base = log_of_base(base)
    probs = as_stochastic(rows, "rows", ndim=(2,))
    n, k = probs.shape
    if weights is None:
        w = np.full(n, 1.0 / n)
    else:
        w = as_stochastic(weights, "weights", ndim=(1,))
        if w.shape[0] != n:
            raise ValueError(f"weights must have one entry per row ({n}), got {w.shape[0]}")
        keep = w > 0  # rows that never occur contribute nothing (and could make m zero)
        probs, w = probs[keep], w[keep]
    nats = float(w @ _divergences_from_mixture(probs, w))
    ceiling = min(math.log(k), float(-_xlogx(w).sum()))
    return min(max(nats, 0.0), max(ceiling, 0.0)) / log_base


def mutual_information(joint: ArrayLike, base: float = 2) -> float:
    """``I(X;Y)`` of a joint distribution table ``joint[x, y]``, in units of ``base``.

    The table must be non-negative and sum to 1 (within 1e-5) as a whole. This
    is :func:`mixture_mutual_information` with rows ``p(y|x)`` and weights
    ``p(x)``.

    >>> float(mutual_information([[0.5, 0.0], [0.0, 0.5]]))
    1.0
    >>> float(mutual_information([[0.25, 0.25], [0.25, 0.25]]))
    0.0
    """
    table = as_float_array(joint, "joint", ndim=(2,))
    try:
        flat = as_stochastic(table.ravel(), "joint (all entries together)", ndim=(1,))
    except ValueError as error:
        raise ValueError(str(error).replace("a probability vector", "a joint table")) from None
    table = flat.reshape(table.shape)
    p_x = table.sum(axis=1)
    used = p_x > 0
    rows = table[used] / p_x[used, None]
    return mixture_mutual_information(rows, p_x[used], base=base)


def _xlogx(p: NDArray[np.float64]) -> NDArray[np.float64]:
    """``p * ln p`` elementwise, with ``0 ln 0 = 0``."""
    safe = np.where(p > 0, p, 1.0)
    return np.where(p > 0, p * np.log(safe), 0.0)


def _relative_entropy_nats(p: NDArray[np.float64], q: NDArray[np.float64]) -> NDArray[np.float64]:
    """``sum_k p_k ln(p_k / q_k)`` along the last axis (``inf`` where ``p > 0 = q``)."""
    positive = p > 0
    with np.errstate(divide="ignore"):
        log_ratio = np.log(np.where(positive, p, 1.0)) - np.log(np.where(positive, q, 1.0))
    return np.where(positive, p * log_ratio, 0.0).sum(axis=-1)


def _divergences_from_mixture(
    rows: NDArray[np.float64], weights: NDArray[np.float64]
) -> NDArray[np.float64]:
    """``D(rows_i || m)`` in nats for each row, where ``m = weights @ rows``.

    Since ``m_k >= w_i p_ik``, each log ratio ``ln(p_ik / m_k)`` is at most
    ``-ln w_i``. Clamping it there changes nothing in exact arithmetic but
    keeps the result finite when ``w_i p_ik`` underflows to 0 in ``m`` while
    ``p_ik`` itself is a (denormal) positive number.
    """
    mixture = weights @ rows
    positive = rows > 0
    with np.errstate(divide="ignore"):
        log_ratio = np.log(np.where(positive, rows, 1.0)) - np.log(np.where(positive, mixture, 1.0))
        cap = -np.log(weights)[:, None]  # +inf for a zero weight: no cap
    return np.where(positive, rows * np.minimum(log_ratio, cap), 0.0).sum(axis=-1)
