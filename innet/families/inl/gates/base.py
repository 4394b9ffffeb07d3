"""What every gate kind shares: the registry of kinds, a gate's output, its reported rate.

A gate kind is one :class:`GateKind` object in :data:`GATES`: it builds the
gate module (:meth:`GateKind.build`), says which fields of the scenario's
``gate`` block it uses (:attr:`GateKind.config_fields`), and turns a node's
evaluation batches into its reported rate (:meth:`GateKind.observe`,
:meth:`GateKind.estimate`). :class:`RateStats` holds what those batches leave
behind, batch by batch and across processes; :class:`RateEstimate` is the
result. A kind that reports no estimate of its own reports the *ceiling*: the
bits its message carries per sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from innet.core.errors import InnetError
from innet.core.registry import Registry
from innet.info import RunningMoments

__all__ = [
    "GATES",
    "GateKind",
    "GateOutput",
    "Gate",
    "RateEstimate",
    "RateStats",
    "RATE_METRICS",
    "BRACKET_METRICS",
    "FUSION_METRICS",
    "make_gate",
]


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
    discrete gate's commitment loss (see
    :class:`~innet.families.inl.gates.discrete.DiscreteGate`), else None.
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
    - ``ceiling`` (``none`` gate, and any kind without an estimator).

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
    turned into a :class:`RateEstimate` by :meth:`estimate`; what a batch adds
    and what the estimate is are the gate kind's (:meth:`GateKind.observe`,
    :meth:`GateKind.estimate`):

    - ``gaussian``: the rows ``(mu, sigma)`` of a seeded subsample of the
      evaluation inputs (``bracket_rows``: the Monte Carlo estimate and the
      pairwise bracket of the empirical mixture's information),
      :class:`~innet.info.RunningMoments` of ``(mu, sigma)`` over the whole set
      (``moments``: the moment-matched upper bound, streamed) and the VIB KL
      summed over samples (``vib_kl_sum``);
    - ``discrete``: the sum of ``p(t_g|z)`` and of ``H(p(t_g|z))`` over samples
      (``prob_sum``, ``entropy_sum``, per group ``g``), so that
      ``sum_g [H(mean p_g) - mean H(p_g)]`` is the rate of the whole set;
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
        self.samples += int(out.t.shape[0])
        GATES.get(self.kind).observe(self, out, keep)
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
            self.prob_sum = plus(self.prob_sum, other.prob_sum)
            self.entropy_sum = plus(self.entropy_sum, other.entropy_sum)
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
        if self.samples == 0:
            return ceiling_estimate(self.ceiling_bits)
        return GATES.get(self.kind).estimate(self, bracket)


def ceiling_estimate(ceiling_bits: float) -> RateEstimate:
    """The rate of a gate without an estimator: the bits its message carries, flagged capped."""
    ceiling = float(ceiling_bits)
    return RateEstimate(ceiling, None, ceiling, True, "ceiling")


def plus(total: np.ndarray | None, more: np.ndarray | None) -> np.ndarray | None:
    """``total + more`` where either may be None (nothing yet)."""
    if more is None:
        return total
    return more.copy() if total is None else total + more


class GateKind:
    """One kind of gate: how to build it, what it reads from the scenario, how its rate is told.

    Subclass it, override :meth:`build` (and :meth:`observe` and
    :meth:`estimate` where the kind estimates its rate; the default reports
    the ceiling), and register an instance: ``GATES.register("name", Kind())``.
    ``config_fields``: the fields of the scenario's ``gate`` block that only
    this kind uses (the others are left out of a run's ``config.yaml``);
    ``has_codebook``: its messages are codewords, which formats that send
    indices (:mod:`innet.families.inl.wire`) look up.
    """

    config_fields: tuple[str, ...] = ()
    has_codebook: bool = False

    def build(self, dim: int, *, generator: torch.Generator, **options: Any) -> Gate:
        """The gate for latents of ``dim`` values, drawing its randomness from ``generator``.

        ``options``: the gate block's settings (``codewords``, ``tau``...); a kind
        takes those it uses and ignores the others.
        """
        raise NotImplementedError

    def observe(self, stats: RateStats, out: GateOutput, keep: np.ndarray | None) -> None:
        """Add what one evaluation batch's output says about the rate to ``stats``."""

    def estimate(self, stats: RateStats, bracket: bool) -> RateEstimate:
        """The reported rate from ``stats`` (not empty); by default the ceiling."""
        return ceiling_estimate(stats.ceiling_bits)


GATES: Registry[GateKind] = Registry("gate kind")
"""The gate kinds a scenario's ``gate.kind`` may name."""


def make_gate(kind: str, dim: int, *, generator: torch.Generator, **options: Any) -> Gate:
    """A gate of ``kind`` (a name in :data:`GATES`) for latents of size ``dim``.

    ``options`` are the gate block's settings the kind uses (the discrete
    gate's ``codewords``, ``tau``, ``tau_final``, ``groups``,
    ``train_codebook``, ``publishes``). Parameters are initialised from
    ``generator`` (as ``nn.Linear`` would, but reproducibly), and the gate
    keeps ``generator`` to draw its noise.
    """
    gate_kind = GATES.get(kind)
    if dim < 1:
        raise InnetError(f"gate dimension must be positive, got {dim}")
    return gate_kind.build(dim, generator=generator, **options)
