"""The ``int8`` wire format: one float32 scale per message, then one byte per value.

``s = max |x| / 127`` and ``q = floor(x / s + u)`` with ``u`` uniform in
``[0, 1)`` (stochastic rounding: unbiased, error below ``s``), drawn from a
generator seeded by ``(seed, node, step)`` so runs are reproducible.
``4 + numel`` bytes; the receiver decodes ``q × s``.

>>> import torch
>>> from innet.families.inl.wire import make_codec
>>> codec = make_codec("int8", dim=3)
>>> x = torch.tensor([[0.5, -1.0, 0.25]])
>>> message = codec.encode(x, generator=torch.Generator().manual_seed(0))
>>> message.dtype, message.numel()  # 4 bytes of scale, then one byte per value
(torch.uint8, 7)
>>> bool((codec.decode(message, 1) - x).abs().max() <= 1.0 / 127)
True
"""

from __future__ import annotations

import math

import numpy as np
import torch

from innet.families.inl.wire.base import BACKWARD_FORMATS, FORWARD_FORMATS, Codec, WireFormat

__all__ = ["SCALE_BYTES", "Int8Format", "quantise_int8", "scale_header", "read_scale"]

SCALE_BYTES = 4
"""Bytes of the float32 scale in front of int8 symbols."""


def quantise_int8(
    values: torch.Tensor, generator: torch.Generator | None
) -> tuple[float, torch.Tensor]:
    """``(scale, q)``: ``q = floor(values / scale + u)`` in ``[-127, 127]`` as int8.

    ``scale = max |values| / 127`` (1 when every value is 0); ``u`` uniform in
    ``[0, 1)`` from ``generator`` (on its device, then moved), so that
    ``E[q × scale] = values`` and ``|q × scale - values| < scale``.
    """
    peak = float(values.abs().max()) if values.numel() else 0.0
    scale = peak / 127.0 if peak > 0 and math.isfinite(peak) else 1.0
    device = generator.device if generator is not None else values.device
    noise = torch.rand(values.shape, generator=generator, device=device, dtype=torch.float32)
    scaled = values.float() / torch.tensor(scale, dtype=torch.float32, device=values.device)
    symbols = torch.floor(scaled + noise.to(values.device)).clamp_(-127, 127)
    return float(np.float32(scale)), symbols.to(torch.int8)


def scale_header(scale: float) -> torch.Tensor:
    """The scale as the :data:`SCALE_BYTES` bytes that open a message."""
    return torch.tensor([scale], dtype=torch.float32).view(torch.uint8)


def read_scale(message: torch.Tensor) -> float:
    """The scale at the front of a message (on the CPU)."""
    return float(message[:SCALE_BYTES].clone().view(torch.float32)[0])


class Int8Format(WireFormat):
    """Stochastically rounded int8 symbols behind a float32 scale."""

    scale_bytes = SCALE_BYTES

    def bits_per_value(self) -> int:
        return 8

    def announce(self, codec: Codec, batch: int) -> tuple[tuple[int, ...], torch.dtype]:
        return (SCALE_BYTES + batch * codec.dim,), torch.uint8

    def encode(
        self,
        codec: Codec,
        values: torch.Tensor,
        index: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        scale, symbols = quantise_int8(values, generator)
        body = symbols.reshape(-1).view(torch.uint8).cpu()
        return torch.cat([scale_header(scale), body]).to(values.device)

    def decode(
        self, codec: Codec, message: torch.Tensor, batch: int, codebook: torch.Tensor | None
    ) -> torch.Tensor:
        raw = message.cpu()
        symbols = raw[SCALE_BYTES:].clone().view(torch.int8)
        return (symbols.reshape(batch, codec.dim).float() * read_scale(raw)).to(message.device)


FORWARD_FORMATS.register("int8", Int8Format())
BACKWARD_FORMATS.register("int8", FORWARD_FORMATS.get("int8"))
