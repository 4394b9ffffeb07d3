"""Parsing and formatting of bit rates, durations and compute speeds (innet.core.units)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from innet.core.units import (
    format_bitrate,
    format_duration,
    parse_bitrate,
    parse_duration,
    parse_flops,
)

BITRATE_UNITS = {"bps": 1.0, "kbps": 1e3, "Mbps": 1e6, "Gbps": 1e9, "Tbps": 1e12}
DURATION_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ns": 1e-9}
FLOPS_UNITS = {"FLOPS": 1.0, "kFLOPS": 1e3, "MFLOPS": 1e6, "GFLOPS": 1e9, "TFLOPS": 1e12}

FAST = settings(max_examples=150, deadline=None)
magnitudes = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
blanks = st.text(alphabet=" \t", max_size=3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10Mbps", 10e6),
        ("1.5 Gbps", 1.5e9),
        ("500kbps", 500e3),
        ("100bps", 100.0),
        ("2Tbps", 2e12),
        ("10mbps", 10e6),  # the prefix letter is case-insensitive
        ("10Kbps", 10e3),
        ("1e6", 1e6),
        ("  64 ", 64.0),
        (64, 64.0),
        (2.5e3, 2.5e3),
        ("-3Mbps", -3e6),  # the sign is parsed; validators decide what is allowed
        (".5Gbps", 0.5e9),
    ],
)
def test_parse_bitrate_examples(text, expected):
    assert parse_bitrate(text) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1ms", 1e-3),
        ("500us", 5e-4),
        ("500\u00b5s", 5e-4),
        ("500\u03bcs", 5e-4),
        ("250 ns", 2.5e-7),
        ("2s", 2.0),
        ("0.1", 0.1),
        (3, 3.0),
    ],
)
def test_parse_duration_examples(text, expected):
    assert parse_duration(text) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2GFLOPS", 2e9),
        ("500MFLOPS", 5e8),
        ("1.5 TFLOPS", 1.5e12),
        ("3 gflops", 3e9),
        ("10 kFLOP/s", 1e4),
        ("1PFLOPS", 1e15),
        ("1e9", 1e9),
        (7, 7.0),
    ],
)
def test_parse_flops_examples(text, expected):
    assert parse_flops(text) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("parse", "text", "unit", "expected_list"),
    [
        (parse_bitrate, "10Mbs", "Mbs", "bps, kbps, Mbps"),
        (parse_bitrate, "10MBps", "MBps", "bps, kbps, Mbps"),  # bytes are not guessed
        (parse_bitrate, "10 Mb/s", "Mb/s", "Gbps"),
        (parse_duration, "1 MS", "MS", "s, ms, us"),
        (parse_duration, "3min", "min", "ns"),
        (parse_flops, "2GFLOP", "GFLOP", "FLOPS"),
        (parse_flops, "2 Ghz", "Ghz", "FLOPS"),
    ],
)
def test_unknown_unit_message_names_unit_text_and_choices(parse, text, unit, expected_list):
    with pytest.raises(ValueError) as info:
        parse(text)
    message = str(info.value)
    assert f"unknown unit {unit!r} in {text!r}" in message
    assert expected_list in message
    assert "\n" not in message


@pytest.mark.parametrize("parse", [parse_bitrate, parse_duration, parse_flops])
@pytest.mark.parametrize(
    "bad", ["", "   ", "Mbps", "abc", "1.2.3Mbps", "nan", "inf", float("nan"), float("inf"), True]
)
def test_rejects_non_numbers(parse, bad):
    with pytest.raises(ValueError):
        parse(bad)


@pytest.mark.parametrize("parse", [parse_bitrate, parse_duration, parse_flops])
def test_rejects_other_types(parse):
    with pytest.raises(ValueError, match="got None"):
        parse(None)
    with pytest.raises(ValueError, match="got"):
        parse([1, 2])


@FAST
@given(magnitudes, st.sampled_from(sorted(BITRATE_UNITS)), blanks, blanks, blanks)
def test_bitrate_value_times_multiplier(number, unit, before, between, after):
    text = f"{before}{number!r}{between}{unit}{after}"
    assert parse_bitrate(text) == pytest.approx(number * BITRATE_UNITS[unit], rel=1e-12)


@FAST
@given(magnitudes, st.sampled_from(sorted(DURATION_UNITS)), blanks, blanks, blanks)
def test_duration_value_times_multiplier(number, unit, before, between, after):
    text = f"{before}{number!r}{between}{unit}{after}"
    assert parse_duration(text) == pytest.approx(number * DURATION_UNITS[unit], rel=1e-12)


@FAST
@given(magnitudes, st.sampled_from(sorted(FLOPS_UNITS)), blanks)
def test_flops_value_times_multiplier(number, unit, between):
    text = f"{number!r}{between}{unit}"
    assert parse_flops(text) == pytest.approx(number * FLOPS_UNITS[unit], rel=1e-12)


@FAST
@given(
    st.floats(min_value=1e-3, max_value=1e16),
    st.sampled_from([1.0, -1.0]),
    st.integers(min_value=3, max_value=8),
)
def test_format_bitrate_round_trip(value, sign, digits):
    text = format_bitrate(sign * value, digits)
    assert parse_bitrate(text) == pytest.approx(sign * value, rel=10.0 ** (1 - digits))


@FAST
@given(
    st.floats(min_value=1e-12, max_value=1e6),
    st.sampled_from([1.0, -1.0]),
    st.integers(min_value=3, max_value=8),
)
def test_format_duration_round_trip(value, sign, digits):
    text = format_duration(sign * value, digits)
    assert parse_duration(text) == pytest.approx(sign * value, rel=10.0 ** (1 - digits))


@FAST
@given(st.floats(min_value=1.0, max_value=999e12))
def test_format_bitrate_picks_the_largest_unit_not_above_the_value(value):
    text = format_bitrate(value)
    number, unit = text.split(" ")
    largest_fitting = max(m for m in BITRATE_UNITS.values() if m <= value)
    # 999.99 kbps rounds to "1000 kbps" at 4 digits: the unit is chosen before rounding
    assert BITRATE_UNITS[unit] == largest_fitting
    assert parse_bitrate(text) == pytest.approx(value, rel=1e-3)


def test_format_examples():
    assert format_bitrate(1e6) == "1 Mbps"
    assert format_bitrate(32768) == "32.77 kbps"
    assert format_bitrate(0) == "0 bps"
    assert format_bitrate(1.5e9) == "1.5 Gbps"
    assert format_duration(5e-4) == "500 us"
    assert format_duration(2.0) == "2 s"
    assert format_duration(1.25e-3) == "1.25 ms"
    assert format_duration(0.0) == "0 s"


def _is_bitrate_unit(unit: str) -> bool:
    return unit.endswith("bps") and unit[:-3].lower() in ("", "k", "m", "g", "t")


def _is_flops_unit(unit: str) -> bool:
    lowered = unit.lower()
    return any(
        lowered == prefix + suffix
        for prefix in ("", "k", "m", "g", "t", "p")
        for suffix in ("flops", "flop/s")
    )


_UNIT_LIKE = ["bps", "kbps", "KBPS", "Mbps", "mBps", "GBps", "Tbps", "Pbps", "s", "ms", "MS"]
_UNIT_LIKE += ["us", "\u00b5s", "ns", "Ns", "sec", "flops", "GFLOP/s", "Pflops", "gFlOpS", "bit"]


@FAST
@given(
    st.one_of(
        st.sampled_from(_UNIT_LIKE),
        st.text(alphabet=string.ascii_letters + "/%", min_size=1, max_size=7),
    )
)
def test_exactly_the_documented_units_are_accepted(unit):
    text = f"12{unit}"
    cases = (
        (parse_bitrate, _is_bitrate_unit(unit)),
        (parse_duration, unit in DURATION_UNITS),
        (parse_flops, _is_flops_unit(unit)),
    )
    for parse, valid in cases:
        if valid:
            assert parse(text) > 0
        else:
            with pytest.raises(ValueError, match="unknown unit"):
                parse(text)


def test_overflow_is_rejected():
    with pytest.raises(ValueError, match="too large"):
        parse_bitrate("1e300Tbps")
    with pytest.raises(ValueError, match="too large"):
        parse_flops("1e305PFLOPS")
