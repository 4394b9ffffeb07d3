"""Wire formats: what a node's message becomes on the link, and back.

Every message between two nodes is *encoded* by its sender into the tensor
the transport carries, and *decoded* by its receiver, which trains on what it
decoded. The recording transport counts the bytes of the encoded tensor
(``numel × element_size``, plus the header), so a format that sends fewer
bytes costs less on every link, in the exchange totals and in simulated
time; under torchrun the encoded bytes are what crosses the process boundary.

Formats of the forward latents (``wire.forward``) and of the backward
gradients (``wire.backward``):

- ``float32`` (the default): the tensor itself, ``4`` bytes per value.
- ``float16``, ``bfloat16``: cast, then sent as its raw bytes (a ``uint8``
  tensor), ``2`` bytes per value; the receiver casts back to float32.
- ``int8``: one float32 scale per message, ``s = max |x| / 127``, and
  ``q = floor(x / s + u)`` with ``u`` uniform in ``[0, 1)`` (stochastic
  rounding: unbiased, error below ``s``), drawn from a generator seeded by
  ``(seed, node, step)`` so runs are reproducible. ``4 + numel`` bytes; the
  receiver decodes ``q × s``.
- ``index`` (forward only, discrete gate only): the index of the codeword
  each sample sent in each of the gate's ``m`` groups, packed at
  ``ceil(log2 K)`` bits each, ``ceil(batch × m × ceil(log2 K) / 8)`` bytes.
  The receiver looks the codewords up in its copy of the sender's codebook,
  the copy the sender last *published* to it: a float32 ``[m, K, D / m]``
  message of the training phase ``codebook`` (payload ``codebook``), sent
  before the indices and counted like every message. The sender quantises
  against that published codebook while its running means move a working
  copy (:class:`~innet.families.inl.gates.DiscreteGate`), and publishes on its first
  training step, every ``gate.codebook_sync`` steps (a trained codebook; a
  fixed one is sent once), and to a parent that does not hold its current
  codebook (a new parent after a plan change)
  (:class:`~innet.families.inl.executors.per_node.PerNodeExecutor`). The backward
  message is the gradient with respect to the decoded codeword.
- ``entropy`` (forward only): the message is quantised (the codeword
  indices of a discrete gate, one byte per index, two above 256 codewords; otherwise ``int8``
  symbols with their float32 scale in front) and the symbols are coded by
  Zstandard (``zstandard``, level 19: Huffman/FSE entropy coding of the
  symbols behind an LZ stage, a self-describing frame, so the receiver needs
  no model). ``nbytes`` is the length of the byte string the coder produced
  (plus the 4-byte scale for ``int8`` symbols); its size varies from message to
  message and is announced as :data:`~innet.core.transport.ANY`.

:func:`message_bits_per_sample` is what a message of a format can carry per
sample: no reported rate of a node exceeds it.

>>> import torch
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
from typing import Any

import numpy as np
import torch
import zstandard

from innet.core.errors import InnetError
from innet.core.transport import ANY

__all__ = [
    "FORWARD_FORMATS",
    "BACKWARD_FORMATS",
    "CODEBOOK_FORMATS",
    "publishes_codebook",
    "Codec",
    "make_codec",
    "message_bits_per_sample",
    "pack_indices",
    "unpack_indices",
]

FORWARD_FORMATS = ("float32", "float16", "bfloat16", "int8", "index", "entropy")
"""Wire formats of the forward (and evaluation) latents."""
BACKWARD_FORMATS = ("float32", "float16", "bfloat16", "int8")
"""Wire formats of the backward gradients."""
INDEX_FORMATS = ("index",)
"""Formats that send codeword indices: the gate must be discrete."""
CODEBOOK_FORMATS = ("index", "entropy")
"""Formats a discrete gate's receivers decode with its codebook: its senders publish it."""


def publishes_codebook(gate_kind: str, wire_forward: str) -> bool:
    """Whether a sender with this gate sends its codebook to its parents over the link.

    >>> publishes_codebook("discrete", "index"), publishes_codebook("discrete", "float32")
    (True, False)
    """
    return gate_kind == "discrete" and wire_forward in CODEBOOK_FORMATS


_CASTS = {"float16": torch.float16, "bfloat16": torch.bfloat16}
_SCALE_BYTES = 4
_ZSTD_LEVEL = 19


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
        level: int = _ZSTD_LEVEL,
        *,
        codewords: int | None = None,
        groups: int = 1,
    ) -> None:
        self.name = name
        self.dim = dim
        if codebook is not None and codebook.dim() == 2:
            codebook = codebook.unsqueeze(0)  # one group
        self.codebook = None if codebook is None else codebook.detach().float()
        if self.codebook is not None:
            groups, codewords = int(self.codebook.shape[0]), int(self.codebook.shape[1])
        self.level = level
        self.sends_indices = name in INDEX_FORMATS or (name == "entropy" and codewords is not None)
        if name in INDEX_FORMATS and codewords is None:
            raise InnetError(f"the {name!r} wire format needs a discrete gate (a codebook)")
        self.groups = groups if self.sends_indices else 1
        self.codewords = codewords if self.sends_indices else None
        # entropy-coded indices: one byte per symbol (two above 256 codewords)
        self._symbol_dtype = np.uint8 if (self.codewords or 0) <= 256 else np.dtype("<u2")

    @property
    def identity(self) -> bool:
        """True when the message is the tensor itself (``float32``)."""
        return self.name == "float32"

    def announce(self, batch: int) -> tuple[tuple[int, ...], torch.dtype]:
        """Shape and dtype of an encoded message of ``batch`` samples."""
        if self.name == "float32":
            return (batch, self.dim), torch.float32
        if self.name in _CASTS:
            return (batch, 2 * self.dim), torch.uint8
        if self.name == "int8":
            return (_SCALE_BYTES + batch * self.dim,), torch.uint8
        if self.name == "index":
            assert self.codewords is not None
            bits = batch * self.groups * index_bits(self.codewords)
            return (math.ceil(bits / 8),), torch.uint8
        return (ANY,), torch.uint8  # entropy: the coder decides

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
        values = values.detach()
        if self.name == "float32":
            return values
        if self.name in _CASTS:
            return values.to(_CASTS[self.name]).contiguous().view(torch.uint8)
        if self.sends_indices:
            if index is None:
                raise InnetError(f"the {self.name!r} wire format needs the codeword indices")
            symbols = index.detach().cpu().numpy().astype(np.int64).reshape(-1)
            if self.name == "index":
                assert self.codewords is not None
                packed = pack_indices(symbols, index_bits(self.codewords))
                return torch.from_numpy(packed).to(values.device)
            raw = symbols.astype(self._symbol_dtype).tobytes()
            return _bytes_tensor(_zstd_compress(raw, self.level), values.device)
        scale, symbols = quantise_int8(values, generator)
        header = torch.tensor([scale], dtype=torch.float32).view(torch.uint8)
        if self.name == "int8":
            body = symbols.reshape(-1).view(torch.uint8).cpu()
            return torch.cat([header, body]).to(values.device)
        coded = _zstd_compress(symbols.cpu().numpy().tobytes(), self.level)
        return torch.cat([header, torch.frombuffer(bytearray(coded), dtype=torch.uint8)]).to(
            values.device
        )

    def decode(
        self, message: torch.Tensor, batch: int, codebook: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The float32 ``[batch, dim]`` values a receiver gets from ``message``.

        ``codebook``: the receiver's copy of the sender's codebook (``m × K ×
        dim / m``), for formats that send indices (default: the codec's own).
        """
        if self.name == "float32":
            return message
        device = message.device
        if self.name in _CASTS:
            return message.contiguous().view(_CASTS[self.name]).reshape(batch, self.dim).float()
        if self.sends_indices:
            book = self.codebook if codebook is None else codebook.detach().float().cpu()
            if book is None:
                raise InnetError("decoding codeword indices needs the sender's codebook")
            assert self.codewords is not None
            raw = message.cpu().numpy().tobytes()
            if self.name == "index":
                symbols = unpack_indices(
                    np.frombuffer(raw, dtype=np.uint8),
                    index_bits(self.codewords),
                    batch * self.groups,
                )
            else:
                decoded = _zstd_decompress(raw)
                symbols = np.frombuffer(decoded, dtype=self._symbol_dtype).astype(np.int64)
            index = torch.from_numpy(np.ascontiguousarray(symbols[: batch * self.groups])).reshape(
                batch, self.groups
            )
            rows = book[torch.arange(self.groups), index]  # [batch, groups, dim / m]
            return rows.reshape(batch, self.dim).to(device)
        raw_message = message.cpu()
        scale = float(raw_message[:_SCALE_BYTES].clone().view(torch.float32)[0])
        if self.name == "int8":
            symbols = raw_message[_SCALE_BYTES:].clone().view(torch.int8)
        else:
            decoded = _zstd_decompress(raw_message[_SCALE_BYTES:].numpy().tobytes())
            symbols = torch.frombuffer(bytearray(decoded), dtype=torch.int8)
        return (symbols.reshape(batch, self.dim).float() * scale).to(device)


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
    if name not in FORWARD_FORMATS:
        raise InnetError(
            f"unknown wire format {name!r} (expected one of {', '.join(FORWARD_FORMATS)})"
        )
    return Codec(name, dim, codebook, codewords=codewords, groups=groups)


def index_bits(codewords: int) -> int:
    """Bits of one codeword index: ``ceil(log2 K)`` (at least 1).

    >>> index_bits(16), index_bits(17), index_bits(2)
    (4, 5, 1)
    """
    return max(1, math.ceil(math.log2(codewords)))


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
    if name in CODEBOOK_FORMATS and codewords is not None:
        return float(groups * index_bits(codewords))
    if name == "index":
        raise InnetError("the 'index' wire format needs a discrete gate (a codebook)")
    per_value = {"float32": 32, "float16": 16, "bfloat16": 16, "int8": 8, "entropy": 8}[name]
    return float(dim * per_value)


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


def pack_indices(symbols: np.ndarray, bits: int) -> np.ndarray:
    """Pack non-negative integers below ``2**bits`` at ``bits`` bits each (big-endian).

    >>> pack_indices(np.array([1, 15, 0]), 4).tolist()  # 0001 1111 0000 (padded)
    [31, 0]
    """
    symbols = np.asarray(symbols, dtype=np.int64).reshape(-1)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    table = ((symbols[:, None] >> shifts) & 1).astype(np.uint8)
    return np.packbits(table.reshape(-1))


def unpack_indices(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The ``count`` integers :func:`pack_indices` packed at ``bits`` bits each.

    >>> unpack_indices(pack_indices(np.array([1, 15, 0]), 4), 4, 3).tolist()
    [1, 15, 0]
    """
    table = np.unpackbits(np.asarray(packed, dtype=np.uint8))[: count * bits]
    weights = np.left_shift(1, np.arange(bits - 1, -1, -1, dtype=np.int64))
    return table.reshape(count, bits).astype(np.int64) @ weights


def _zstd_compress(data: bytes, level: int) -> bytes:
    return zstandard.ZstdCompressor(level=level, write_checksum=False).compress(data)


def _zstd_decompress(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompress(data)


def _bytes_tensor(data: bytes, device: Any) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device)
