"""Finite-rate gates: the channel between a node's latent ``z`` and what it sends, ``t``.

A node does not send its latent ``z`` itself but the output ``t`` of a
stochastic gate applied to it. How much ``t`` says about ``z`` is the gate's
rate, the mutual information ``I(Z;T)`` in bits per sample. Training adds
``beta * rate`` to the loss, so a positive ``beta`` teaches each node to send
less information (docs/science.md). Three kinds:

- ``none``: ``t = z``; deterministic, rate 0 (no rate term).
- ``gaussian``: ``t = mu(z) + sigma(z) * eps`` with ``eps ~ N(0, I)`` while
  training and ``t = mu(z)`` at evaluation. The log-variance is squashed
  smoothly into ``[-LOGVAR_BOUND, LOGVAR_BOUND]`` (``tanh``), so an
  unregularised gate can neither silence its noise completely (an infinite
  rate) nor drown its signal in it (exploding activations). The rate estimate is the mean KL
  divergence from ``N(mu, sigma^2)`` to ``N(0, I)`` in bits, the variational
  information-bottleneck upper bound on ``I(Z;T)``.
- ``discrete``: ``t`` is one of ``K`` learned codewords, chosen from
  ``p(t|z) = softmax(logits(z) / tau)``. While training the choice is a
  straight-through Gumbel-softmax sample (a hard one-hot choice going
  forward, the gradient of its soft relaxation going back); at evaluation it
  is the most likely codeword. The rate estimate over a batch is
  ``H(mean_z p(t|z)) - mean_z H(p(t|z))`` in bits, never more than
  ``log2 K``.

All randomness (the parameters' initial values, ``eps``, the Gumbel noise)
is drawn from the ``torch.Generator`` given to :func:`make_gate`, so a gate's
output depends only on that generator's state and its inputs. Noise is drawn
on the generator's device and then moved to the input's device.

>>> generator = torch.Generator().manual_seed(0)
>>> gate = make_gate("discrete", 4, generator=generator, codewords=8)
>>> out = gate(torch.randn(32, 4, generator=generator))
>>> out.t.shape, gate.wire_dim, bool(out.rate_bits <= 3.0)
(torch.Size([32, 4]), 4, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from innet.errors import InnetError

__all__ = [
    "GATE_KINDS",
    "LOGVAR_BOUND",
    "GateOutput",
    "Gate",
    "IdentityGate",
    "GaussianGate",
    "DiscreteGate",
    "make_gate",
    "gaussian_kl_bits",
    "discrete_rate_bits",
]

GATE_KINDS = ("none", "gaussian", "discrete")

_LN2 = math.log(2.0)
LOGVAR_BOUND = 6.0
"""|log sigma^2| of the Gaussian gate stays below this: sigma lies in [0.05, 20]."""


@dataclass
class GateOutput:
    """What a gate produces for a batch.

    ``t``: the message, ``[batch, wire_dim]``. ``rate_bits``: a scalar tensor,
    the batch-mean rate estimate in bits per sample, differentiable with
    respect to the gate's parameters.
    """

    t: torch.Tensor
    rate_bits: torch.Tensor


class Gate(nn.Module):
    """Base class of gates: ``forward(z)`` returns a :class:`GateOutput`.

    ``wire_dim`` is the number of values of ``t`` per sample.
    """

    kind: str
    wire_dim: int

    def forward(self, z: torch.Tensor) -> GateOutput:
        raise NotImplementedError


class IdentityGate(Gate):
    """The ``none`` gate: sends ``z`` unchanged and reports rate 0."""

    kind = "none"

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.wire_dim = dim

    def forward(self, z: torch.Tensor) -> GateOutput:
        return GateOutput(t=z, rate_bits=z.new_zeros(()))


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
        return self.mu(z), LOGVAR_BOUND * torch.tanh(self.logvar(z) / LOGVAR_BOUND)

    def forward(self, z: torch.Tensor) -> GateOutput:
        mu, logvar = self.moments(z)
        rate = gaussian_kl_bits(mu, logvar).mean()
        if not self.training:
            return GateOutput(t=mu, rate_bits=rate)
        eps = torch.randn(
            mu.shape, generator=self.generator, device=self.generator.device, dtype=mu.dtype
        ).to(mu.device)
        return GateOutput(t=mu + torch.exp(0.5 * logvar) * eps, rate_bits=rate)


class DiscreteGate(Gate):
    """The ``discrete`` gate: sends one of ``codewords`` learned vectors per sample."""

    kind = "discrete"

    def __init__(self, dim: int, *, generator: torch.Generator, codewords: int, tau: float) -> None:
        super().__init__()
        self.wire_dim = dim
        self.generator = generator
        self.codewords = codewords
        self.tau = tau
        self.logits = _linear(dim, codewords, generator)
        self.codebook = nn.Parameter(
            torch.randn(codewords, dim, generator=generator, device=generator.device).cpu()
        )

    def forward(self, z: torch.Tensor) -> GateOutput:
        scaled_logits = self.logits(z) / self.tau
        probs = torch.softmax(scaled_logits, dim=-1)
        rate = discrete_rate_bits(probs)
        if self.training:
            choice = self._straight_through_sample(scaled_logits)
        else:
            choice = nn.functional.one_hot(probs.argmax(dim=-1), self.codewords).to(probs.dtype)
        return GateOutput(t=choice @ self.codebook, rate_bits=rate)

    def _straight_through_sample(self, scaled_logits: torch.Tensor) -> torch.Tensor:
        """One-hot sample from ``softmax(scaled_logits)``; gradient of its Gumbel-softmax.

        ``argmax(scaled_logits + g)`` with Gumbel noise ``g`` is distributed as
        ``softmax(scaled_logits)``, the very ``p(t|z)`` whose rate is reported.
        """
        uniform = torch.rand(
            scaled_logits.shape,
            generator=self.generator,
            device=self.generator.device,
            dtype=scaled_logits.dtype,
        ).to(scaled_logits.device)
        tiny = torch.finfo(uniform.dtype).tiny
        gumbel = -torch.log(-torch.log(uniform.clamp_min(tiny)))
        soft = torch.softmax(scaled_logits + gumbel, dim=-1)
        hard = nn.functional.one_hot(soft.argmax(dim=-1), self.codewords).to(soft.dtype)
        return hard + (soft - soft.detach())  # exactly one-hot going forward


def make_gate(
    kind: str,
    dim: int,
    *,
    generator: torch.Generator,
    codewords: int = 16,
    tau: float = 1.0,
) -> Gate:
    """A gate of ``kind`` (``none``, ``gaussian`` or ``discrete``) for latents of size ``dim``.

    ``codewords`` (K) and ``tau`` (the temperature of ``p(t|z)``) apply to the
    discrete gate. Parameters are initialised from ``generator`` (as
    ``nn.Linear`` would, but reproducibly), and the gate keeps ``generator``
    to draw its noise.
    """
    if kind not in GATE_KINDS:
        raise InnetError(f"unknown gate kind {kind!r} (expected one of {', '.join(GATE_KINDS)})")
    if dim < 1:
        raise InnetError(f"gate dimension must be positive, got {dim}")
    if kind == "none":
        return IdentityGate(dim)
    if kind == "gaussian":
        return GaussianGate(dim, generator=generator)
    if codewords < 2:
        raise InnetError(f"a discrete gate needs at least 2 codewords, got {codewords}")
    if not tau > 0:
        raise InnetError(f"gate temperature tau must be positive, got {tau}")
    return DiscreteGate(dim, generator=generator, codewords=codewords, tau=tau)


def gaussian_kl_bits(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-sample ``KL(N(mu, exp(logvar)) || N(0, I))`` in bits, summed over the last dim.

    ``0.5 * (mu^2 + sigma^2 - 1 - ln sigma^2) / ln 2`` per dimension.

    >>> gaussian_kl_bits(torch.zeros(2, 3), torch.zeros(2, 3))
    tensor([0., 0.])
    """
    nats = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)
    return nats.sum(dim=-1) / _LN2


def discrete_rate_bits(probs: torch.Tensor) -> torch.Tensor:
    """``H(mean p) - mean H(p)`` in bits for ``probs`` of shape ``[batch, K]``.

    The mutual information between a sample index drawn uniformly from the
    batch and the codeword drawn from its row of ``probs``; between 0 and
    ``log2 K``.

    >>> float(discrete_rate_bits(torch.eye(4)))
    2.0
    """
    return _entropy_bits(probs.mean(dim=0)) - _entropy_bits(probs).mean()


def _entropy_bits(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in bits along the last dim (``0 log 0 = 0``, finite gradients)."""
    log_probs = probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
    return -(probs * log_probs).sum(dim=-1) / _LN2


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
