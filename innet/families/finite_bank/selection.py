"""Item 4: how much a Gibbs selection over the bank learns about its training set.

The *population* is the bank's pool: ``losses[x, k]``, the loss (in [0, 1])
of expert ``k`` on pool sample ``x``, and the population loss ``L_D(k)`` is
its mean over the pool, exactly. A training set ``S`` is ``m`` samples drawn
from the pool with replacement; ``L_S(k)`` is the mean over ``S``. The
selection rule is the Gibbs posterior ``q(k|S) ∝ exp(-alpha L_S(k))``
(:func:`innet.info.gibbs_posterior`): ``alpha = 0`` ignores the data, large
``alpha`` picks the empirical best.

For each ``(m, alpha)`` cell, over ``n`` resampled training sets ``S_i``:

- ``mi_nats``: ``Î(S;W)``, :func:`~innet.info.mixture_mutual_information` of
  the rows ``q(.|S_i)``, in nats, and ``mi_se``, its Monte Carlo standard
  error over the sets (:func:`~innet.info.bounds.mixture_information_se`);
- ``gap``: the generalisation gap ``mean_i sum_k q(k|S_i) (L_D(k) -
  L_{S_i}(k))`` and ``gap_se``, the standard error of that mean over the sets;
- ``xu_raginsky`` ``sqrt(2 sigma^2 Î / m)`` and ``union`` ``sqrt(2 sigma^2 ln
  K / m)`` with ``sigma = 1/2`` (a loss in [0, 1]), and the looseness ratios
  ``bound / gap`` (None where ``gap <= 0``);
- the Gibbs identity: ``alpha * gap_resampled = skl_nats`` where
  ``skl_nats`` is the symmetrised KL information with ``S`` uniform over the
  drawn sets (:func:`~innet.info.symmetrized_kl_information`) and
  ``gap_resampled`` the gap with the population loss replaced by the mean of
  the drawn sets' losses (their own population); ``identity_error`` is
  ``|alpha * gap_resampled - skl_nats|``. It is exact *only* with that
  resampled population loss; with the pool's loss ``L_D`` (``gap``) it holds
  in expectation, not for one draw of the sets. As the number of sets grows
  ``gap_resampled`` tends to ``gap``.

>>> losses = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
>>> rows = selection_cells(losses, [0.0, 5.0], [4], resamples=50, rng=np.random.default_rng(0))
>>> rows[0]["mi_nats"], rows[1]["mi_nats"] > 0
(0.0, True)
>>> all(row["identity_error"] < 1e-12 for row in rows)
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from innet.info import (
    gibbs_posterior,
    mixture_mutual_information,
    symmetrized_kl_information,
    union_bound,
    xu_raginsky_bound,
)
from innet.info.bounds import mixture_information_se

__all__ = ["SIGMA", "selection_cells"]

SIGMA = 0.5
"""Sub-Gaussian parameter of a loss with values in [0, 1]."""


def selection_cells(
    losses: NDArray[np.float64],
    alphas: Sequence[float],
    sample_sizes: Sequence[int],
    *,
    resamples: int,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """One row per ``(m, alpha)``: Î(S;W), the gap, the bounds and the Gibbs identity."""
    n_pool, k = losses.shape
    population = losses.mean(axis=0)
    rows = []
    for m in sample_sizes:
        draws = rng.integers(0, n_pool, size=(resamples, m))
        train = losses[draws].mean(axis=1)  # [resamples, K]: L_{S_i}(k)
        resampled_population = train.mean(axis=0)
        for alpha in alphas:
            q = gibbs_posterior(train, alpha)
            per_set = (q * (population - train)).sum(axis=1)
            gap = float(per_set.mean())
            gap_se = float(per_set.std(ddof=1) / math.sqrt(resamples))
            gap_resampled = float(q.mean(axis=0) @ resampled_population - (q * train).sum(1).mean())
            mi_nats = mixture_mutual_information(q, base=math.e)
            skl_nats = symmetrized_kl_information(q, base=math.e)
            xr = xu_raginsky_bound(mi_nats, m, SIGMA)
            union = union_bound(k, m, SIGMA)
            rows.append(
                {
                    "m": int(m),
                    "alpha": float(alpha),
                    "mi_nats": mi_nats,
                    "mi_se": mixture_information_se(q, base=math.e),
                    "mi_bits": mi_nats / math.log(2),
                    "gap": gap,
                    "gap_se": gap_se,
                    "train_loss": float((q * train).sum(axis=1).mean()),
                    "population_loss": float((q @ population).mean()),
                    "xu_raginsky": xr,
                    "union": union,
                    "xr_looseness": xr / gap if gap > 0 else None,
                    "union_looseness": union / gap if gap > 0 else None,
                    "gap_resampled": gap_resampled,
                    "skl_nats": skl_nats,
                    "identity_error": abs(alpha * gap_resampled - skl_nats),
                }
            )
    return rows
