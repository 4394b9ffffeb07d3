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

**The terms, per cell (tau, m).**

- ``expected_risk``: ``E[R(W)] = mean_i sum_w q(w|S_i) R(w)``;
- ``rate_bits``: ``R_g = mean_i sum_w q(w|S_i) R_g(w)``, the expected rate of
  the learned gate;
- ``distortion_rate``: ``D(R_g)``, a certified lower bound from the
  Blahut–Arimoto curve of the population with distortion ``l``
  (:func:`~innet.info.distortion_lower_bound`); since ``D`` is convex and
  every gate is a test channel, ``D(R_g) <= E[R(W)]`` always;
- ``delta_m``: ``E[R_S(W)] - D(R_g)``, the learned gate's *training* risk
  above the rate–distortion function at its rate (what a gate of this
  family, chosen on ``m`` samples, gives away to the best channel of that
  rate; it may be negative when training risk is optimistic);
- ``sqrt_term``: ``sqrt((2/m) Î(S;W))``, ``Î`` in nats (the bound's constant
  is that of a 1-sub-Gaussian loss; ours, in [0, 1], is 1/2-sub-Gaussian,
  so the term is twice the Xu–Raginsky bound);
- ``bound = D(R_g) + delta_m + sqrt_term`` and ``holds``.

With this ``delta_m`` the inequality is equivalent to ``E[R(W)] -
E[R_S(W)] <= sqrt((2/m) Î)``: what the experiment tests is the
information-theoretic step, with the estimate ``Î`` in place of ``I``.
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
)

__all__ = ["GaussianMixtureTask", "make_task", "bound_cells"]


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
) -> list[dict[str, Any]]:
    """One row per ``(tau, m)`` with every term of the bound (see the module docstring)."""
    n = task.x.shape[0]
    rows = []
    for tau in temperatures:
        risks, rates = task.gates(tau)
        population_risk = risks.mean(axis=1)
        for m in sample_sizes:
            draws = rng.integers(0, n, size=(resamples, m))
            train = risks[:, draws].mean(axis=2).T  # [resamples, G]
            q = gibbs_posterior(train, alpha)
            expected_risk = float((q @ population_risk).mean())
            train_risk = float((q * train).sum(axis=1).mean())
            rate_bits = float((q @ rates).mean())
            distortion = distortion_lower_bound(task.curve, rate_bits)
            mi_nats = mixture_mutual_information(q, base=math.e)
            sqrt_term = math.sqrt(2.0 * mi_nats / m)
            delta = train_risk - distortion
            bound = distortion + delta + sqrt_term
            rows.append(
                {
                    "tau": float(tau),
                    "m": int(m),
                    "rate_bits": rate_bits,
                    "expected_risk": expected_risk,
                    "train_risk": train_risk,
                    "distortion_rate": distortion,
                    "delta_m": delta,
                    "mi_nats": mi_nats,
                    "sqrt_term": sqrt_term,
                    "bound": bound,
                    "holds": bool(expected_risk <= bound),
                    "achievable": bool(distortion <= expected_risk),
                }
            )
    return rows
