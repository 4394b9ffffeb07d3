"""The ``entropy`` wire format (forward only): quantised symbols coded by Zstandard.

The message is quantised (the codeword indices of a gate with a codebook,
one byte per index, two above 256 codewords; otherwise ``int8`` symbols with
their float32 scale in front) and the symbols are coded by Zstandard
(``zstandard``, level 19: Huffman/FSE entropy coding of the symbols behind an
LZ stage, a self-describing frame, so the receiver needs no model).
``nbytes`` is the length of the byte string the coder produced (plus the
4-byte scale for ``int8`` symbols); its size varies from message to message
and is announced as :data:`~innet.core.transport.ANY`.

>>> import torch
>>> from innet.families.inl.wire import make_codec
>>> codec = make_codec("entropy", dim=3)
>>> x = torch.zeros(8, 3)
>>> codec.decode(codec.encode(x, generator=torch.Generator().manual_seed(0)), 8).abs().sum()
tensor(0.)
"""

from __future__ import annotations

import numpy as np
import torch
import zstandard

from innet.core.transport import ANY
from innet.families.inl.wire.base import (
    FORWARD_FORMATS,
    Codec,
    WireFormat,
    index_bits,
    lookup_codewords,
)
from innet.families.inl.wire.int8 import SCALE_BYTES, quantise_int8, read_scale, scale_header

__all__ = ["ZSTD_LEVEL", "EntropyFormat"]

ZSTD_LEVEL = 19
"""Zstandard's compression level for the ``entropy`` format."""


class EntropyFormat(WireFormat):
    """Codeword indices, or int8 symbols behind their scale, entropy-coded by Zstandard."""

    uses_codebook = True
    scale_bytes = SCALE_BYTES

    def sends_indices(self, codewords: int | None) -> bool:
        return codewords is not None

    def bits_per_value(self) -> int:
        return 8

    def bits_per_sample(self, dim: int, codewords: int | None, groups: int) -> float:
        if codewords is not None:
            return float(groups * index_bits(codewords))
        return super().bits_per_sample(dim, codewords, groups)

    def announce(self, codec: Codec, batch: int) -> tuple[tuple[int, ...], torch.dtype]:
        return (ANY,), torch.uint8  # the coder decides

    def encode(
        self,
        codec: Codec,
        values: torch.Tensor,
        index: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        if codec.sends_indices:
            raw = codec.symbols(index).astype(_symbol_dtype(codec)).tobytes()
            return _bytes_tensor(_compress(raw, ZSTD_LEVEL)).to(values.device)
        scale, symbols = quantise_int8(values, generator)
        coded = _bytes_tensor(_compress(symbols.cpu().numpy().tobytes(), ZSTD_LEVEL))
        return torch.cat([scale_header(scale), coded]).to(values.device)

    def decode(
        self, codec: Codec, message: torch.Tensor, batch: int, codebook: torch.Tensor | None
    ) -> torch.Tensor:
        raw = message.cpu()
        if codec.sends_indices:
            decoded = _decompress(raw.numpy().tobytes())
            symbols = np.frombuffer(decoded, dtype=_symbol_dtype(codec)).astype(np.int64)
            return lookup_codewords(codec, symbols, batch, codebook).to(message.device)
        decoded = _decompress(raw[SCALE_BYTES:].numpy().tobytes())
        values = torch.frombuffer(bytearray(decoded), dtype=torch.int8)
        return (values.reshape(batch, codec.dim).float() * read_scale(raw)).to(message.device)


def _symbol_dtype(codec: Codec) -> np.dtype:
    """One byte per codeword index, two above 256 codewords."""
    return np.dtype(np.uint8) if (codec.codewords or 0) <= 256 else np.dtype("<u2")


def _compress(data: bytes, level: int) -> bytes:
    return zstandard.ZstdCompressor(level=level, write_checksum=False).compress(data)


def _decompress(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompress(data)


def _bytes_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


FORWARD_FORMATS.register("entropy", EntropyFormat())
