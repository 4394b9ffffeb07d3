"""Item 6: the finite-rate gating bound on a synthetic K-expert Gaussian mixture.

The bound ``E[R(W)] <= D(R_g) + delta_m + sqrt((2/m) I(S;W))`` comes from an
abstract only; every quantity below is our own definition.

**Task.** Inputs ``x`` in the plane come from a mixture of ``K`` unit
Gaussians whose centres ``mu_k`` lie on a circle of radius ``separation``.
Expert ``k`` is a specialist of component ``k``: its loss on ``x`` is
``l(x, k) = 1 - exp(-|x - mu_k|^2 / 2)``, in [0, 1). The population is
``population`` samples drawn once; every population quantity is an exact
mean over it.

**Gates.** A gate with codebook ``c`` (one point per expert) at temperature
``tau`` routes ``x`` to expert ``k`` with probability ``p(k|x) =
softmax_k(-|x - c_k|^2 / tau)``. Its rate ``R_g = I(X;T)`` (bits) is
:func:`~innet.info.mixture_mutual_information` of the rows ``p(.|x)`` over
the population; its risk ``R(c) = E_x sum_k p(k|x) l(x, k)``. The
temperature sets the rate: the sweep's rate axis.

**Learning.** ``W`` is the gate learned from a training set ``S`` of ``m``
samples: a Gibbs choice (strength ``alpha``) among ``candidates`` codebooks,
the true centres moved by random offsets of growing size (the first is
exact). ``q(W|S) ∝ exp(-alpha R_S(W))`` with ``R_S`` the risk on ``S``;
``Î(S;W)`` is :func:`~innet.info.mixture_mutual_information` of ``q`` over
``resamples`` sets.

**The terms, per cell (tau, m).** Every expectation is a mean over the
``resamples`` drawn sets ``S_i``; beside each ``S_i`` a *held-out* set
``V_i`` of ``m`` samples is drawn from the population independently (with its
own generator), which the selection never sees.

- ``expected_risk``: ``E[R(W)] = mean_i sum_w q(w|S_i) R(w)``;
- ``train_risk``: ``E[R_S(W)] = mean_i sum_w q(w|S_i) R_{S_i}(w)``;
- ``rate_bits``: ``R_g = mean_i sum_w q(w|S_i) R_g(w)``, the expected rate of
  the learned gate;
- ``distortion_rate``: ``D(R_g)``, a certified lower bound from the
  Blahut–Arimoto curve of the population with distortion ``l``
  (:func:`~innet.info.distortion_lower_bound`); since ``D`` is convex and
  every gate is a test channel, ``D(R_g) <= E[R(W)]`` always (``achievable``);
- ``heldout_risk``: ``mean_i min_w R_{V_i}(w)``, the best candidate's risk on
  ``m`` held-out samples: what the gate family reaches from ``m`` samples the
  selection never saw;
- ``delta_m = heldout_risk - D(R_g)``: what the family, seen through ``m``
  samples, gives away to the best channel of rate ``R_g``;
- ``mi_nats`` ``Î(S;W)`` (nats) with ``mi_se``, its Monte Carlo standard error;
  ``sqrt_term``: :func:`~innet.info.xu_raginsky_bound` ``sqrt(2 sigma^2 Î /
  m)`` with ``sigma = 1/2`` (the loss lies in [0, 1]);
- ``bound = D(R_g) + delta_m + sqrt_term``, ``margin = bound -
  expected_risk`` with ``margin_se`` (the standard error over the sets of
  ``min_w R_{V_i}(w) - sum_w q(w|S_i) R(w)``; Î's own error is apart, in
  ``mi_se``) and ``holds`` (``margin >= 0``);
- the Xu–Raginsky step alone: ``xr_gap = E[R(W)] - E[R_S(W)]`` with
  ``xr_gap_se`` and ``xr_step_holds`` (``xr_gap <= sqrt_term``);
- ``gibbs_slack = E[R_S(W)] - mean_i min_w R_{S_i}(w) >= 0``: how far the
  soft choice's training risk lies above the empirical best's.

**What is an identity and what is tested.** ``D(R_g)`` cancels:
``D(R_g) + delta_m = heldout_risk`` by definition, so the bound says
``E[R(W)] <= mean_i min_w R_{V_i}(w) + sqrt_term``: the rate acts through
the gates compared, but ``D(R_g)`` plays no part in whether the bound holds.
That is a claim the data can refute. Since ``V_i`` and
``S_i`` are alike, ``E[min_w R_{V}(w)] = E[min_w R_S(w)]``, and
``E[R(W)] - heldout_risk`` is ``xr_gap + gibbs_slack`` up to the held-out
sets' sampling error: the bound holds for the empirical risk minimiser
(``gibbs_slack = 0``) by the Xu–Raginsky theorem and fails when the soft
choice's slack exceeds what is left of ``sqrt_term`` (``alpha = 0``:
``Î = 0``, the uniform choice's risk is the candidates' mean). The former
definition ``delta_m = E[R_S(W)] - D(R_g)`` made the bound the Xu–Raginsky
step itself (``xr_step_holds``), a theorem about the true ``I(S;W)``: checked
here with Î in its place, it can fail only through Î's and the gap's
sampling error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import softmax

from innet.families.finite_bank.config import GatingBoundConfig
from innet.info import (
    RateDistortionCurve,
    distortion_lower_bound,
    gibbs_posterior,
    mixture_mutual_information,
    rate_distortion_curve,
    xu_raginsky_bound,
)
from innet.info.bounds import mixture_information_se

__all__ = ["SIGMA", "GaussianMixtureTask", "make_task", "bound_cells"]

SIGMA = 0.5
"""Sub-Gaussian parameter of a loss with values in [0, 1] (Hoeffding)."""


class GaussianMixtureTask:
    """The synthetic task: population, expert losses, candidate codebooks, the D(R) curve."""

    def __init__(self, config: GatingBoundConfig, rng: np.random.Generator) -> None:
        k = config.experts
        angles = 2 * math.pi * np.arange(k) / k
        self.centres = config.separation * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        component = rng.integers(0, k, size=config.population)
        self.x = self.centres[component] + rng.standard_normal((config.population, 2))
        distances = ((self.x[:, None, :] - self.centres[None]) ** 2).sum(axis=-1)
        self.losses: NDArray[np.float64] = 1.0 - np.exp(-distances / 2.0)  # [n, K]
        offsets = rng.standard_normal((config.candidates, k, 2))
        scales = np.linspace(0.0, config.separation, config.candidates)[:, None, None]
        self.codebooks = self.centres[None] + scales * offsets  # [G, K, 2]
        n = config.population
        self.curve: RateDistortionCurve = rate_distortion_curve(
            np.full(n, 1.0 / n), self.losses, config.slopes, tol=1e-9, max_iter=20_000
        )

    def gates(self, tau: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Per candidate gate at ``tau``: per-sample risks ``[G, n]`` and rates in bits ``[G]``."""
        risks, rates = [], []
        for codebook in self.codebooks:
            scores = -((self.x[:, None, :] - codebook[None]) ** 2).sum(axis=-1) / tau
            routing = softmax(scores, axis=1)
            risks.append((routing * self.losses).sum(axis=1))
            rates.append(mixture_mutual_information(routing))
        return np.array(risks), np.array(rates)


def make_task(config: GatingBoundConfig, seed: int) -> GaussianMixtureTask:
    """The task of ``config`` drawn with ``seed``."""
    return GaussianMixtureTask(config, np.random.default_rng([seed, 6]))


def bound_cells(
    task: GaussianMixtureTask,
    temperatures: Sequence[float],
    sample_sizes: Sequence[int],
    *,
    alpha: float,
    resamples: int,
    rng: np.random.Generator,
    heldout_rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """One row per ``(tau, m)`` with every term of the bound (see the module docstring).

    ``rng`` draws the training sets, ``heldout_rng`` the held-out ones (a
    generator of its own, so the training sets do not depend on it).
    """
    n = task.x.shape[0]
    rows = []
    for tau in temperatures:
        risks, rates = task.gates(tau)
        for m in sample_sizes:
            train = risks[:, rng.integers(0, n, size=(resamples, m))].mean(axis=2).T
            heldout = risks[:, heldout_rng.integers(0, n, size=(resamples, m))].mean(axis=2).T
            row = _cell(task, train, heldout, risks.mean(axis=1), rates, alpha, m)
            rows.append({"tau": float(tau), "m": int(m), **row})
    return rows


def _mean_se(values: NDArray[np.float64]) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def _cell(
    task: GaussianMixtureTask,
    train: NDArray[np.float64],
    heldout: NDArray[np.float64],
    population_risk: NDArray[np.float64],
    rates: NDArray[np.float64],
    alpha: float,
    m: int,
) -> dict[str, Any]:
    """The terms of one cell from the ``[resamples, G]`` training and held-out risks."""
    q = gibbs_posterior(train, alpha)
    chosen_risk = q @ population_risk  # [resamples]: R(W) of each set's choice
    chosen_train = (q * train).sum(axis=1)
    best_heldout = heldout.min(axis=1)
    expected_risk = float(chosen_risk.mean())
    heldout_risk = float(best_heldout.mean())
    rate_bits = float((q @ rates).mean())
    distortion = distortion_lower_bound(task.curve, rate_bits)
    mi_nats = mixture_mutual_information(q, base=math.e)
    sqrt_term = xu_raginsky_bound(mi_nats, m, SIGMA)
    delta = heldout_risk - distortion
    bound = distortion + delta + sqrt_term
    _, margin_se = _mean_se(best_heldout - chosen_risk)
    xr_gap, xr_gap_se = _mean_se(chosen_risk - chosen_train)
    return {
        "rate_bits": rate_bits,
        "expected_risk": expected_risk,
        "train_risk": float(chosen_train.mean()),
        "heldout_risk": heldout_risk,
        "distortion_rate": distortion,
        "delta_m": delta,
        "mi_nats": mi_nats,
        "mi_se": mixture_information_se(q, base=math.e),
        "sqrt_term": sqrt_term,
        "bound": bound,
        "margin": bound - expected_risk,
        "margin_se": margin_se,
        "holds": bool(expected_risk <= bound),
        "xr_gap": xr_gap,
        "xr_gap_se": xr_gap_se,
        "xr_step_holds": bool(xr_gap <= sqrt_term),
        "gibbs_slack": float((chosen_train - train.min(axis=1)).mean()),
        "achievable": bool(distortion <= expected_risk),
    }
