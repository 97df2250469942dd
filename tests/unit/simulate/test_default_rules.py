"""What `default` does with the shapes its rules are for, replayed minute by minute: how the
profile tells periodic rows and on/off jobs from the rest, bursts that must not move the
request, a step up taken at once, a step down shrunk in one resize, and a quiet weekend."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from analytics.arrays import FloatArray
from analytics.simulate.families import generate
from analytics.simulate.replay import SimulationResult, simulate
from analytics.strategy_profile import HOUR_NS, HourlyProfile, daily_consistency, daily_depth

MIB = 1024 * 1024
DAY = 1440
START = dt.datetime(2024, 1, 1)  # a Monday


def frame(cpu: FloatArray, memory: FloatArray, cpu_request: float) -> pl.DataFrame:
    """One container sampled every minute from START (CPU cores, memory bytes)."""
    minutes = np.arange(cpu.shape[0])
    return pl.DataFrame(
        {
            "timestamp": [START + dt.timedelta(minutes=int(m)) for m in minutes],
            "cluster": "c",
            "namespace": "ns",
            "workload": "w",
            "pod": "w-0",
            "container": "app",
            "cpu": cpu,
            "memory": memory,
            "cpu_request": cpu_request,
            "memory_request": 1024.0 * MIB,
            "memory_limit": 2048.0 * MIB,
        }
    )


def noise(n: int, seed: int, sigma: float = 0.1) -> FloatArray:
    result: FloatArray = np.random.default_rng(seed).lognormal(-sigma * sigma / 2, sigma, n)
    return result


def cpu_requests(result: SimulationResult) -> list[int]:
    """The CPU request in effect each hour."""
    requests: list[int] = result.timeline.cpu_request_millicores[:, 0].tolist()
    return requests


def changes(values: list[int], first: int, last: int) -> int:
    pairs = zip(values[first:last], values[first + 1 : last + 1], strict=True)
    return sum(1 for a, b in pairs if a != b)


# -- telling rows apart ---------------------------------------------------------------------------


def profile_of(hourly: list[float], hours: int) -> HourlyProfile:
    profile = HourlyProfile.empty(1)
    t = np.arange(hours, dtype=np.int64) * HOUR_NS + HOUR_NS // 2
    cpu = np.array([hourly[h % len(hourly)] for h in range(hours)], dtype=np.int64)
    ok = np.ones(hours, dtype=bool)
    profile.observe(
        np.zeros(hours, dtype=np.int64),
        t,
        cpu_millicores=cpu,
        cpu_valid=ok,
        memory_bytes=cpu * MIB,
        memory_valid=ok,
    )
    return profile


def kinds(profile: HourlyProfile, hours: int) -> tuple[float, float]:
    means = profile.daily_cpu_means(np.array([hours * HOUR_NS]), 7)
    return float(daily_consistency(means)[0]), float(daily_depth(means)[0])


def test_a_daily_cycle_repeats_and_an_on_off_job_idles_between_runs() -> None:
    cycle = [400 + 300 * np.cos(2 * np.pi * (h - 14) / 24) for h in range(24)]
    consistency, depth = kinds(profile_of(cycle, 72), 72)
    assert consistency > 0.99
    assert 0.1 < depth < 0.2  # 100m at night against 700m in the afternoon

    job = [2000.0 if 2 <= h < 6 else 20.0 for h in range(24)]
    consistency, depth = kinds(profile_of(job, 72), 72)
    assert consistency > 0.99
    assert depth == pytest.approx(0.01)

    rng = np.random.default_rng(7)
    random_hours = rng.uniform(100, 1000, 24 * 5).tolist()
    consistency, _ = kinds(profile_of(random_hours, 24 * 5), 24 * 5)
    assert abs(consistency) < 0.3


def test_fewer_than_two_whole_days_say_nothing() -> None:
    consistency, depth = kinds(profile_of([100.0] * 24, 30), 30)
    assert np.isnan(consistency)
    assert depth == 1.0  # one whole day, flat


# -- shapes -------------------------------------------------------------------------------------


def test_short_bursts_do_not_move_the_request() -> None:
    """A 10-minute burst at 10x, three times a day at random minutes: the request stays on
    the base level; the stock VPA's parity strategy is the reference."""
    n = 10 * DAY
    rng = np.random.default_rng(3)
    on = np.zeros(n, dtype=bool)
    for start in rng.integers(0, n - 10, 30):
        on[start : start + 10] = True
    cpu = np.where(on, 2.0, 0.2) * noise(n, 4)
    result = simulate(frame(cpu, 300 * MIB * noise(n, 5, 0.01), 1.0), "default")
    requests = cpu_requests(result)
    assert max(requests[48:]) < 400  # never chased a burst
    assert changes(requests, 48, len(requests) - 1) <= 1
    assert result.total.resizes <= simulate(frame(cpu, 300 * MIB, 1.0), "vpa").total.resizes + 2


def test_a_step_up_is_taken_at_once() -> None:
    """Flat 300m for four days, then 900m: the histograms alone would climb to it over a
    day; a level held for two hours raises the request to it."""
    n = 6 * DAY
    cpu = np.where(np.arange(n) < 4 * DAY, 0.3, 0.9) * noise(n, 1)
    result = simulate(frame(cpu, 300 * MIB * noise(n, 2, 0.01), 0.5), "default")
    requests = cpu_requests(result)
    step = 4 * 24
    assert requests[step - 1] < 450
    assert min(requests[step + 3 : step + 24]) >= 900  # within three hours, and it holds
    assert changes(requests, step, step + 24) == 1


def test_a_step_down_is_shrunk_in_one_resize() -> None:
    """1 core for four days, then 250m: after eight quiet hours the request goes to the new
    level in one resize, instead of following the histograms down over days."""
    n = 7 * DAY
    cpu = np.where(np.arange(n) < 4 * DAY, 1.0, 0.25) * noise(n, 6)
    result = simulate(frame(cpu, 300 * MIB * noise(n, 7, 0.01), 1.5), "default")
    requests = cpu_requests(result)
    step = 4 * 24
    assert requests[step - 1] >= 1000
    assert max(requests[step + 12 :]) < 400
    assert changes(requests, step, len(requests) - 1) <= 2
    without = simulate(
        frame(cpu, 300 * MIB * noise(n, 7, 0.01), 1.5), "default", {"quiet_ratio": 0}
    )
    assert result.total.cpu_slack_core_hours < without.total.cpu_slack_core_hours


def test_a_quiet_weekend_is_followed_once_a_week_is_known() -> None:
    """A daily cycle on weekdays, a fifth of it at weekends: the second weekend (after a week
    of history) gets a lower request than the weekdays around it; the first cannot."""
    n = 14 * DAY
    minutes = np.arange(n)
    hour = (minutes % DAY) / 60.0
    weekend = (minutes // DAY) % 7 >= 5
    level = 0.4 + 0.6 * (1 + np.cos(2 * np.pi * (hour - 14) / 24)) / 2
    cpu = level * np.where(weekend, 0.2, 1.0) * noise(n, 8)
    result = simulate(frame(cpu, 500 * MIB * noise(n, 9, 0.01), 2.0), "default")
    requests = np.array(cpu_requests(result))
    first_weekend = requests[5 * 24 + 12 : 7 * 24]
    second_weekend = requests[12 * 24 + 12 : 14 * 24 - 1]
    weekdays = requests[8 * 24 : 12 * 24]
    assert second_weekend.max() < 0.6 * weekdays.min()
    assert requests[14 * 24 - 1] >= weekdays.min()  # up the hour before Monday
    assert first_weekend.min() > second_weekend.max()
    # Down once for the weekend and up once for Monday, not along the weekend's own cycle.
    assert changes(cpu_requests(result), 12 * 24, 14 * 24 - 1) <= 2
    assert result.total.oom_kills == 0


def test_a_leak_grows_the_request_before_it_is_killed() -> None:
    """Memory climbing 40% a day from 300 MiB, restarted every three days, with the limit
    equal to the request: the request stays ahead of it."""
    n = 9 * DAY
    minutes = np.arange(n)
    since_restart = (minutes % (3 * DAY)) / DAY
    memory = 300 * MIB * (1 + 0.4 * since_restart) * noise(n, 10, 0.005)
    trace = frame(0.2 * noise(n, 11), memory, 0.5).with_columns(
        memory_request=pl.lit(512.0 * MIB), memory_limit=pl.lit(512.0 * MIB)
    )
    result = simulate(trace, "default")
    assert result.total.oom_kills == 0
    assert result.timeline.memory_request_bytes[-1, 0] >= memory[-60:].max()
    unguarded = simulate(trace, "default", {"memory_headroom_fraction": 0})
    assert unguarded.total.oom_kills > 0


def test_a_step_down_is_not_grown_back_for_the_days_before_it() -> None:
    """Once shrunk after a step down, the request stays down: the same hours of the days
    before the step are no reason to grow a container that has no daily cycle."""
    n = 10 * DAY
    cpu = np.where(np.arange(n) < 5 * DAY, 0.13, 0.05) * noise(n, 12, 0.25)
    result = simulate(frame(cpu, 300 * MIB * noise(n, 13, 0.01), 1.0), "default")
    requests = cpu_requests(result)
    step = 5 * 24
    assert max(requests[step + 12 :]) < 0.6 * requests[step - 1]
    assert changes(requests, step, len(requests) - 1) == 1


def on_off(period_h: int, run_minutes: int, days: int) -> pl.DataFrame:
    """A job running `run_minutes` every `period_h` hours from half past the hour: 2 cores
    and 2 GiB while it runs (memory climbing over its first fifth), 20m and 150 MiB between
    runs; requested at 3 cores and 3 GiB."""
    n = days * DAY
    phase = ((np.arange(n) - 30) % (period_h * 60)) / run_minutes
    running = phase < 1.0
    cpu = np.where(running, 2.0, 0.02) * noise(n, period_h)
    climb = 150.0 + (2048.0 - 150.0) * np.clip(phase / 0.2, 0.0, 1.0)
    memory = np.where(running, climb, 150.0) * MIB * noise(n, period_h + 1, 0.01)
    return frame(cpu, memory, 3.0).with_columns(
        memory_request=pl.lit(3072.0 * MIB), memory_limit=pl.lit(3072.0 * MIB)
    )


def test_an_on_off_job_is_followed_down_and_up_only_with_both_resources() -> None:
    """A daily job idle 20 hours is followed: each day one resize down (both resources) and
    one up before the run. A job every 12 hours idle 7.5 is not worth its four resizes a day:
    neither resource follows it, instead of memory alone for half the saving."""
    daily = simulate(on_off(24, 240, 8), "default")
    cpu = daily.timeline.cpu_request_millicores[:, 0]
    memory = daily.timeline.memory_request_bytes[:, 0]
    assert cpu[2 * 24 :].min() < 500 and memory[2 * 24 :].min() < 1024 * MIB
    moved_cpu = np.diff(cpu[2 * 24 :]) != 0
    moved_memory = np.diff(memory[2 * 24 :]) != 0
    assert moved_cpu.sum() >= 8
    assert np.array_equal(moved_cpu, moved_memory)
    assert daily.total.oom_kills == 0

    twice = simulate(on_off(12, 270, 8), "default")
    requests = cpu_requests(twice)
    assert changes(requests, 2 * 24, len(requests) - 1) <= 1
    assert twice.total.resizes <= 3
    assert twice.total.oom_kills == 0


def test_a_flat_heap_is_shrunk_once_it_has_settled() -> None:
    """A heap flat at 750 MiB under a 1 GiB request: about 30 % above the need, inside the
    first days' band (+40 %), shrunk once five days are known (+20 %)."""
    n = 8 * DAY
    memory = 750 * MIB * noise(n, 14, 0.002)
    result = simulate(frame(0.2 * noise(n, 15), memory, 0.3), "default")
    requested = result.timeline.memory_request_bytes[:, 0]
    assert requested[4 * 24] == 1024 * MIB
    assert requested[-1] < 0.95 * 1024 * MIB
    assert requested[-1] > memory.max()
    assert result.total.oom_kills == 0


def test_a_resize_that_gives_back_little_is_not_made() -> None:
    """A sidecar using 30 MiB under a 64 MiB request: shrinking would give back less than
    `min_shrink_mib` (32), so the request stays; with no minimum it shrinks."""
    n = 7 * DAY
    trace = frame(0.05 * noise(n, 16), 30 * MIB * noise(n, 17, 0.01), 0.06).with_columns(
        memory_request=pl.lit(64.0 * MIB), memory_limit=pl.lit(128.0 * MIB)
    )
    kept = simulate(trace, "default")
    assert kept.total.resizes == 0
    shrunk = simulate(trace, "default", {"min_shrink_mib": 0, "min_shrink_millicores": 0})
    assert shrunk.total.resizes >= 1
    assert shrunk.timeline.memory_request_bytes[-1, 0] < 64 * MIB


def test_memory_grows_before_the_hour_that_needs_it() -> None:
    """A generated weekly service (seed 5005) whose request a CPU resize on its second night
    set below the next afternoon's memory, with the limit at the request: a lower band of
    20 % let the request sit under the coming peak and took 12 OOM kills; at 10 % it grows
    the hour before."""
    trace = generate(["weekly"], [5005], days=14)
    assert simulate(trace, "default").total.oom_kills == 0
    loose = simulate(trace, "default", {"memory_lower_band_fraction": 0.2})
    assert loose.total.oom_kills > 0
