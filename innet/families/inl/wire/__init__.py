"""Wire formats: what a node's message becomes on the link, and back.

Every message between two nodes is *encoded* by its sender into the tensor
the transport carries, and *decoded* by its receiver, which trains on what it
decoded. The recording transport counts the bytes of the encoded tensor
(``numel × element_size``, plus the header), so a format that sends fewer
bytes costs less on every link, in the exchange totals and in simulated
time; under torchrun the encoded bytes are what crosses the process boundary.

Formats of the forward latents (``wire.forward``, :data:`FORWARD_FORMATS`)
and of the backward gradients (``wire.backward``, :data:`BACKWARD_FORMATS`),
one file each:

- ``float32`` (the default, :mod:`.float32`): the tensor itself, ``4`` bytes per value.
- ``float16``, ``bfloat16`` (:mod:`.float16`, :mod:`.bfloat16`): cast, then
  sent as its raw bytes, ``2`` bytes per value.
- ``int8`` (:mod:`.int8`): one float32 scale per message and stochastically
  rounded int8 symbols, ``4 + numel`` bytes.
- ``index`` (:mod:`.index`, forward only, a gate with a codebook): the
  codeword indices packed at ``ceil(log2 K)`` bits; the receivers hold the
  sender's published codebook.
- ``entropy`` (:mod:`.entropy`, forward only): quantised symbols coded by
  Zstandard; ``nbytes`` is what the coder produced.

A format is one :class:`~innet.families.inl.wire.base.WireFormat` object;
adding one is one new file that registers it (imported below) and its tests.
:class:`Codec` dispatches each message to its format.
:func:`message_bits_per_sample` is what a message of a format can carry per
sample: no reported rate of a node exceeds it.

>>> import torch
>>> codec = make_codec("int8", dim=3)
>>> x = torch.tensor([[0.5, -1.0, 0.25]])
>>> message = codec.encode(x, generator=torch.Generator().manual_seed(0))
>>> message.dtype, message.numel()  # 4 bytes of scale, then one byte per value
(torch.uint8, 7)
"""

# each format's module registers it on import, in the order every list of formats shows
# isort: off
from innet.families.inl.wire import float32, float16, bfloat16, int8, index, entropy  # noqa: F401

# isort: on
from innet.families.inl.wire.base import (
    BACKWARD_FORMATS,
    FORWARD_FORMATS,
    Codec,
    WireFormat,
    wire_format,
)
from innet.families.inl.wire.codec import (
    forward_message_bytes,
    make_codec,
    message_bits_per_sample,
    publishes_codebook,
)

__all__ = [
    "FORWARD_FORMATS",
    "BACKWARD_FORMATS",
    "WireFormat",
    "Codec",
    "make_codec",
    "wire_format",
    "message_bits_per_sample",
    "forward_message_bytes",
    "publishes_codebook",
]
