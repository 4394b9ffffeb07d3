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
  ``mu``, which carry no information. The *reported* rate is a Monte Carlo
  estimate of the information of the noisy channel's empirical mixture over
  a seeded subsample of ``n`` evaluation inputs (at most ``log2 n``), inside
  the Kolchinsky–Tracey pairwise bracket of the same mixture; the
  moment-matched Gaussian upper bound is kept beside them, as a loose upper
  bound (:class:`RateStats`, :mod:`innet.info.gaussian`).
- ``discrete``: a product codebook. The latent is split into ``m``
  groups; each is sent as one of ``K`` learned codewords of its group,
  chosen from ``p(t_g|z) = softmax(-|z_g - c_g|^2 / tau)`` (the nearest
  codeword the most likely), so a sample carries at most ``m log2 K`` bits.
  While training the choice is sampled from ``p`` and the latent gets the
  gradient of the codeword it sent (straight through); at evaluation it is
  the nearest codeword. The codebook starts from the first batch's latents,
  dead codewords are restarted on live latents, and ``tau`` is annealed
  (:class:`DiscreteGate`). A gate whose receivers look codewords up by index
  *publishes* its codebook: it quantises against the copy it last sent them,
  while the running means move a working copy. The training
  penalty over a batch is ``sum_g [H(mean_z p(t_g|z)) - mean_z H(p(t_g|z))]``
  in bits, never more than ``m log2 K``; the reported rate is the same
  quantity over the whole evaluation set (accumulated batch by batch: the
  rate of a set is not the mean of its batches' rates). With one group it
  is the exact mutual information; with several, an upper bound on it.

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

from innet.core.errors import InnetError
from innet.info import (
    SATURATION_MARGIN_BITS,
    RunningMoments,
    entropy,
    mixture_information_mc,
    pairwise_bracket,
)

__all__ = [
    "GATE_KINDS",
    "RATE_METRICS",
    "BRACKET_METRICS",
    "FUSION_METRICS",
    "LOGVAR_BOUND",
    "bound_logvar",
    "bound_logvar_slope",
    "RESTART_EVERY",
    "EMA_DECAY",
    "COMMITMENT",
    "GateOutput",
    "Gate",
    "IdentityGate",
    "GaussianGate",
    "DiscreteGate",
    "make_gate",
    "gaussian_kl_bits",
    "discrete_rate_bits",
    "MC_SAMPLES",
    "RateStats",
    "RateEstimate",
    "mixture_estimate",
]

GATE_KINDS = ("none", "gaussian", "discrete")

_LN2 = math.log(2.0)
LOGVAR_BOUND = 6.0
"""|log sigma^2| of the Gaussian gate stays below this: sigma lies in [0.05, 20]."""
EMA_DECAY = 0.95
"""Weight of the past in a discrete gate's running codeword means (per training batch)."""
COMMITMENT = 0.25
"""Weight of a fixed-codebook discrete gate's commitment loss ``|z - nearest c|^2`` (VQ-VAE's)."""
RESTART_EVERY = 20
"""Training batches between two dead-codeword checks of a discrete gate."""


@dataclass
class GateOutput:
    """What a gate produces for a batch.

    ``t``: the message, ``[batch, wire_dim]``. ``rate_bits``: a scalar tensor,
    the training penalty in bits per sample (the Gaussian gate's VIB KL, the
    discrete gate's batch mutual information, 0 for ``none``), differentiable
    with respect to the gate's parameters. What the reported rate is computed
    from: ``mu`` and ``sigma`` (Gaussian gate, ``[batch, wire_dim]``),
    ``probs`` (discrete gate, ``p(t_g|z)``, ``[batch, groups, K]``) and
    ``index`` (the codeword sent for each sample and group, ``[batch,
    groups]``, for the ``index`` wire format). ``commitment``: a fixed-codebook
    discrete gate's commitment loss (see :class:`DiscreteGate`), else None.
    """

    t: torch.Tensor
    rate_bits: torch.Tensor
    mu: torch.Tensor | None = None
    sigma: torch.Tensor | None = None
    probs: torch.Tensor | None = None
    index: torch.Tensor | None = None
    commitment: torch.Tensor | None = None


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
        return self.mu(z), bound_logvar(self.logvar(z))

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
    """The ``discrete`` gate: a product codebook of ``groups`` × ``codewords`` learned vectors.

    The latent ``z`` (``dim`` values) is split into ``groups`` (m) slices of
    ``dim / m`` values; slice ``g`` is sent as one of the ``K = codewords``
    codewords ``c[g, k]`` of its own codebook, so a sample carries at most
    ``m log2 K`` bits. The choice is vector-quantisation style: ``p(k | z_g)
    = softmax(-|z_g - c[g, k]|^2 / tau)``, the nearest codeword being the
    most likely. Training samples the codeword from ``p`` (Gumbel-max) and
    sends it; the latent gets the gradient of the codeword it sent
    (straight through), the rate penalty's gradient goes through ``p``.
    Evaluation sends the nearest codeword.

    The codebook is not trained by gradient but, as in VQ-VAE, moved towards
    the mean of the latents that chose each codeword (running means with
    weight :data:`EMA_DECAY` on the past: online k-means). Three more
    things keep it in use:

    - *initialisation from data*: the first training batch's latents replace
      the random initial codewords (``K`` distinct rows of each slice, drawn
      from the generator);
    - *dead-codeword restarts* (the guard against collapse): every
      :data:`RESTART_EVERY` training batches, each codeword chosen by no
      sample since the last check is moved onto the latent of a random
      sample of the current batch (``restarts`` counts them);
    - *temperature annealing*: :meth:`set_progress` moves ``tau``
      geometrically from ``tau`` (start of training) to ``tau_final`` (end).

    ``publishes=True`` is for receivers that look the codewords up by index
    (the ``index`` and ``entropy`` wire formats, :mod:`innet.families.inl.wire`): they
    hold a copy of the codebook the sender sent them. The gate then keeps
    two codebooks: the *working* one (``codebook``), which the running
    means, the data initialisation and the restarts move, and the
    *published* one (``published``), the copy its receivers hold, which it
    quantises against (training and evaluation). :meth:`request_publish`
    makes the next training batch publish (``published = codebook``) after
    that batch's upkeep (data initialisation, restarts) and before it
    quantises; the executor then sends ``published`` to the receivers
    before the indices. Between two publications the working codewords
    follow the latents that chose the published ones.

    ``train_codebook=False`` keeps the codebook at its seeded initial value
    (no running means, data initialisation or restarts; annealing still
    applies). The latents must then come to the codewords: the output
    carries a *commitment* loss, :data:`COMMITMENT` ``× |z - nearest c|^2``
    summed over groups (VQ-VAE's), which the INL executor adds to the node's
    objective (with a trained codebook it would drag latents and codewords
    together into one point, so it is None there). A fixed codebook that
    publishes is published once, unchanged; the ``finite_bank`` family's
    router, whose codewords are fixed labels, ignores the commitment loss.
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
        groups: int = 1,
        tau_final: float | None = None,
        publishes: bool = False,
    ) -> None:
        super().__init__()
        self.wire_dim = dim
        self.generator = generator
        self.codewords = codewords
        self.groups = groups
        self.tau_start = tau
        self.tau_final = tau if tau_final is None else tau_final
        self.tau = tau
        self.restarts = 0
        self.train_codebook = train_codebook
        self.publishes = publishes
        self._publish_next = False
        codebook = torch.randn(
            groups, codewords, dim // groups, generator=generator, device=generator.device
        ).cpu()
        self.register_buffer("codebook", codebook)
        # running (exponentially weighted) counts and sums of the latents each codeword was
        # chosen for: the codebook is their ratio, online k-means (VQ-VAE's EMA update)
        self.register_buffer("ema_count", torch.ones(groups, codewords))
        self.register_buffer("ema_sum", codebook.clone())
        # what the receivers hold (publishing gates only): quantisation uses it
        self.register_buffer("published", codebook.clone() if publishes else None)
        self.register_buffer("usage", torch.zeros(groups, codewords))
        self.register_buffer("initialised", torch.tensor(not train_codebook))
        self._steps = 0

    def set_progress(self, fraction: float) -> None:
        """Anneal: ``tau = tau_start * (tau_final / tau_start) ** fraction``, fraction in [0, 1]."""
        fraction = min(max(fraction, 0.0), 1.0)
        self.tau = self.tau_start * (self.tau_final / self.tau_start) ** fraction

    @property
    def in_use(self) -> torch.Tensor:
        """The codebook the gate quantises against: the published one, or the working one."""
        return self.published if self.publishes else self.codebook

    def request_publish(self) -> None:
        """Make the next training batch publish the working codebook (publishing gates only)."""
        if not self.publishes:
            raise ValueError("this discrete gate does not publish its codebook")
        self._publish_next = True

    def scores(self, z: torch.Tensor) -> torch.Tensor:
        """``-|z_g - c[g, k]|^2``, shape ``[batch, groups, K]`` (logits at ``tau = 1``)."""
        slices = z.reshape(z.shape[0], self.groups, 1, -1)
        return -(slices - self.in_use.unsqueeze(0)).square().sum(dim=-1)

    def forward(self, z: torch.Tensor) -> GateOutput:
        updating = self.training and self.train_codebook and bool(self.initialised)
        if self.training and self.train_codebook:
            self._maintain(z.detach())
        if self.training and self._publish_next:
            self.published.copy_(self.codebook)
            self._publish_next = False
        scores = self.scores(z)
        scaled = scores / self.tau
        probs = torch.softmax(scaled, dim=-1)
        rate = discrete_rate_bits(probs)
        index = self._sample(scaled) if self.training else probs.detach().argmax(dim=-1)
        hard = nn.functional.one_hot(index, self.codewords).to(z.dtype)
        t = torch.einsum("bgk,gkd->bgd", hard, self.in_use).reshape(z.shape[0], -1)
        if updating:  # not on the batch the codebook was initialised from
            self.usage += hard.sum(dim=0)
            self._update_codebook(z.detach(), hard)
        commitment = None
        if not self.train_codebook:  # a fixed codebook: the latents must come to it
            nearest = (-scores).min(dim=-1).values  # |z_g - c_g|^2 to the nearest codeword
            commitment = COMMITMENT * nearest.sum(dim=-1).mean()
        if self.training:
            t = t + (z - z.detach())  # exactly the codeword; the latent gets its gradient
        return GateOutput(t=t, rate_bits=rate, probs=probs, index=index, commitment=commitment)

    @torch.no_grad()
    def _update_codebook(self, z: torch.Tensor, hard: torch.Tensor) -> None:
        """Move each chosen codeword towards the mean of the latents that chose it."""
        slices = z.reshape(z.shape[0], self.groups, -1)
        self.ema_count.mul_(EMA_DECAY).add_(hard.sum(dim=0), alpha=1 - EMA_DECAY)
        sums = torch.einsum("bgk,bgd->gkd", hard, slices)
        self.ema_sum.mul_(EMA_DECAY).add_(sums, alpha=1 - EMA_DECAY)
        used = self.ema_count > 1e-6
        self.codebook[used] = self.ema_sum[used] / self.ema_count[used].unsqueeze(-1)

    @torch.no_grad()
    def _maintain(self, z: torch.Tensor) -> None:
        """Initialise the codebook from ``z`` (first batch); restart dead codewords."""
        slices = z.reshape(z.shape[0], self.groups, -1)
        if not bool(self.initialised):
            for group in range(self.groups):
                rows = self._random_rows(z.shape[0], self.codewords, distinct=True)
                self.codebook[group] = slices[rows, group].to(self.codebook.dtype)
            self.ema_sum.copy_(self.codebook)
            self.ema_count.fill_(1.0)
            self.initialised.fill_(True)
            return
        self._steps += 1
        if self._steps % RESTART_EVERY:
            return
        dead = self.usage == 0
        for group, code in dead.nonzero().tolist():
            row = self._random_rows(z.shape[0], 1, distinct=False)
            self.codebook[group, code] = slices[row[0], group].to(self.codebook.dtype)
            self.ema_sum[group, code] = self.codebook[group, code]
            self.ema_count[group, code] = 1.0
        self.restarts += int(dead.sum())
        self.usage.zero_()

    def _random_rows(self, batch: int, count: int, *, distinct: bool) -> torch.Tensor:
        """``count`` row numbers below ``batch`` from the generator (distinct when possible)."""
        if distinct and count <= batch:
            order = torch.randperm(batch, generator=self.generator, device=self.generator.device)
            return order[:count].cpu()
        draws = torch.randint(
            batch, (count,), generator=self.generator, device=self.generator.device
        )
        return draws.cpu()

    def _sample(self, scaled_logits: torch.Tensor) -> torch.Tensor:
        """Indices drawn from ``softmax(scaled_logits)`` (Gumbel-max), shape ``[batch, groups]``.

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
        return (scaled_logits.detach() + gumbel).argmax(dim=-1)


def make_gate(
    kind: str,
    dim: int,
    *,
    generator: torch.Generator,
    codewords: int = 16,
    tau: float = 1.0,
    train_codebook: bool = True,
    groups: int = 1,
    tau_final: float | None = None,
    publishes: bool = False,
) -> Gate:
    """A gate of ``kind`` (``none``, ``gaussian`` or ``discrete``) for latents of size ``dim``.

    ``codewords`` (K per group), ``tau`` (the temperature of ``p(t|z)`` at the
    start of training), ``tau_final`` (at its end; default ``tau``: no
    annealing), ``groups`` (m, dividing ``dim``), ``train_codebook`` and
    ``publishes`` (see :class:`DiscreteGate`) apply to the discrete gate.
    Parameters are initialised from ``generator`` (as ``nn.Linear`` would,
    but reproducibly), and the gate keeps ``generator`` to draw its noise.
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
    if not tau > 0 or not (tau_final is None or tau_final > 0):
        raise InnetError(f"gate temperature tau must be positive, got {tau} (final {tau_final})")
    if groups < 1 or dim % groups:
        raise InnetError(f"gate groups must divide the latent dimension {dim}, got {groups}")
    return DiscreteGate(
        dim,
        generator=generator,
        codewords=codewords,
        tau=tau,
        train_codebook=train_codebook,
        groups=groups,
        tau_final=tau_final,
        publishes=publishes,
    )


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


def gaussian_kl_bits(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-sample ``KL(N(mu, exp(logvar)) || N(0, I))`` in bits, summed over the last dim.

    ``0.5 * (mu^2 + sigma^2 - 1 - ln sigma^2) / ln 2`` per dimension.

    >>> gaussian_kl_bits(torch.zeros(2, 3), torch.zeros(2, 3))
    tensor([0., 0.])
    """
    nats = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)
    return nats.sum(dim=-1) / _LN2


def discrete_rate_bits(probs: torch.Tensor) -> torch.Tensor:
    """``sum_g [H(mean p_g) - mean H(p_g)]`` in bits, ``probs`` ``[batch, (m,) K]``.

    For one group: the mutual information between a sample index drawn
    uniformly from the batch and the codeword drawn from its row of
    ``probs``, between 0 and ``log2 K``. For m groups drawn independently
    given the sample, the sum of the groups' informations, an upper bound on
    the joint one (``H(T) <= sum H(T_g)``, ``H(T|Z) = sum H(T_g|Z)``), at most
    ``m log2 K``.

    >>> float(discrete_rate_bits(torch.eye(4)))
    2.0
    >>> twins = torch.eye(4).repeat(1, 2).reshape(4, 2, 4)  # two identical groups
    >>> float(discrete_rate_bits(twins))  # the joint information is 2 bits
    4.0
    """
    if probs.dim() == 2:
        probs = probs.unsqueeze(1)
    per_group = _entropy_bits(probs.mean(dim=0)) - _entropy_bits(probs).mean(dim=0)
    return per_group.sum()


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


MC_SAMPLES = 4
"""Draws per input of the Monte Carlo rate estimate (:func:`~innet.info.mixture_information_mc`)."""


RATE_METRICS = (
    "latent_rate_bits",
    "rate_moment_upper_bits",
    "vib_kl_bits",
    "rate_ceiling_bits",
    "rate_capped_nodes",
)
"""Rate columns of every epoch's metrics row (see :mod:`innet.families.inl.trainer`)."""
BRACKET_METRICS = (
    "rate_stderr_bits",
    "rate_saturated_nodes",
    "rate_bracket_lower_bits",
    "rate_bracket_upper_bits",
    "rate_bracket_n",
    "rate_bracket_saturated_nodes",
)
"""Columns of the final epoch's row: the sum's standard error and bracket over senders."""
FUSION_METRICS = (
    "fusion_input_rate_bits",
    "fusion_input_stderr_bits",
    "fusion_input_lower_bits",
    "fusion_input_upper_bits",
    "fusion_input_n",
    "fusion_input_saturated",
)
"""Columns of the final epoch's row: the information in what reaches the fusion node."""


@dataclass(frozen=True)
class RateEstimate:
    """A node's reported rate over an evaluation set, in bits per sample.

    ``rate_bits``: the reported rate (the point estimate), never more than
    ``ceiling_bits`` (the bits the node's message carries per sample);
    ``estimate_bits``: the estimator's value before that cap (and, for the
    Gaussian gate, before it is clipped into the bracket; None for the
    ``none`` gate, whose ``I(Z;T)`` is not finite); ``capped``: the estimate
    was above the ceiling (or there is no finite estimate) and ``rate_bits``
    is the ceiling. ``estimator``:

    - ``mixture_mc`` (Gaussian gate): the Monte Carlo estimate of the
      information of the empirical mixture over the ``bracket_n`` subsampled
      evaluation inputs (at most ``log2 bracket_n``), clipped into the
      Kolchinsky–Tracey bracket ``[bracket_lower_bits, bracket_upper_bits]``
      of the same mixture (the true value lies there, so clipping only
      removes error); ``stderr_bits`` is its Monte Carlo standard error and
      ``saturated`` says it is within the margin of ``log2 bracket_n``;
    - ``not_estimated`` (Gaussian gate, an epoch without the subsample
      estimators, or no subsample): ``rate_bits`` is NaN;
    - ``batch_mi`` (discrete gate, one group: the exact mutual information
      over the set; bracket = the value) or ``batch_mi_group_sum`` (a product
      codebook: the sum over groups, an upper bound on the joint one; the
      bracket's lower end is the largest group's information);
    - ``ceiling`` (``none`` gate).

    ``moment_upper_bits``: the Gaussian gate's moment-matched Gaussian bound
    over the whole evaluation set, an upper bound on ``I(Z;T)`` that is loose
    when ``mu`` is not Gaussian; never the reported rate. ``vib_kl_bits``:
    the Gaussian gate's VIB penalty averaged over the set.
    """

    rate_bits: float
    estimate_bits: float | None
    ceiling_bits: float
    capped: bool
    estimator: str
    stderr_bits: float | None = None
    saturated: bool | None = None
    moment_upper_bits: float | None = None
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

    - ``gaussian``: the rows ``(mu, sigma)`` of a seeded subsample of the
      evaluation inputs (the Monte Carlo estimate and the pairwise bracket of
      the empirical mixture's information), :class:`~innet.info.RunningMoments`
      of ``(mu, sigma)`` over the whole set (the moment-matched upper bound,
      streamed) and the VIB KL summed over samples;
    - ``discrete``: the sum of ``p(t_g|z)`` and of ``H(p(t_g|z))`` over samples
      (per group ``g``), so that ``sum_g [H(mean p_g) - mean H(p_g)]`` is the
      rate of the whole set: exact for one group, an upper bound on the joint
      ``I(Z;T)`` for several (see :func:`discrete_rate_bits`);
    - ``none``: nothing (its rate is the ceiling).

    ``ceiling_bits``: the bits the node's message carries per sample (see
    :func:`innet.families.inl.wire.message_bits_per_sample`).
    """

    kind: str
    ceiling_bits: float
    samples: int = 0
    vib_kl_sum: float = 0.0
    moments: RunningMoments | None = None
    bracket_rows: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    prob_sum: np.ndarray | None = None
    entropy_sum: np.ndarray | None = None

    def update(self, out: GateOutput, keep: np.ndarray | None = None) -> RateStats:
        """Add one evaluation batch; ``keep`` marks its rows in the subsample."""
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
            probs = probs.reshape(batch, -1, probs.shape[-1])  # [batch, groups, K]
            probs = probs / probs.sum(axis=-1, keepdims=True)
            self.prob_sum = _plus(self.prob_sum, probs.sum(axis=0))
            rows = entropy(probs.reshape(-1, probs.shape[-1])).reshape(batch, -1)
            self.entropy_sum = _plus(self.entropy_sum, rows.sum(axis=0))  # [groups]
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
            self.prob_sum = _plus(self.prob_sum, other.prob_sum)
            self.entropy_sum = _plus(self.entropy_sum, other.entropy_sum)
        return self

    def subsample(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The subsample's ``(mu, sigma)`` rows in evaluation order, or None without one."""
        if not self.bracket_rows:
            return None
        return (
            np.concatenate([rows[0] for rows in self.bracket_rows]),
            np.concatenate([rows[1] for rows in self.bracket_rows]),
        )

    def estimate(self, bracket: bool = True) -> RateEstimate:
        """The reported rate of everything fed so far.

        ``bracket``: compute the subsample estimators (the Monte Carlo estimate
        and the pairwise bracket); without them a Gaussian gate's rate is NaN.
        """
        ceiling = float(self.ceiling_bits)
        if self.kind == "none" or self.samples == 0:
            return RateEstimate(ceiling, None, ceiling, True, "ceiling")
        if self.kind == "gaussian":
            assert self.moments is not None
            rows = self.subsample() if bracket else None
            return mixture_estimate(
                rows, ceiling,
                moment_upper_bits=self.moments.upper_bound(),
                vib_kl_bits=self.vib_kl_sum / self.samples,
            )  # fmt: skip
        return self._discrete_estimate(ceiling)

    def _discrete_estimate(self, ceiling: float) -> RateEstimate:
        """The discrete gate's rate: the groups' informations over the set, and their sum."""
        assert self.prob_sum is not None and self.entropy_sum is not None
        mean = self.prob_sum / self.samples  # [groups, K]
        marginal = entropy(mean / mean.sum(axis=-1, keepdims=True))
        groups = np.maximum(marginal - self.entropy_sum / self.samples, 0.0)
        value = float(groups.sum())
        rate = min(value, ceiling)
        return RateEstimate(
            rate_bits=rate,
            estimate_bits=value,
            ceiling_bits=ceiling,
            capped=value > ceiling,
            estimator="batch_mi" if len(groups) == 1 else "batch_mi_group_sum",
            bracket_lower_bits=min(float(groups.max()), rate),  # I(T; Z) >= I(T_g; Z)
            bracket_upper_bits=rate,
        )


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
    extra = {"moment_upper_bits": moment_upper_bits, "vib_kl_bits": vib_kl_bits}
    if rows is None:
        return RateEstimate(math.nan, None, ceiling, False, "not_estimated", **extra)
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
        **extra,
    )


def _plus(total: np.ndarray | None, more: np.ndarray | None) -> np.ndarray | None:
    """``total + more`` where either may be None (nothing yet)."""
    if more is None:
        return total
    return more.copy() if total is None else total + more
