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

A gate kind is one :class:`~innet.families.inl.gates.base.GateKind` in
:data:`GATES`, one file each: :mod:`.none`, :mod:`.gaussian`,
:mod:`.discrete`. Adding a kind is one new file that registers it (imported
below, and its tests); :func:`make_gate` looks the kind up by name.

>>> import torch
>>> generator = torch.Generator().manual_seed(0)
>>> gate = make_gate("discrete", 4, generator=generator, codewords=8)
>>> out = gate(torch.randn(32, 4, generator=generator))
>>> out.t.shape, gate.wire_dim, bool(out.rate_bits <= 3.0)
(torch.Size([32, 4]), 4, True)
"""

# each kind's module registers it on import, in the order every list of kinds shows
# isort: off
from innet.families.inl.gates import none, gaussian, discrete  # noqa: F401

# isort: on
from innet.families.inl.gates.base import (
    BRACKET_METRICS,
    FUSION_METRICS,
    GATES,
    RATE_METRICS,
    Gate,
    GateKind,
    GateOutput,
    RateEstimate,
    RateStats,
    make_gate,
)

__all__ = [
    "GATES",
    "GateKind",
    "GateOutput",
    "Gate",
    "RateStats",
    "RateEstimate",
    "RATE_METRICS",
    "BRACKET_METRICS",
    "FUSION_METRICS",
    "make_gate",
]
