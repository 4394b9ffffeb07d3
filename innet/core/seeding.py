"""Per-node randomness derived from ``(seed, node id)``.

Every node draws its initial weights and its gate noise from its own stream,
seeded by a stable hash of the run seed and the node id. Nothing depends on
process rank or on the order in which nodes are built, so the same seed gives
the same numbers in one process or spread over many.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["node_seed", "node_generator", "seeded_torch"]


def node_seed(seed: int, node: str, purpose: str = "") -> int:
    """A stable 63-bit seed for ``node`` in a run seeded with ``seed``.

    >>> node_seed(0, "s1") == node_seed(0, "s1") != node_seed(1, "s1")
    True
    """
    digest = hashlib.blake2b(f"{seed}\x00{node}\x00{purpose}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def node_generator(seed: int, node: str, purpose: str = "noise") -> torch.Generator:
    """A torch generator private to one node (e.g. for its gate noise)."""
    generator = torch.Generator()
    generator.manual_seed(node_seed(seed, node, purpose))
    return generator


@contextmanager
def seeded_torch(seed: int) -> Iterator[None]:
    """Run a block (such as building a module) with torch's global RNG seeded, then restore it."""
    with torch.random.fork_rng(devices=[]):
        # the CPU generator only (what fork_rng restores); torch.manual_seed would also queue
        # a seed for every CUDA device, recording a stack trace each time
        torch.default_generator.manual_seed(seed)
        yield
