"""Codecs by name, and what a message of a wire format carries.

:func:`make_codec` builds the :class:`~innet.families.inl.wire.base.Codec` of
a format; :func:`message_bits_per_sample` is what a message of a format can
carry per sample: no reported rate of a node exceeds it;
:func:`forward_message_bytes` the size of a whole message (what the
capacity-aware routing weighs links by); :func:`publishes_codebook` whether a
sender must send its receivers its codebook.
"""

from __future__ import annotations

import math

import torch

from innet.families.inl.gates import GATES
from innet.families.inl.wire.base import Codec, wire_format

__all__ = [
    "make_codec",
    "message_bits_per_sample",
    "forward_message_bytes",
    "publishes_codebook",
]


def make_codec(
    name: str,
    dim: int,
    codebook: torch.Tensor | None = None,
    *,
    codewords: int | None = None,
    groups: int = 1,
) -> Codec:
    """The codec of wire format ``name`` for messages of ``dim`` values per sample.

    A discrete gate's sender gives its ``codebook``, or only its shape
    (``codewords`` per group, ``groups``), see :class:`Codec`.
    """
    return Codec(name, dim, codebook, codewords=codewords, groups=groups)


def message_bits_per_sample(
    name: str, dim: int, codewords: int | None = None, groups: int = 1
) -> float:
    """The bits a message of format ``name`` carries per sample: the ceiling of any rate.

    Float formats: ``dim ×`` bits per element (32, 16, 16, 8; the int8
    message's scale is not counted per sample). ``index``: ``groups ×
    ceil(log2 K)``. ``entropy``: the bits of the symbols it codes (the same
    with codeword indices, else ``8 × dim``); a coder cannot carry more.

    >>> message_bits_per_sample("float32", 16), message_bits_per_sample("index", 16, 16)
    (512.0, 4.0)
    >>> message_bits_per_sample("index", 16, 16, groups=4)
    16.0
    """
    return wire_format(name).bits_per_sample(dim, codewords, groups)


def forward_message_bytes(
    name: str, batch: int, dim: int, codewords: int | None = None, groups: int = 1
) -> int:
    """Bytes of a message of ``batch`` samples in format ``name``, without a header.

    The bits its samples carry, rounded up to bytes, plus the scale of a
    format that sends scaled symbols (``int8``, ``entropy`` without a
    codebook); for ``entropy``, whose size only the coder knows, the symbols it codes.

    >>> forward_message_bytes("int8", 64, 16), forward_message_bytes("index", 5, 4, 16)
    (1028, 3)
    """
    wire = wire_format(name)
    payload = math.ceil(batch * wire.bits_per_sample(dim, codewords, groups) / 8)
    return payload + (0 if wire.sends_indices(codewords) else wire.scale_bytes)


def publishes_codebook(gate_kind: str, wire_forward: str) -> bool:
    """Whether a sender with this gate sends its codebook to its parents over the link.

    >>> publishes_codebook("discrete", "index"), publishes_codebook("discrete", "float32")
    (True, False)
    """
    return GATES.get(gate_kind).has_codebook and wire_format(wire_forward).uses_codebook
