"""The ``gaussian`` gate: ``t = mu(z) + sigma(z) * eps``, and everything about it.

While training, ``t = mu(z) + sigma(z) * eps`` with ``eps ~ N(0, I)``; at
evaluation ``t = mu(z)``. The log-variance is squashed smoothly into
``[-LOGVAR_BOUND, LOGVAR_BOUND]`` (``tanh``, :func:`bound_logvar`), so an
unregularised gate can neither silence its noise completely (an infinite
rate) nor drown its signal in it (exploding activations). Its training
penalty (``rate_bits``) is the mean KL divergence from ``N(mu, sigma^2)`` to
``N(0, I)`` in bits (:func:`gaussian_kl_bits`), the variational
information-bottleneck (VIB) bound, reported as ``vib_kl_bits``: it also
grows with the scale and offset of ``mu``, which carry no information. The
*reported* rate is a Monte Carlo estimate of the information of the noisy
channel's empirical mixture over a seeded subsample of ``n`` evaluation
inputs (at most ``log2 n``), inside the Kolchinsky–Tracey pairwise bracket of
the same mixture (:func:`mixture_estimate`); the moment-matched Gaussian upper
bound is kept beside them, as a loose upper bound (:mod:`innet.info.gaussian`).

The math is written once, here: the per-node :class:`GaussianGate`, the
batched executor's kernel :class:`GaussianGateKernel` and the test-only
reference model (:mod:`innet.testing.reference`) all call :func:`bound_logvar`,
:func:`gaussian_message` and :func:`gaussian_kl_bits`.

>>> gate = GaussianGate(3, generator=torch.Generator().manual_seed(0))
>>> out = gate.eval()(torch.zeros(2, 3))
>>> bool(torch.equal(out.t, out.mu)), out.sigma.shape
(True, torch.Size([2, 3]))
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from innet.families.inl.gates.base import (
    GATES,
    Gate,
    GateKind,
    GateOutput,
    RateEstimate,
    RateStats,
)
from innet.info import (
    SATURATION_MARGIN_BITS,
    RunningMoments,
    mixture_information_mc,
    pairwise_bracket,
)

__all__ = [
    "LOGVAR_BOUND",
    "MC_SAMPLES",
    "GaussianGate",
    "GaussianGateKernel",
    "GaussianKind",
    "bound_logvar",
    "bound_logvar_slope",
    "gaussian_kl_bits",
    "gaussian_message",
    "mixture_estimate",
]

_LN2 = math.log(2.0)
LOGVAR_BOUND = 6.0
"""|log sigma^2| of the Gaussian gate stays below this: sigma lies in [0.05, 20]."""
MC_SAMPLES = 4
"""Draws per input of the Monte Carlo rate estimate (:func:`~innet.info.mixture_information_mc`)."""


def bound_logvar(raw: torch.Tensor) -> torch.Tensor:
    """The Gaussian gate's log-variance: ``raw`` squashed smoothly into ``±LOGVAR_BOUND``.

    >>> float(bound_logvar(torch.tensor(1e9)))
    6.0
    """
    return LOGVAR_BOUND * torch.tanh(raw / LOGVAR_BOUND)


def bound_logvar_slope(logvar: torch.Tensor) -> torch.Tensor:
    """The derivative of :func:`bound_logvar` at the raw value that gave ``logvar``.

    ``d(b tanh(r / b)) / dr = 1 - tanh(r / b)^2 = 1 - (logvar / b)^2``.

    >>> float(bound_logvar_slope(torch.tensor(0.0)))
    1.0
    """
    return 1.0 - (logvar / LOGVAR_BOUND).square()


def gaussian_message(
    mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The noisy message ``t = mu + sigma * eps`` and ``sigma = exp(logvar / 2)``.

    >>> t, sigma = gaussian_message(torch.zeros(1), torch.zeros(1), torch.ones(1))
    >>> float(t), float(sigma)
    (1.0, 1.0)
    """
    sigma = torch.exp(0.5 * logvar)
    return mu + sigma * eps, sigma


def gaussian_kl_bits(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-sample ``KL(N(mu, exp(logvar)) || N(0, I))`` in bits, summed over the last dim.

    ``0.5 * (mu^2 + sigma^2 - 1 - ln sigma^2) / ln 2`` per dimension.

    >>> gaussian_kl_bits(torch.zeros(2, 3), torch.zeros(2, 3))
    tensor([0., 0.])
    """
    nats = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)
    return nats.sum(dim=-1) / _LN2


class GaussianGate(Gate):
    """The ``gaussian`` gate: ``t = mu + exp(logvar / 2) * eps`` (``t = mu`` in eval mode)."""

    kind = "gaussian"

    def __init__(self, dim: int, *, generator: torch.Generator) -> None:
        super().__init__()
        self.wire_dim = dim
        self.generator = generator
        self.mu = _linear(dim, dim, generator)
        self.logvar = _linear(dim, dim, generator)

    def moments(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and (bounded) log-variance of ``t`` given ``z``."""
        return self.mu(z), bound_logvar(self.logvar(z))

    def forward(self, z: torch.Tensor) -> GateOutput:
        mu, logvar = self.moments(z)
        rate = gaussian_kl_bits(mu, logvar).mean()
        if not self.training:
            return GateOutput(t=mu, rate_bits=rate, mu=mu, sigma=torch.exp(0.5 * logvar))
        eps = torch.randn(
            mu.shape, generator=self.generator, device=self.generator.device, dtype=mu.dtype
        ).to(mu.device)
        t, sigma = gaussian_message(mu, logvar, eps)
        return GateOutput(t=t, rate_bits=rate, mu=mu, sigma=sigma)


class GaussianGateKernel(torch.autograd.Function):
    """The batched executor's kernel: a chunk's Gaussian gates in training, one autograd node.

    From ``mu`` and the raw log-variance side by side (``[nodes, batch, 2 dim]``)
    and the noise ``eps``: the message ``t = mu + exp(logvar / 2) * eps`` with
    ``logvar = bound_logvar(raw)`` (and, not differentiable, ``mu``, ``logvar``
    and ``sigma``). ``penalty``, per node, weighs its rate (the VIB KL of
    :func:`gaussian_kl_bits`, averaged over the batch) in the step's objective:
    ``beta`` where its messages arrive, else 0 (None: no penalty anywhere). The
    penalty enters as its gradient, added in :meth:`backward` to what flows
    back from ``t``, so the step's objective needs no output for it. The
    per-node gate computes the same functions with a dozen autograd nodes;
    their derivatives are written out here.
    """

    @staticmethod
    def forward(both: torch.Tensor, eps: torch.Tensor, penalty: torch.Tensor | None) -> Any:  # noqa: D102
        dim = both.shape[-1] // 2
        mu, logvar = both[..., :dim], bound_logvar(both[..., dim:])
        t, sigma = gaussian_message(mu, logvar, eps)
        return t, mu, logvar, sigma

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:  # noqa: D102
        _, eps, penalty = inputs
        _, mu, logvar, sigma = output
        ctx.save_for_backward(mu, logvar, sigma, eps, penalty)
        ctx.mark_non_differentiable(mu, logvar, sigma)

    @staticmethod
    def backward(ctx: Any, grad_t: torch.Tensor, *_: Any) -> Any:  # noqa: D102
        mu, logvar, sigma, eps, penalty = ctx.saved_tensors
        grad_mu = grad_t
        grad_logvar = grad_t * eps * sigma * 0.5  # dt/dlogvar = sigma * eps / 2
        if penalty is not None:
            # d rate / d mu = mu / (B ln 2), d rate / d logvar = (sigma^2 - 1) / (2 B ln 2)
            scale = penalty.view(-1, 1, 1) / (mu.shape[1] * _LN2)
            grad_mu = grad_mu + scale * mu
            grad_logvar = grad_logvar + scale * 0.5 * (sigma * sigma - 1.0)
        grad_raw = grad_logvar * bound_logvar_slope(logvar)
        return torch.cat([grad_mu, grad_raw], dim=-1), None, None


def mixture_estimate(
    rows: tuple[np.ndarray, np.ndarray] | None,
    ceiling: float,
    *,
    moment_upper_bits: float | None = None,
    vib_kl_bits: float | None = None,
) -> RateEstimate:
    """A Gaussian channel's :class:`RateEstimate` from its subsample rows ``(mu, sigma)``.

    The Monte Carlo estimate of the empirical mixture's information
    (:data:`MC_SAMPLES` draws per input), clipped into the Kolchinsky–Tracey
    bracket on the same rows, then capped at ``ceiling``; both flagged
    saturated within :data:`~innet.info.SATURATION_MARGIN_BITS` of ``log2 n``.
    ``rows`` None: the rate is NaN (``not_estimated``). Also used for the
    joint of several channels (their rows side by side: the noises are
    independent given the input).
    """
    if rows is None:
        return RateEstimate(
            math.nan,
            None,
            ceiling,
            False,
            "not_estimated",
            moment_upper_bits=moment_upper_bits,
            vib_kl_bits=vib_kl_bits,
        )
    mu, sigma = rows
    lower, upper, n, saturated = pairwise_bracket(
        mu, sigma, n=len(mu), saturation_tol=SATURATION_MARGIN_BITS
    )
    mc = mixture_information_mc(mu, sigma, samples=MC_SAMPLES)
    point = min(max(mc.bits, lower), upper)
    return RateEstimate(
        rate_bits=min(point, ceiling),
        estimate_bits=mc.bits,
        ceiling_bits=ceiling,
        capped=point > ceiling,
        estimator="mixture_mc",
        stderr_bits=mc.stderr_bits,
        saturated=mc.saturated,
        bracket_lower_bits=min(lower, ceiling),
        bracket_upper_bits=min(upper, ceiling),
        bracket_n=n,
        bracket_saturated=saturated,
        moment_upper_bits=moment_upper_bits,
        vib_kl_bits=vib_kl_bits,
    )


class GaussianKind(GateKind):
    """The ``gaussian`` kind: its gate, its subsample and moments, its mixture estimate."""

    config_fields = ("bracket_samples",)

    def build(self, dim: int, *, generator: torch.Generator, **options: Any) -> Gate:
        return GaussianGate(dim, generator=generator)

    def observe(self, stats: RateStats, out: GateOutput, keep: np.ndarray | None) -> None:
        assert out.mu is not None and out.sigma is not None
        mu = out.mu.detach().double().cpu().numpy()
        sigma = out.sigma.detach().double().cpu().numpy()
        if stats.moments is None:
            stats.moments = RunningMoments(mu.shape[1])
        stats.moments.update(mu, sigma)
        stats.vib_kl_sum += float(out.rate_bits.detach()) * int(out.t.shape[0])
        if keep is not None and keep.any():
            stats.bracket_rows.append((mu[keep], sigma[keep]))

    def estimate(self, stats: RateStats, bracket: bool) -> RateEstimate:
        assert stats.moments is not None
        return mixture_estimate(
            stats.subsample() if bracket else None,
            float(stats.ceiling_bits),
            moment_upper_bits=stats.moments.upper_bound(),
            vib_kl_bits=stats.vib_kl_sum / stats.samples,
        )


GATES.register("gaussian", GaussianKind())


def _linear(in_features: int, out_features: int, generator: torch.Generator) -> nn.Linear:
    """``nn.Linear`` with PyTorch's default initialisation, drawn from ``generator``.

    Weights and bias are uniform in ``±1 / sqrt(in_features)``; the global
    random state is neither used nor advanced.
    """
    layer = nn.utils.skip_init(nn.Linear, in_features, out_features)
    bound = 1.0 / math.sqrt(in_features)
    with torch.no_grad():
        layer.weight.copy_(_uniform(layer.weight.shape, bound, generator))
        layer.bias.copy_(_uniform(layer.bias.shape, bound, generator))
    return layer


def _uniform(shape: torch.Size, bound: float, generator: torch.Generator) -> torch.Tensor:
    """Values uniform in ``[-bound, bound)`` drawn on the generator's device, returned on CPU."""
    unit = torch.rand(shape, generator=generator, device=generator.device)
    return ((2.0 * unit - 1.0) * bound).cpu()
