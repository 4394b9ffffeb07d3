"""Physical quantities written the way people write them: ``10Mbps``, ``500us``, ``2GFLOPS``.

Configuration files give link capacities, latencies and compute speeds as a
number followed by a unit. This module turns such text into plain floats in
base units (bits per second, seconds, floating-point operations per second)
and back into short human-readable strings for reports.

- Bit rates: ``bps``, ``kbps``, ``Mbps``, ``Gbps``, ``Tbps``. The prefix letter
  is case-insensitive (``mbps`` is megabits per second); the suffix must be
  ``bps`` (``MBps``, bytes per second, is rejected rather than guessed).
- Durations: ``s``, ``ms``, ``us`` (also ``µs``), ``ns``; case-sensitive.
- Compute speeds: ``FLOPS`` (or ``FLOP/s``) with an optional ``k``, ``M``,
  ``G``, ``T`` or ``P`` prefix, case-insensitive.

A bare number (``1e6``, ``"1e6"``, ``250``) is taken in the base unit.
Whitespace around and between number and unit is ignored. The sign is parsed
as written: whether a negative value makes sense is for the caller to decide.
Anything else raises :class:`ValueError` with a message that names the text
and the units that would have been understood.

>>> parse_bitrate("10Mbps")
10000000.0
>>> parse_duration("500 us")
0.0005
>>> format_bitrate(2.5e9)
'2.5 Gbps'
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

__all__ = [
    "parse_bitrate",
    "parse_duration",
    "parse_flops",
    "format_bitrate",
    "format_duration",
]

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_QUANTITY = re.compile(rf"^\s*({_NUMBER})\s*(.*?)\s*$", re.DOTALL)

_BITRATE_PREFIXES = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_FLOPS_PREFIXES = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15}
# Divisors rather than multipliers: 250 / 1e9 is exactly 2.5e-07, 250 * 1e-9 is not.
_DURATION_DIVISORS = {"s": 1.0, "ms": 1e3, "us": 1e6, "\u00b5s": 1e6, "\u03bcs": 1e6, "ns": 1e9}

_BITRATE_DISPLAY = (("Tbps", 1e12), ("Gbps", 1e9), ("Mbps", 1e6), ("kbps", 1e3), ("bps", 1.0))
_DURATION_DISPLAY = (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9))


def _split(value: object, quantity: str, example: str) -> tuple[float, str]:
    """Split ``value`` into its number and its (stripped) unit text."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a {quantity} such as {example!r}, got {value!r}")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        match = _QUANTITY.match(value)
        if match is None:
            raise ValueError(f"cannot read {value!r} as a {quantity} (expected e.g. {example!r})")
        number, unit = float(match.group(1)), match.group(2)
    if not math.isfinite(number):
        raise ValueError(f"{quantity} must be a finite number, got {value!r}")
    return number, unit


def _finite(result: float, value: object, quantity: str) -> float:
    if not math.isfinite(result):
        raise ValueError(f"{quantity} {value!r} is too large")
    return result


def _prefixed(unit: str, suffixes: tuple[str, ...], prefixes: Mapping[str, float]) -> float | None:
    """Multiplier of ``<prefix><suffix>`` units, or None when ``unit`` is not one of them."""
    for suffix in suffixes:
        if unit.endswith(suffix):
            return prefixes.get(unit[: -len(suffix)].lower())
    return None


def parse_bitrate(value: str | float) -> float:
    """Bit rate in bits per second from ``"10Mbps"``, ``"1.5 Gbps"``, ``250e3`` ...

    >>> parse_bitrate("1.5 Gbps"), parse_bitrate("500kbps"), parse_bitrate(64)
    (1500000000.0, 500000.0, 64.0)
    """
    number, unit = _split(value, "bit rate", "10Mbps")
    if not unit:
        return number
    multiplier = _prefixed(unit, ("bps",), _BITRATE_PREFIXES)
    if multiplier is None:
        raise ValueError(
            f"unknown unit {unit!r} in {value!r} (expected bps, kbps, Mbps, Gbps or Tbps)"
        )
    return _finite(number * multiplier, value, "bit rate")


def parse_duration(value: str | float) -> float:
    """Duration in seconds from ``"1ms"``, ``"500us"``, ``"2 s"``, ``0.001`` ...

    >>> parse_duration("1ms"), parse_duration("250ns"), parse_duration(2)
    (0.001, 2.5e-07, 2.0)
    """
    number, unit = _split(value, "duration", "1ms")
    if not unit:
        return number
    if unit not in _DURATION_DIVISORS:
        raise ValueError(f"unknown unit {unit!r} in {value!r} (expected s, ms, us, \u00b5s or ns)")
    return number / _DURATION_DIVISORS[unit]


def parse_flops(value: str | float) -> float:
    """Compute speed in floating-point operations per second from ``"2GFLOPS"`` ...

    >>> parse_flops("2GFLOPS"), parse_flops("500 MFLOP/s"), parse_flops(1e9)
    (2000000000.0, 500000000.0, 1000000000.0)
    """
    number, unit = _split(value, "compute speed", "2GFLOPS")
    if not unit:
        return number
    multiplier = _prefixed(unit.lower(), ("flops", "flop/s"), _FLOPS_PREFIXES)
    if multiplier is None:
        raise ValueError(
            f"unknown unit {unit!r} in {value!r} "
            "(expected FLOPS with an optional k, M, G, T or P prefix)"
        )
    return _finite(number * multiplier, value, "compute speed")


def _format(value: float, units: tuple[tuple[str, float], ...], digits: int) -> str:
    """``value`` in the largest unit that keeps the number at least 1.

    Zero is written in the base unit, values below the smallest unit in it.
    """
    magnitude = abs(value)
    if magnitude == 0:
        name, scale = next(unit for unit in units if unit[1] == 1.0)
    else:
        name, scale = next((unit for unit in units if magnitude >= unit[1]), units[-1])
    return f"{value / scale:.{digits}g} {name}"


def format_bitrate(bits_per_second: float, digits: int = 4) -> str:
    """Human-readable bit rate with ``digits`` significant digits.

    >>> format_bitrate(1e6), format_bitrate(32768), format_bitrate(0)
    ('1 Mbps', '32.77 kbps', '0 bps')
    """
    return _format(float(bits_per_second), _BITRATE_DISPLAY, digits)


def format_duration(seconds: float, digits: int = 4) -> str:
    """Human-readable duration with ``digits`` significant digits (ASCII ``us``).

    >>> format_duration(0.0005), format_duration(2.0), format_duration(3.2e-8)
    ('500 us', '2 s', '32 ns')
    """
    return _format(float(seconds), _DURATION_DISPLAY, digits)
