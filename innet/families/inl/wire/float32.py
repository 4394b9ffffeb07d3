"""The ``float32`` wire format (the default): the tensor itself, 4 bytes per value.

>>> import torch
>>> from innet.families.inl.wire import make_codec
>>> make_codec("float32", dim=3).announce(2)
((2, 3), torch.float32)
"""

from __future__ import annotations

import torch

from innet.families.inl.wire.base import BACKWARD_FORMATS, FORWARD_FORMATS, Codec, WireFormat

__all__ = ["Float32Format"]


class Float32Format(WireFormat):
    """The message is the float32 tensor, unchanged."""

    def bits_per_value(self) -> int:
        return 32

    def announce(self, codec: Codec, batch: int) -> tuple[tuple[int, ...], torch.dtype]:
        return (batch, codec.dim), torch.float32

    def encode(
        self,
        codec: Codec,
        values: torch.Tensor,
        index: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        return values

    def decode(
        self, codec: Codec, message: torch.Tensor, batch: int, codebook: torch.Tensor | None
    ) -> torch.Tensor:
        return message


FORWARD_FORMATS.register("float32", Float32Format())
BACKWARD_FORMATS.register("float32", FORWARD_FORMATS.get("float32"))
