"""What every wire format shares: the registries of formats and the shape of one.

A wire format is one :class:`WireFormat` object, registered under its name in
:data:`FORWARD_FORMATS` (latents and evaluation messages), in
:data:`BACKWARD_FORMATS` (gradients), or in both. The format says how a
message is encoded and decoded (:meth:`WireFormat.encode`,
:meth:`WireFormat.decode`), what shape the receiver expects
(:meth:`WireFormat.announce`), how many bits a sample can carry
(:meth:`WireFormat.bits_per_sample`, the ceiling of any reported rate) and
whether it sends codeword indices (:attr:`WireFormat.needs_codebook`,
:meth:`WireFormat.sends_indices`). A :class:`Codec` holds what a message's
encoding depends on besides its values (the values per sample, the sender's
codebook or its shape) and hands each message to its format.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from innet.core.errors import InnetError
from innet.core.registry import Registry

__all__ = [
    "FORWARD_FORMATS",
    "BACKWARD_FORMATS",
    "WireFormat",
    "CastFormat",
    "index_bits",
    "lookup_codewords",
    "wire_format",
    "Codec",
]


def index_bits(codewords: int) -> int:
    """Bits of one codeword index: ``ceil(log2 K)`` (at least 1).

    >>> index_bits(16), index_bits(17), index_bits(2)
    (4, 5, 1)
    """
    return max(1, math.ceil(math.log2(codewords)))


class WireFormat:
    """One wire format: subclass it and register an instance in the registries it serves.

    ``needs_codebook``: the format sends codeword indices, so the gate must
    have a codebook; ``uses_codebook``: the receivers of a gate with a
    codebook decode with their copy of it (its senders then publish it).
    ``scale_bytes``: bytes a message carries besides its samples' values
    (the int8 scale), when it does not send indices.
    """

    needs_codebook: bool = False
    uses_codebook: bool = False
    scale_bytes: int = 0

    def sends_indices(self, codewords: int | None) -> bool:
        """Whether messages are codeword indices (given the gate's codewords, None: none)."""
        return self.needs_codebook

    def bits_per_value(self) -> int:
        """Bits one value of a message takes (formats that send values)."""
        raise NotImplementedError

    def bits_per_sample(self, dim: int, codewords: int | None, groups: int) -> float:
        """The bits a message carries per sample: the ceiling of any reported rate."""
        return float(dim * self.bits_per_value())

    def announce(self, codec: Codec, batch: int) -> tuple[tuple[int, ...], torch.dtype]:
        """Shape and dtype of an encoded message of ``batch`` samples."""
        raise NotImplementedError

    def encode(
        self,
        codec: Codec,
        values: torch.Tensor,
        index: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """The message for ``values`` (``[batch, dim]``, detached); ``index``: the codewords."""
        raise NotImplementedError

    def decode(
        self, codec: Codec, message: torch.Tensor, batch: int, codebook: torch.Tensor | None
    ) -> torch.Tensor:
        """The float32 ``[batch, dim]`` values a receiver gets from ``message``."""
        raise NotImplementedError


class CastFormat(WireFormat):
    """Values cast to ``dtype`` and sent as raw bytes."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype

    def bits_per_value(self) -> int:
        return 8 * self.dtype.itemsize

    def announce(self, codec: Codec, batch: int) -> tuple[tuple[int, ...], torch.dtype]:
        return (batch, self.dtype.itemsize * codec.dim), torch.uint8

    def encode(
        self,
        codec: Codec,
        values: torch.Tensor,
        index: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        return values.to(self.dtype).contiguous().view(torch.uint8)

    def decode(
        self, codec: Codec, message: torch.Tensor, batch: int, codebook: torch.Tensor | None
    ) -> torch.Tensor:
        return message.contiguous().view(self.dtype).reshape(batch, codec.dim).float()


FORWARD_FORMATS: Registry[WireFormat] = Registry("forward wire format")
"""Wire formats of the forward (and evaluation) latents (``wire.forward``)."""
BACKWARD_FORMATS: Registry[WireFormat] = Registry("backward wire format")
"""Wire formats of the backward gradients (``wire.backward``)."""


def lookup_codewords(
    codec: Codec, symbols: np.ndarray, batch: int, codebook: torch.Tensor | None
) -> torch.Tensor:
    """The codewords ``symbols`` (one per sample and group) name, ``[batch, dim]`` float32.

    ``codebook``: the receiver's copy of the sender's codebook (default: the codec's own).
    """
    book = codec.codebook if codebook is None else codebook.detach().float().cpu()
    if book is None:
        raise InnetError("decoding codeword indices needs the sender's codebook")
    count = batch * codec.groups
    index = torch.from_numpy(np.ascontiguousarray(symbols[:count])).reshape(batch, codec.groups)
    rows = book[torch.arange(codec.groups), index]  # [batch, groups, dim / m]
    return rows.reshape(batch, codec.dim)


def wire_format(name: str) -> WireFormat:
    """The format called ``name``, forward or backward (an error listing the forward ones)."""
    if name not in FORWARD_FORMATS and name in BACKWARD_FORMATS:
        return BACKWARD_FORMATS.get(name)
    return FORWARD_FORMATS.get(name)


class Codec:
    """One wire format for messages of ``dim`` values per sample.

    ``encode(values, ...)`` gives the tensor handed to the transport,
    ``decode(message, batch)`` the float32 ``[batch, dim]`` tensor the
    receiver uses, and ``announce(batch)`` the ``(shape, dtype)`` the
    receiver expects (``ANY`` where only the sender knows the size).
    For formats that send indices, ``codebook`` (``m × K × dim / m``, or
    ``K × dim`` for one group) holds the codewords ``decode`` looks up by
    default; or ``codewords`` (K) and ``groups`` (m) give only the shape,
    and every ``decode`` names the receiver's copy of the codebook.
    """

    def __init__(
        self,
        name: str,
        dim: int,
        codebook: torch.Tensor | None = None,
        *,
        codewords: int | None = None,
        groups: int = 1,
    ) -> None:
        self.name = name
        self.format = wire_format(name)
        self.dim = dim
        if codebook is not None and codebook.dim() == 2:
            codebook = codebook.unsqueeze(0)  # one group
        self.codebook = None if codebook is None else codebook.detach().float()
        if self.codebook is not None:
            groups, codewords = int(self.codebook.shape[0]), int(self.codebook.shape[1])
        if self.format.needs_codebook and codewords is None:
            raise InnetError(f"the {name!r} wire format needs a discrete gate (a codebook)")
        self.sends_indices = self.format.sends_indices(codewords)
        self.groups = groups if self.sends_indices else 1
        self.codewords = codewords if self.sends_indices else None

    @property
    def identity(self) -> bool:
        """True when the message is the tensor itself (``float32``)."""
        return self.name == "float32"

    def announce(self, batch: int) -> tuple[tuple[int, ...], torch.dtype]:
        """Shape and dtype of an encoded message of ``batch`` samples."""
        return self.format.announce(self, batch)

    def encode(
        self,
        values: torch.Tensor,
        *,
        index: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The message for ``values`` (``[batch, dim]``); ``index``: the codewords sent.

        ``generator`` draws the stochastic rounding of ``int8`` symbols.
        """
        return self.format.encode(self, values.detach(), index, generator)

    def decode(
        self, message: torch.Tensor, batch: int, codebook: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The float32 ``[batch, dim]`` values a receiver gets from ``message``.

        ``codebook``: the receiver's copy of the sender's codebook (``m × K ×
        dim / m``), for formats that send indices (default: the codec's own).
        """
        return self.format.decode(self, message, batch, codebook)

    def symbols(self, index: torch.Tensor | None) -> np.ndarray:
        """The codeword indices a message sends, flat, as int64 (formats that send indices)."""
        if index is None:
            raise InnetError(f"the {self.name!r} wire format needs the codeword indices")
        return index.detach().cpu().numpy().astype(np.int64).reshape(-1)
