"""The ``index`` wire format (forward only, a gate with a codebook): packed codeword indices.

The message is the index of the codeword each sample sent in each of the
gate's ``m`` groups, packed at ``ceil(log2 K)`` bits each,
``ceil(batch × m × ceil(log2 K) / 8)`` bytes. The receiver looks the
codewords up in its copy of the sender's codebook, the copy the sender last
*published* to it: a float32 ``[m, K, D / m]`` message of the training phase
``codebook`` (payload ``codebook``), sent before the indices and counted like
every message. The sender quantises against that published codebook while
its running means move a working copy
(:class:`~innet.families.inl.gates.discrete.DiscreteGate`), and publishes on
its first training step, every ``gate.codebook_sync`` steps (a trained
codebook; a fixed one is sent once), and to a parent that does not hold its
current codebook (a new parent after a plan change)
(:class:`~innet.families.inl.executors.per_node.PerNodeExecutor`). The
backward message is the gradient with respect to the decoded codeword.

>>> pack_indices(np.array([1, 15, 0]), 4).tolist()  # 0001 1111 0000 (padded)
[31, 0]
"""

from __future__ import annotations

import math

import numpy as np
import torch

from innet.core.errors import InnetError
from innet.families.inl.wire.base import (
    FORWARD_FORMATS,
    Codec,
    WireFormat,
    index_bits,
    lookup_codewords,
)

__all__ = ["IndexFormat", "pack_indices", "unpack_indices"]


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


class IndexFormat(WireFormat):
    """Codeword indices packed at ``ceil(log2 K)`` bits."""

    needs_codebook = True
    uses_codebook = True

    def bits_per_sample(self, dim: int, codewords: int | None, groups: int) -> float:
        if codewords is None:
            raise InnetError("the 'index' wire format needs a discrete gate (a codebook)")
        return float(groups * index_bits(codewords))

    def announce(self, codec: Codec, batch: int) -> tuple[tuple[int, ...], torch.dtype]:
        assert codec.codewords is not None
        bits = batch * codec.groups * index_bits(codec.codewords)
        return (math.ceil(bits / 8),), torch.uint8

    def encode(
        self,
        codec: Codec,
        values: torch.Tensor,
        index: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        assert codec.codewords is not None
        symbols = codec.symbols(index)
        packed = pack_indices(symbols, index_bits(codec.codewords))
        return torch.from_numpy(packed).to(values.device)

    def decode(
        self, codec: Codec, message: torch.Tensor, batch: int, codebook: torch.Tensor | None
    ) -> torch.Tensor:
        assert codec.codewords is not None
        raw = message.cpu().numpy().tobytes()
        symbols = unpack_indices(
            np.frombuffer(raw, dtype=np.uint8), index_bits(codec.codewords), batch * codec.groups
        )
        return lookup_codewords(codec, symbols, batch, codebook).to(message.device)


FORWARD_FORMATS.register("index", IndexFormat())
