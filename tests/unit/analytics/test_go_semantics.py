"""Go numerics the recommender's results depend on, checked against values printed by Go 1.26."""

from __future__ import annotations

import datetime as dt
import math
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from analytics.go_semantics import (
    MAX_RESOURCE_AMOUNT,
    UNSET_NS,
    duration_minutes,
    go_exp2,
    go_log,
    go_pow,
    reference_exponent,
    resource_amount,
    resource_amount_array,
    round_time,
    round_time_array,
)


def bits(value: float) -> str:
    return f"{struct.unpack('<Q', struct.pack('<d', value))[0]:016x}"


# math.Exp2 on linux/amd64
EXP2 = {0.5: "3ff6a09e667f3bcc", -0.25: "3feae89f995ad3ae", 7.3: "4063b2c47bff8328",
        99.99: "462fc769e9b9c33e", -100.5: "39a6a09e667f3bcc", 0.0001: "3ff00048af2c3dba",
        1.5: "4006a09e667f3bcc", 1.05: "40009071f3e983ad", 2.0: "4010000000000000"}  # fmt: skip
# math.Log on linux/amd64 (assembly implementation)
LOG = {0.5: "bfe62e42fefa39ef", 7.3: "3fffce55551e156e", 99.99: "40126b97847c8246",
       1.5: "3fd9f323ecbf984c", 5001.0: "402108e7c1fcd5f9", 1.05: "3fa8fb063ef2c7f0",
       2.0: "3fe62e42fefa39ef", 123456.789: "40277281cad8a844"}  # fmt: skip
# math.Pow
POW = {(1.05, 9.0): "3ff8d23d890fd604", (1.05, 175.0): "40b3f28c0b1c2558",
       (1.000142857142857, -2.0): "3feffda8f12c9b56", (3.0, -2.0): "3fbc71c71c71c71c",
       (1.0000694444444445, -2.0): "3feffedcc25cb05d", (2.5, 1.0): "4004000000000000"}  # fmt: skip


@pytest.mark.parametrize(("x", "expected"), EXP2.items())
def test_exp2_matches_go_bit_for_bit(x: float, expected: str) -> None:
    assert bits(float(go_exp2(np.array([x]))[0])) == expected


@pytest.mark.parametrize(("x", "expected"), LOG.items())
def test_log_matches_go_bit_for_bit(x: float, expected: str) -> None:
    assert bits(float(go_log(np.array([x]))[0])) == expected


@pytest.mark.parametrize(("args", "expected"), POW.items())
def test_pow_matches_go_bit_for_bit(args: tuple[float, float], expected: str) -> None:
    assert bits(go_pow(*args)) == expected


def test_pow_special_cases() -> None:
    assert go_pow(math.inf, 1.0) == math.inf
    assert go_pow(math.inf, -2.0) == 0.0
    assert go_pow(0.0, -2.0) == math.inf
    assert go_pow(7.0, 0.0) == 1.0
    assert go_pow(4.0, 0.5) == 2.0


@given(st.floats(min_value=-1000, max_value=1000))
def test_exp2_is_close_to_the_platform(x: float) -> None:
    assert math.isclose(float(go_exp2(np.array([x]))[0]), 2.0**x, rel_tol=1e-15, abs_tol=1e-300)


@given(st.floats(min_value=1e-300, max_value=1e300))
def test_log_is_close_to_the_platform(x: float) -> None:
    assert math.isclose(float(go_log(np.array([x]))[0]), math.log(x), rel_tol=1e-15, abs_tol=1e-15)


def ns(value: dt.datetime) -> int:
    return round(value.replace(tzinfo=dt.UTC).timestamp()) * 10**9


def test_round_time_counts_from_go_zero_time_and_rounds_halves_up() -> None:
    evening = ns(dt.datetime(2024, 3, 1, 21, 30))
    day, hour = 24 * 3600 * 10**9, 3600 * 10**9
    assert round_time(evening, day) == ns(dt.datetime(2024, 3, 2))
    # Multiples of 7h are counted from 0001-01-01, not from the Unix epoch.
    assert round_time(evening, 7 * hour) == 1709334000000000000
    assert round_time(evening, 90 * 60 * 10**9) == 1709326800000000000
    assert round_time(ns(dt.datetime(2024, 3, 1, 12)), day) == ns(dt.datetime(2024, 3, 2))
    times = np.array([evening, ns(dt.datetime(2024, 3, 1, 12))], dtype=np.int64)
    expected = [round_time(int(t), 7 * hour) for t in times]
    assert round_time_array(times, 7 * hour).tolist() == expected


def test_reference_exponent() -> None:
    day = 24 * 3600 * 10**9
    assert reference_exponent(0, 3 * day, day) == -3
    assert math.ldexp(1.0, reference_exponent(UNSET_NS, 3 * day, day)) == 0.0


def test_resource_amounts_truncate_and_clamp() -> None:
    assert resource_amount(110.99) == 110
    assert resource_amount(-3.0) == 0
    assert resource_amount(math.nan) == 0
    assert resource_amount(1e20) == MAX_RESOURCE_AMOUNT
    array = resource_amount_array(np.array([110.99, -3.0, math.nan, math.inf]))
    assert array.tolist() == [110, 0, 0, MAX_RESOURCE_AMOUNT]


def test_duration_minutes() -> None:
    assert duration_minutes(24 * 3600 * 10**9) == 1440.0
    assert duration_minutes(90 * 10**9) == 1.5
