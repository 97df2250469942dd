"""The hourly profile behind `default`: what it keeps, what it forecasts, and a periodic job
that the replay follows with it."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from analytics.simulate.replay import simulate
from analytics.strategy_profile import HOUR_NS, HourlyProfile

MIB = 1024 * 1024
GIB = 1024 * MIB


def observe(profile: HourlyProfile, row: int, hours: list[int], cpu: list[int]) -> None:
    """One sample per hour (at its half) for one row: CPU millicores, memory = CPU x 1 MiB."""
    t = np.array(hours, dtype=np.int64) * HOUR_NS + HOUR_NS // 2
    values = np.array(cpu, dtype=np.int64)
    ok = np.ones(len(hours), dtype=bool)
    profile.observe(
        np.full(len(hours), row, dtype=np.int64),
        t,
        cpu_millicores=values,
        cpu_valid=ok,
        memory_bytes=values * MIB,
        memory_valid=ok,
    )


def test_forecast_reads_the_same_hours_of_past_days() -> None:
    profile = HourlyProfile.empty(2)
    hours = list(range(57))  # up to 08:00 of day 2
    # Row 0: busy (1000m) at 10:00 every day, 100m otherwise. Row 1 has no history.
    observe(profile, 0, hours, [1000 if h % 24 == 10 else 100 for h in hours])
    now = np.array([57 * HOUR_NS, 57 * HOUR_NS], dtype=np.int64)  # day 2, 09:00
    forecast = profile.forecast(now, hours=3, spread=0, recent_hours=1)
    assert forecast.cpu_peak[0].tolist() == [100.0, 1000.0, 100.0]
    assert forecast.memory_peak[0].tolist() == [100.0 * MIB, 1000.0 * MIB, 100.0 * MIB]
    assert forecast.recent_cpu_peak[0] == 100.0  # 08:00 of day 2
    assert forecast.days.tolist() == [2.0, 0.0]
    assert np.isnan(forecast.cpu_peak[1]).all()
    # A spread of one hour sees 10:00 from 09:00 and 11:00 too.
    wide = profile.forecast(now, hours=3, spread=1, recent_hours=1)
    assert wide.cpu_peak[0].tolist() == [1000.0, 1000.0, 1000.0]


def test_hourly_mean_and_peak_and_oom_kills() -> None:
    profile = HourlyProfile.empty(1)
    t = np.array([0, 60, 120], dtype=np.int64) * 1_000_000_000
    ok = np.ones(3, dtype=bool)
    profile.observe(
        np.zeros(3, dtype=np.int64),
        t,
        cpu_millicores=np.array([100, 200, 600], dtype=np.int64),
        cpu_valid=np.array([True, True, False]),
        memory_bytes=np.array([10, 20, 30], dtype=np.int64) * MIB,
        memory_valid=ok,
        oom_memory_bytes=np.array([np.nan, 50.0 * MIB, np.nan]),
    )
    forecast = profile.forecast(np.array([24 * HOUR_NS]), hours=1, spread=0, recent_hours=1)
    assert forecast.cpu_mean[0, 0] == 150.0  # the invalid 600m does not count
    assert forecast.cpu_peak[0, 0] == 200.0
    assert forecast.memory_peak[0, 0] == 50.0 * MIB  # the kill, bumped by the caller


def test_the_ring_forgets_hours_older_than_its_slots() -> None:
    profile = HourlyProfile.empty(1, slots=24)
    observe(profile, 0, [0, 1], [500, 500])
    observe(profile, 0, [24], [100])  # overwrites hour 0's slot
    observe(profile, 0, [0], [900])  # older than the slot's hour: dropped
    assert profile.cpu_peak[0, 0] == 100.0
    forecast = profile.forecast(np.array([25 * HOUR_NS]), hours=2, spread=0, recent_hours=0)
    # Hour 1 (day -1 of hour 25) is 24 h old: still in a 24-slot ring; hour 2 never seen.
    assert forecast.cpu_peak[0, 0] == 500.0
    assert np.isnan(forecast.cpu_peak[0, 1])
    later = profile.forecast(np.array([49 * HOUR_NS]), hours=1, spread=0, recent_hours=0)
    assert np.isnan(later.cpu_peak[0, 0])  # hour 25 was never seen, hour 1 is gone


def test_arrays_round_trip_and_bad_arrays_are_named() -> None:
    profile = HourlyProfile.empty(3)
    observe(profile, 1, [5, 6, 30], [100, 200, 300])
    arrays = profile.to_arrays()
    again = HourlyProfile.from_arrays({k: v.copy() for k, v in arrays.items()})
    for name, values in again.to_arrays().items():
        assert np.array_equal(values, arrays[name]), name
    assert np.array_equal(again.take(np.array([1])).cpu_peak[0], profile.cpu_peak[1])
    with pytest.raises(ValueError, match="array 'cpu_sum' is missing"):
        HourlyProfile.from_arrays({k: v for k, v in arrays.items() if k != "cpu_sum"})
    with pytest.raises(ValueError, match=r"'memory_peak' has shape \(3, 24\), expected"):
        HourlyProfile.from_arrays({**arrays, "memory_peak": np.zeros((3, 24))})
    with pytest.raises(ValueError, match="at least 24 slots"):
        HourlyProfile.empty(1, slots=12)
    profile.extend(2)
    assert len(profile) == 5
    assert (profile.first_hour[3:] == -1).all()


def daily_job(days: int) -> pl.DataFrame:
    """A job at 02:00-06:00 every day (2 cores, 2 GiB), idle otherwise (50m, 200 MiB)."""
    minutes = np.arange(days * 1440)
    busy = ((minutes % 1440) >= 120) & ((minutes % 1440) < 360)
    start = dt.datetime(2024, 1, 1)
    return pl.DataFrame(
        {
            "timestamp": [start + dt.timedelta(minutes=int(m)) for m in minutes],
            "cluster": "c",
            "namespace": "ns",
            "workload": "job",
            "pod": "job-0",
            "container": "main",
            "cpu": np.where(busy, 2.0, 0.05),
            "memory": np.where(busy, 2.0 * GIB, 200.0 * MIB),
            "cpu_request": 2.5,
            "memory_request": 2.5 * GIB,
            "memory_limit": 2.5 * GIB,
        }
    )


def test_default_follows_a_daily_job_with_two_resizes_a_day() -> None:
    frame = daily_job(7)
    followed = simulate(frame, "default")
    histograms_only = simulate(frame, "default", {"profile": False})
    total, flat = followed.total, histograms_only.total
    assert total.memory_slack_gib_hours < 0.5 * flat.memory_slack_gib_hours
    assert total.cpu_slack_core_hours < 0.5 * flat.cpu_slack_core_hours
    # From the second day on: up before each job, down after it, and no kills.
    memory = followed.timeline.memory_request_bytes[:, 0]
    changes = np.count_nonzero(np.diff(memory[47:]))
    assert changes == 2 * 5
    assert total.resizes <= 2 * 7 + 1
    assert followed.timeline.oom_kills[24:, 0].sum() == 0
    day = slice(6 * 24, 7 * 24)
    assert memory[day][2] >= 2 * GIB  # 02:00 of the last day: the job is covered
    assert followed.timeline.cpu_request_millicores[6 * 24 + 3, 0] >= 2000
    assert memory[day][12] < 0.5 * GIB  # noon: shrunk
