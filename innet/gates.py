"""Finite-rate gates: the channel between a node's latent ``z`` and what it sends, ``t``.

A node does not send its latent ``z`` itself but the output ``t`` of a
stochastic gate applied to it. How much ``t`` says about ``z`` is the gate's
rate, the mutual information ``I(Z;T)`` in bits per sample. Training adds
``beta * rate`` to the loss, so a positive ``beta`` teaches each node to send
less information (docs/science.md). Three kinds:

- ``none``: ``t = z``; deterministic, no rate term. Its ``I(Z;T)`` is not
  finite (a deterministic channel with a continuous output), so the reported
  rate is the *ceiling*: the bits its message carries per sample.
- ``gaussian``: ``t = mu(z) + sigma(z) * eps`` with ``eps ~ N(0, I)`` while
  training and ``t = mu(z)`` at evaluation. The log-variance is squashed
  smoothly into ``[-LOGVAR_BOUND, LOGVAR_BOUND]`` (``tanh``), so an
  unregularised gate can neither silence its noise completely (an infinite
  rate) nor drown its signal in it (exploding activations). Its training
  penalty (``rate_bits``) is the mean KL divergence from ``N(mu, sigma^2)``
  to ``N(0, I)`` in bits, the variational information-bottleneck (VIB) bound,
  reported as ``vib_kl_bits``: it also grows with the scale and offset of
  ``mu``, which carry no information. The *reported* rate is the
  moment-matched Gaussian upper bound on ``I(Z;T)`` of the noisy channel over
  the evaluation set (:class:`RateStats`, :mod:`innet.info.gaussian`), with
  the Kolchinsky–Tracey pairwise bracket beside it.
- ``discrete``: ``t`` is one of ``K`` learned codewords, chosen from
  ``p(t|z) = softmax(logits(z) / tau)``. While training the choice is a
  straight-through Gumbel-softmax sample (a hard one-hot choice going
  forward, the gradient of its soft relaxation going back); at evaluation it
  is the most likely codeword. The training penalty over a batch is
  ``H(mean_z p(t|z)) - mean_z H(p(t|z))`` in bits, never more than
  ``log2 K``; the reported rate is the same quantity over the whole
  evaluation set (accumulated batch by batch: the rate of a set is not the
  mean of its batches' rates).

:class:`RateStats` accumulates, batch by batch and across processes, what a
node's reported rate is computed from; no reported rate exceeds the bits the
node's message carries per sample (it is capped there, and flagged).

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
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from innet.errors import InnetError
from innet.info import RunningMoments, entropy, pairwise_bracket

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
    "RateStats",
    "RateEstimate",
]

GATE_KINDS = ("none", "gaussian", "discrete")

_LN2 = math.log(2.0)
LOGVAR_BOUND = 6.0
"""|log sigma^2| of the Gaussian gate stays below this: sigma lies in [0.05, 20]."""


@dataclass
class GateOutput:
    """What a gate produces for a batch.

    ``t``: the message, ``[batch, wire_dim]``. ``rate_bits``: a scalar tensor,
    the training penalty in bits per sample (the Gaussian gate's VIB KL, the
    discrete gate's batch mutual information, 0 for ``none``), differentiable
    with respect to the gate's parameters. What the reported rate is computed
    from: ``mu`` and ``sigma`` (Gaussian gate, ``[batch, wire_dim]``),
    ``probs`` (discrete gate, ``p(t|z)``, ``[batch, K]``) and ``index`` (the
    codeword sent for each sample, ``[batch]``, for the ``index`` wire format).
    """

    t: torch.Tensor
    rate_bits: torch.Tensor
    mu: torch.Tensor | None = None
    sigma: torch.Tensor | None = None
    probs: torch.Tensor | None = None
    index: torch.Tensor | None = None


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
        sigma = torch.exp(0.5 * logvar)
        if not self.training:
            return GateOutput(t=mu, rate_bits=rate, mu=mu, sigma=sigma)
        eps = torch.randn(
            mu.shape, generator=self.generator, device=self.generator.device, dtype=mu.dtype
        ).to(mu.device)
        return GateOutput(t=mu + sigma * eps, rate_bits=rate, mu=mu, sigma=sigma)


class DiscreteGate(Gate):
    """The ``discrete`` gate: sends one of ``codewords`` learned vectors per sample.

    ``train_codebook=False`` keeps the codebook at its initial value (it is
    then a buffer, not a parameter): what the ``index`` wire format needs,
    where receivers hold a copy of the codebook made at start-up.
    """

    kind = "discrete"

    def __init__(
        self,
        dim: int,
        *,
        generator: torch.Generator,
        codewords: int,
        tau: float,
        train_codebook: bool = True,
    ) -> None:
        super().__init__()
        self.wire_dim = dim
        self.generator = generator
        self.codewords = codewords
        self.tau = tau
        self.logits = _linear(dim, codewords, generator)
        codebook = torch.randn(codewords, dim, generator=generator, device=generator.device).cpu()
        if train_codebook:
            self.codebook = nn.Parameter(codebook)
        else:
            self.register_buffer("codebook", codebook)

    def forward(self, z: torch.Tensor) -> GateOutput:
        scaled_logits = self.logits(z) / self.tau
        probs = torch.softmax(scaled_logits, dim=-1)
        rate = discrete_rate_bits(probs)
        if self.training:
            choice = self._straight_through_sample(scaled_logits)
        else:
            choice = nn.functional.one_hot(probs.argmax(dim=-1), self.codewords).to(probs.dtype)
        return GateOutput(
            t=choice @ self.codebook,
            rate_bits=rate,
            probs=probs,
            index=choice.detach().argmax(dim=-1),
        )

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
    train_codebook: bool = True,
) -> Gate:
    """A gate of ``kind`` (``none``, ``gaussian`` or ``discrete``) for latents of size ``dim``.

    ``codewords`` (K), ``tau`` (the temperature of ``p(t|z)``) and
    ``train_codebook`` apply to the discrete gate. Parameters are initialised from ``generator`` (as
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
    return DiscreteGate(
        dim, generator=generator, codewords=codewords, tau=tau, train_codebook=train_codebook
    )


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


# -- reported rates -------------------------------------------------------------------------


@dataclass(frozen=True)
class RateEstimate:
    """A node's reported rate over an evaluation set, in bits per sample.

    ``rate_bits``: the reported rate, never more than ``ceiling_bits`` (the bits
    the node's message carries per sample); ``estimate_bits``: the estimator's
    value before that cap (None for the ``none`` gate, whose ``I(Z;T)`` is not
    finite); ``capped``: the estimate was above the ceiling (or there is no
    finite estimate) and ``rate_bits`` is the ceiling. ``estimator``:
    ``gaussian_upper_bound`` (moment-matched Gaussian), ``batch_mi`` (the
    discrete gate's exact mutual information over the set) or ``ceiling``.
    ``vib_kl_bits``: the Gaussian gate's VIB penalty averaged over the set.
    ``bracket_*``: the Kolchinsky–Tracey bracket on a seeded subsample of
    ``bracket_n`` inputs (Gaussian gate; ``saturated`` when the lower end
    reached ``log2 bracket_n``), or None.
    """

    rate_bits: float
    estimate_bits: float | None
    ceiling_bits: float
    capped: bool
    estimator: str
    vib_kl_bits: float | None = None
    bracket_lower_bits: float | None = None
    bracket_upper_bits: float | None = None
    bracket_n: int | None = None
    bracket_saturated: bool | None = None


@dataclass
class RateStats:
    """What one sending node's reported rate is computed from, over an evaluation set.

    Fed batch by batch with :meth:`update` (each batch's :class:`GateOutput`),
    merged across processes with :meth:`merge` (plain numpy, picklable), and
    turned into a :class:`RateEstimate` by :meth:`estimate`:

    - ``gaussian``: :class:`~innet.info.RunningMoments` of ``(mu, sigma)``
      (the moment-matched Gaussian upper bound on ``I(Z;T)`` of the noisy
      channel ``T = mu + sigma * eps``, streamed), the VIB KL summed over
      samples, and the rows of a seeded subsample for the pairwise bracket;
    - ``discrete``: the sum of ``p(t|z)`` and of ``H(p(t|z))`` over samples, so
      that ``H(mean p) - mean H(p)`` is the rate of the whole set;
    - ``none``: nothing (its rate is the ceiling).

    ``ceiling_bits``: the bits the node's message carries per sample (see
    :func:`innet.wire.message_bits_per_sample`).
    """

    kind: str
    ceiling_bits: float
    samples: int = 0
    vib_kl_sum: float = 0.0
    moments: RunningMoments | None = None
    bracket_rows: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    prob_sum: np.ndarray | None = None
    entropy_sum: float = 0.0

    def update(self, out: GateOutput, keep: np.ndarray | None = None) -> RateStats:
        """Add one evaluation batch; ``keep`` marks its rows in the bracket's subsample."""
        batch = int(out.t.shape[0])
        self.samples += batch
        if self.kind == "gaussian":
            assert out.mu is not None and out.sigma is not None
            mu = out.mu.detach().double().cpu().numpy()
            sigma = out.sigma.detach().double().cpu().numpy()
            if self.moments is None:
                self.moments = RunningMoments(mu.shape[1])
            self.moments.update(mu, sigma)
            self.vib_kl_sum += float(out.rate_bits.detach()) * batch
            if keep is not None and keep.any():
                self.bracket_rows.append((mu[keep], sigma[keep]))
        elif self.kind == "discrete":
            assert out.probs is not None
            probs = out.probs.detach().double().cpu().numpy()
            probs = probs / probs.sum(axis=1, keepdims=True)
            self.prob_sum = probs.sum(axis=0) + (0.0 if self.prob_sum is None else self.prob_sum)
            self.entropy_sum += float(np.sum(entropy(probs)))
        return self

    def merge(self, other: RateStats) -> RateStats:
        """Fold ``other`` (another part of the same evaluation set) into ``self``."""
        self.samples += other.samples
        self.vib_kl_sum += other.vib_kl_sum
        if other.moments is not None:
            if self.moments is None:
                self.moments = RunningMoments(other.moments.dim)
            self.moments.merge(other.moments)
        self.bracket_rows.extend(other.bracket_rows)
        if other.prob_sum is not None:
            self.prob_sum = other.prob_sum + (0.0 if self.prob_sum is None else self.prob_sum)
        self.entropy_sum += other.entropy_sum
        return self

    def estimate(self, bracket: bool = True) -> RateEstimate:
        """The reported rate of everything fed so far (``bracket``: compute the bracket too)."""
        ceiling = float(self.ceiling_bits)
        if self.kind == "none" or self.samples == 0:
            return RateEstimate(ceiling, None, ceiling, True, "ceiling")
        extra: dict = {}
        if self.kind == "gaussian":
            assert self.moments is not None
            value = self.moments.upper_bound()
            estimator = "gaussian_upper_bound"
            extra["vib_kl_bits"] = self.vib_kl_sum / self.samples
            if bracket and self.bracket_rows:
                mu = np.concatenate([rows[0] for rows in self.bracket_rows])
                sigma = np.concatenate([rows[1] for rows in self.bracket_rows])
                lower, upper, n, saturated = pairwise_bracket(mu, sigma, n=len(mu))
                extra.update(
                    bracket_lower_bits=min(lower, ceiling),
                    bracket_upper_bits=min(upper, ceiling),
                    bracket_n=n,
                    bracket_saturated=saturated,
                )
        else:
            assert self.prob_sum is not None
            mean = self.prob_sum / self.samples
            value = max(float(entropy(mean / mean.sum())) - self.entropy_sum / self.samples, 0.0)
            estimator = "batch_mi"
        return RateEstimate(
            rate_bits=min(value, ceiling),
            estimate_bits=value,
            ceiling_bits=ceiling,
            capped=value > ceiling,
            estimator=estimator,
            **extra,
        )
