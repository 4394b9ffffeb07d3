"""Information theory of finite-rate gating: pure functions on numpy arrays.

A family of small, independent algorithms (in the manner of a networkx
algorithm family), each module opening with what its concept means:

- :mod:`innet.info.entropy` — :func:`entropy`, :func:`kl_divergence`,
  :func:`mutual_information` of a joint table, and
  :func:`mixture_mutual_information` ``H(mean rows) - mean H(rows)``, the one
  estimator behind the discrete gate's rate, ``I(X;Y)`` of a channel and the
  finite-bank ``Î(S;W)``.
- :mod:`innet.info.blahut_arimoto` — :func:`channel_capacity`,
  :func:`rate_distortion` and :func:`rate_distortion_curve`, with certified
  convergence gaps, and :func:`distortion_lower_bound` (``D(R)`` from below).
- :mod:`innet.info.gaussian` — rate estimates for a Gaussian gate
  ``T = mu + sigma * eps``: the information of the empirical mixture over
  ``n`` inputs (at most ``log2 n``) by Monte Carlo,
  :func:`mixture_information_mc`, inside the Kolchinsky–Tracey
  :func:`pairwise_bracket`; and :func:`gaussian_channel_upper_bound`
  (streamable with :class:`RunningMoments`), a loose upper bound on the
  population ``I(Z;T)``.
- :mod:`innet.info.bounds` — :func:`xu_raginsky_bound`, :func:`union_bound`
  (mutual information in nats), :func:`gibbs_posterior` and
  :func:`symmetrized_kl_information` (the Gibbs rule's exact gap).

Results are in bits unless a function says otherwise. Inputs are array-likes
converted to float64 numpy arrays; invalid ones raise ``ValueError``. Torch
tensors are converted by the caller (``tensor.detach().cpu().numpy()``).

>>> import innet.info as info
>>> round(info.channel_capacity([[0.9, 0.1], [0.1, 0.9]]).capacity, 6)
0.531004
"""

from innet.info.blahut_arimoto import (
    ChannelCapacity,
    RateDistortionCurve,
    RateDistortionPoint,
    channel_capacity,
    distortion_lower_bound,
    rate_distortion,
    rate_distortion_curve,
)
from innet.info.bounds import (
    gibbs_posterior,
    symmetrized_kl_information,
    union_bound,
    xu_raginsky_bound,
)
from innet.info.entropy import (
    entropy,
    kl_divergence,
    mixture_mutual_information,
    mutual_information,
)
from innet.info.gaussian import (
    SATURATION_MARGIN_BITS,
    MixtureInformation,
    PairwiseBracket,
    RunningMoments,
    gaussian_channel_upper_bound,
    mixture_information_mc,
    pairwise_bracket,
)

__all__ = [
    "SATURATION_MARGIN_BITS",
    "ChannelCapacity",
    "MixtureInformation",
    "PairwiseBracket",
    "RateDistortionCurve",
    "RateDistortionPoint",
    "RunningMoments",
    "channel_capacity",
    "distortion_lower_bound",
    "entropy",
    "gaussian_channel_upper_bound",
    "gibbs_posterior",
    "kl_divergence",
    "mixture_information_mc",
    "mixture_mutual_information",
    "mutual_information",
    "pairwise_bracket",
    "rate_distortion",
    "rate_distortion_curve",
    "symmetrized_kl_information",
    "union_bound",
    "xu_raginsky_bound",
]
