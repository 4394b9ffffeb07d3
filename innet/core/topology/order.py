"""The deterministic order of node ids used everywhere: "natural" order.

Digit runs compare as numbers (``n2 < n10``). Plans break ties by it,
reports list nodes in it, and array code numbers nodes in it.
"""

from __future__ import annotations

import functools
import re

import networkx as nx

__all__ = ["node_key", "ordered_ids"]

_DIGITS = re.compile(r"(\d+)")


@functools.cache
def node_key(node_id: str) -> tuple:
    """Sort key giving the deterministic total order of node ids ("natural" order).

    Digit runs compare as numbers, so ``n2 < n10``; ties fall back to the raw
    string so the order is total.

    >>> sorted(["n10", "n2", "f"], key=node_key)
    ['f', 'n2', 'n10']
    """
    parts = _DIGITS.split(node_id)
    return tuple((0, int(p), "") if p.isdecimal() else (1, 0, p) for p in parts if p) + (
        (2, 0, node_id),
    )


def ordered_ids(graph: nx.Graph) -> list[str]:
    """The node ids sorted by :func:`node_key`, fast for common ids.

    When every id is one shared prefix followed by a canonical integer
    (``n0, n1, ..., n99999`` or ``0, 1, ...``: no sign, no leading zero),
    ``node_key`` order is the order of those integers, which sorts without
    building a key tuple per node. Anything else takes the general path.

    >>> ordered_ids(nx.Graph([("n10", "n9"), ("n9", "n0")]))
    ['n0', 'n9', 'n10']
    """
    ids = list(graph.nodes)
    if not ids:
        return ids
    prefix = ids[0].rstrip("0123456789")
    start = len(prefix)
    numbers = [_canonical_int(node[start:]) if node.startswith(prefix) else None for node in ids]
    keys = [number for number in numbers if number is not None]
    if len(keys) < len(numbers):
        return sorted(ids, key=node_key)
    return [ids[i] for i in sorted(range(len(ids)), key=keys.__getitem__)]


def _canonical_int(digits: str) -> int | None:
    """``int(digits)`` when ``digits`` is exactly how Python writes that integer, else None."""
    if not (digits.isascii() and digits.isdigit()) or (digits[0] == "0" and len(digits) > 1):
        return None
    return int(digits)
