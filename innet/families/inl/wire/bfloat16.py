"""The ``bfloat16`` wire format: values cast to bfloat16, sent as raw bytes, 2 bytes per value.

The receiver casts back to float32 (see :class:`~innet.families.inl.wire.base.CastFormat`).

>>> import torch
>>> from innet.families.inl.wire import make_codec
>>> codec = make_codec("bfloat16", dim=3)
>>> codec.announce(2)
((2, 6), torch.uint8)
>>> codec.decode(codec.encode(torch.tensor([[1.0, -2.0, 0.5]])), 1).tolist()
[[1.0, -2.0, 0.5]]
"""

from __future__ import annotations

import torch

from innet.families.inl.wire.base import BACKWARD_FORMATS, FORWARD_FORMATS, CastFormat

__all__: list[str] = []

FORWARD_FORMATS.register("bfloat16", CastFormat(torch.bfloat16))
BACKWARD_FORMATS.register("bfloat16", FORWARD_FORMATS.get("bfloat16"))
