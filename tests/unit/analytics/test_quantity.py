"""Kubernetes quantities: formatting as the recommender writes them, and parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analytics.quantity import (
    format_cpu_millicores,
    format_memory_bytes,
    parse_cpu_cores,
    parse_cpu_millicores,
    parse_memory_bytes,
    parse_quantity,
)

# Printed by apimachinery v0.37.2: NewScaledQuantity(m, -3).String() and
# NewQuantity(b, BinarySI).String().
CPU_STRINGS = {
    0: "0",
    1: "1m",
    8: "8m",
    10: "10m",
    25: "25m",
    126: "126m",
    999: "999m",
    1000: "1",
    1001: "1001m",
    1500: "1500m",
    2000: "2",
    12345: "12345m",
    120000: "120",
    1000000: "1k",
    1500000: "1500",
    99999999: "99999999m",
    100000000000000: "100G",
}
MEMORY_STRINGS = {
    0: "0",
    1: "1",
    999: "999",
    1000: "1k",
    1023: "1023",
    1024: "1Ki",
    1025: "1025",
    1536: "1536",
    2048: "2Ki",
    1000000: "1000000",
    1048576: "1Mi",
    87381333: "87381333",
    104857600: "100Mi",
    131072000: "125Mi",
    262144000: "250Mi",
    262144001: "262144001",
    628694953: "628694953",
    1610612736: "1536Mi",
    1099511627776: "1Ti",
    100000000000000: "97656250000Ki",
}
# Quantity.MilliValue() and Quantity.Value() of parsed strings.
PARSED = {
    "250m": (250, 1),
    "1.5": (1500, 2),
    "512Mi": (536870912000, 536870912),
    "1G": (1000000000000, 1000000000),
    "1e3": (1000000, 1000),
    "0.5Ki": (512000, 512),
    "0.1m": (1, 1),
    "1.": (1000, 1),
    ".5": (500, 1),
    "100n": (1, 1),
    "2E-3": (2, 1),
    "1.25Gi": (1342177280000, 1342177280),
    "7T": (7000000000000000, 7000000000000),
    "0": (0, 0),
    "00.5": (500, 1),
    "+2": (2000, 2),
    "123456789n": (124, 1),
}


@pytest.mark.parametrize(("millicores", "text"), CPU_STRINGS.items())
def test_cpu_formats_like_apimachinery(millicores: int, text: str) -> None:
    assert format_cpu_millicores(millicores) == text


@pytest.mark.parametrize(("memory_bytes", "text"), MEMORY_STRINGS.items())
def test_memory_formats_like_apimachinery(memory_bytes: int, text: str) -> None:
    assert format_memory_bytes(memory_bytes) == text


@pytest.mark.parametrize(("text", "expected"), PARSED.items())
def test_parsing_rounds_up_like_apimachinery(text: str, expected: tuple[int, int]) -> None:
    assert (parse_cpu_millicores(text), parse_memory_bytes(text)) == expected


def test_parse_cpu_cores() -> None:
    assert parse_cpu_cores("250m") == 0.25
    assert parse_quantity("-5m") == parse_quantity("-0.005")


@pytest.mark.parametrize("text", ["", "1K", "1e", "abc", "1.2.3", " 1", "1Mi ", "--1", "1ki"])
def test_bad_strings_name_the_value(text: str) -> None:
    with pytest.raises(ValueError, match="invalid quantity") as raised:
        parse_quantity(text)
    assert repr(text) in str(raised.value)


def test_negative_resources_are_rejected() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        parse_memory_bytes("-1Mi")
    with pytest.raises(ValueError, match="must not be negative"):
        parse_cpu_millicores("-5m")


@given(st.integers(min_value=0, max_value=2**62))
def test_cpu_round_trips(millicores: int) -> None:
    assert parse_cpu_millicores(format_cpu_millicores(millicores)) == millicores


@given(st.integers(min_value=0, max_value=2**62))
def test_memory_round_trips(memory_bytes: int) -> None:
    assert parse_memory_bytes(format_memory_bytes(memory_bytes)) == memory_bytes
