"""The ``discrete`` gate: a product codebook of learned codewords, and its rate.

The latent is split into ``m`` groups; each is sent as one of ``K`` learned
codewords of its group, chosen from ``p(t_g|z) = softmax(-|z_g - c_g|^2 /
tau)`` (the nearest codeword the most likely), so a sample carries at most
``m log2 K`` bits. While training the choice is sampled from ``p`` and the
latent gets the gradient of the codeword it sent (straight through); at
evaluation it is the nearest codeword. The codebook starts from the first
batch's latents, dead codewords are restarted on live latents, and ``tau`` is
annealed (:class:`DiscreteGate`). A gate whose receivers look codewords up by
index *publishes* its codebook: it quantises against the copy it last sent
them, while the running means move a working copy. The training penalty over
a batch is ``sum_g [H(mean_z p(t_g|z)) - mean_z H(p(t_g|z))]`` in bits
(:func:`discrete_rate_bits`), never more than ``m log2 K``; the reported rate
is the same quantity over the whole evaluation set (accumulated batch by
batch: the rate of a set is not the mean of its batches' rates). With one
group it is the exact mutual information; with several, an upper bound on it.

>>> generator = torch.Generator().manual_seed(0)
>>> gate = DiscreteKind().build(4, generator=generator, codewords=8)
>>> out = gate(torch.randn(32, 4, generator=generator))
>>> out.t.shape, gate.wire_dim, bool(out.rate_bits <= 3.0)
(torch.Size([32, 4]), 4, True)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from innet.core.errors import InnetError
from innet.families.inl.gates.base import (
    GATES,
    Gate,
    GateKind,
    GateOutput,
    RateEstimate,
    RateStats,
    plus,
)
from innet.info import entropy

__all__ = [
    "EMA_DECAY",
    "COMMITMENT",
    "RESTART_EVERY",
    "DiscreteGate",
    "DiscreteKind",
    "discrete_rate_bits",
]

_LN2 = math.log(2.0)
EMA_DECAY = 0.95
"""Weight of the past in a discrete gate's running codeword means (per training batch)."""
COMMITMENT = 0.25
"""Weight of a fixed-codebook discrete gate's commitment loss ``|z - nearest c|^2`` (VQ-VAE's)."""
RESTART_EVERY = 20
"""Training batches between two dead-codeword checks of a discrete gate."""


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
    # buffers (see __init__)
    codebook: torch.Tensor
    ema_count: torch.Tensor
    ema_sum: torch.Tensor
    published: torch.Tensor | None
    usage: torch.Tensor
    initialised: torch.Tensor

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
        if self.publishes:
            assert self.published is not None
            return self.published
        return self.codebook

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
        self._prepare(z)
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
        if self.training:
            t = t + (z - z.detach())  # exactly the codeword; the latent gets its gradient
        return GateOutput(
            t=t, rate_bits=rate, probs=probs, index=index, commitment=self._commitment(scores)
        )

    def _prepare(self, z: torch.Tensor) -> None:
        """A training batch's upkeep before it quantises: the codebook's, then publishing."""
        if self.training and self.train_codebook:
            self._maintain(z.detach())
        if self.training and self._publish_next:
            assert self.published is not None
            self.published.copy_(self.codebook)
            self._publish_next = False

    def _commitment(self, scores: torch.Tensor) -> torch.Tensor | None:
        """A fixed codebook's commitment loss (the latents must come to it); else None."""
        if self.train_codebook:
            return None
        nearest = (-scores).min(dim=-1).values  # |z_g - c_g|^2 to the nearest codeword
        return COMMITMENT * nearest.sum(dim=-1).mean()

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
            self._initialise(slices)
            return
        self._steps += 1
        if self._steps % RESTART_EVERY == 0:
            self._restart_dead(slices)

    def _initialise(self, slices: torch.Tensor) -> None:
        """Each group's codewords: distinct random rows of the batch's latent slices."""
        for group in range(self.groups):
            rows = self._random_rows(slices.shape[0], self.codewords, distinct=True)
            self.codebook[group] = slices[rows, group].to(self.codebook.dtype)
        self.ema_sum.copy_(self.codebook)
        self.ema_count.fill_(1.0)
        self.initialised.fill_(True)

    def _restart_dead(self, slices: torch.Tensor) -> None:
        """Move each codeword chosen by no sample since the last check onto a random latent."""
        dead = self.usage == 0
        for group, code in dead.nonzero().tolist():
            row = self._random_rows(slices.shape[0], 1, distinct=False)
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


class DiscreteKind(GateKind):
    """The ``discrete`` kind: its gate, and its rate from the summed ``p(t_g|z)`` and entropies."""

    config_fields = ("codewords", "groups", "tau", "tau_final", "codebook", "codebook_sync")
    has_codebook = True

    def build(
        self,
        dim: int,
        *,
        generator: torch.Generator,
        codewords: int = 16,
        tau: float = 1.0,
        train_codebook: bool = True,
        groups: int = 1,
        tau_final: float | None = None,
        publishes: bool = False,
        **_: Any,
    ) -> Gate:
        """A :class:`DiscreteGate` (``codewords`` K per group, ``groups`` m dividing ``dim``;
        temperature ``tau`` at the start of training, ``tau_final`` at its end)."""
        if codewords < 2:
            raise InnetError(f"a discrete gate needs at least 2 codewords, got {codewords}")
        if not tau > 0 or not (tau_final is None or tau_final > 0):
            raise InnetError(
                f"gate temperature tau must be positive, got {tau} (final {tau_final})"
            )
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

    def observe(self, stats: RateStats, out: GateOutput, keep: np.ndarray | None) -> None:
        assert out.probs is not None
        batch = int(out.t.shape[0])
        probs = out.probs.detach().double().cpu().numpy()
        probs = probs.reshape(batch, -1, probs.shape[-1])  # [batch, groups, K]
        probs = probs / probs.sum(axis=-1, keepdims=True)
        stats.prob_sum = plus(stats.prob_sum, probs.sum(axis=0))
        rows = np.asarray(entropy(probs.reshape(-1, probs.shape[-1]))).reshape(batch, -1)
        stats.entropy_sum = plus(stats.entropy_sum, rows.sum(axis=0))  # [groups]

    def estimate(self, stats: RateStats, bracket: bool) -> RateEstimate:
        """The groups' informations over the set, and their sum (capped at the ceiling)."""
        assert stats.prob_sum is not None and stats.entropy_sum is not None
        ceiling = float(stats.ceiling_bits)
        mean = stats.prob_sum / stats.samples  # [groups, K]
        marginal = entropy(mean / mean.sum(axis=-1, keepdims=True))
        groups = np.maximum(marginal - stats.entropy_sum / stats.samples, 0.0)
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


GATES.register("discrete", DiscreteKind())
