"""Trace families: deterministic per seed, in the engine's schema, with the intended shapes."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from analytics.simulate.families import CLUSTER, FAMILIES, START, generate, parse_seeds
from analytics.usage import prepare_samples

MIB = 1024 * 1024


def hourly(frame: pl.DataFrame, column: str) -> np.ndarray:
    """Mean of a column per hour of the trace, in time order."""
    means = (
        frame.group_by_dynamic("timestamp", every="1h")
        .agg(pl.col(column).mean())
        .sort("timestamp")[column]
    )
    return means.to_numpy()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_same_seed_same_trace_other_seed_other_trace(name: str) -> None:
    family = FAMILIES[name]
    first = family(3, days=2)
    assert first.equals(family(3, days=2))
    assert not first.equals(family(4, days=2))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_engine_schema_with_a_starting_point(name: str) -> None:
    frame = FAMILIES[name](0, days=1, step_s=60)
    assert frame.height == 1440
    assert frame["timestamp"][0] == START
    assert frame["timestamp"].diff().drop_nulls().unique().to_list() == [dt.timedelta(minutes=1)]
    assert frame["cluster"].unique().to_list() == [CLUSTER]
    assert frame["namespace"].unique().to_list() == [name]
    assert frame["workload"].unique().to_list() == [f"{name}-0"]
    for column in ("cpu_request", "memory_request", "memory_limit"):
        assert frame[column].n_unique() == 1, column
        assert frame[column][0] > 0
    assert frame["memory_limit"][0] >= frame["memory_request"][0]
    assert frame["cpu"].min() >= 0
    samples = prepare_samples(frame)
    assert len(samples) == frame.height
    assert not samples.skipped


def test_step_and_days_set_the_sampling() -> None:
    frame = FAMILIES["steady"](0, days=0.5, step_s=300)
    assert frame.height == 144
    assert (frame["timestamp"][1] - frame["timestamp"][0]).total_seconds() == 300


def test_steady_is_flat() -> None:
    frame = FAMILIES["steady"](1, days=7)
    cpu = hourly(frame, "cpu")
    memory = hourly(frame, "memory")
    assert cpu.std() / cpu.mean() < 0.1
    assert memory.std() / memory.mean() < 0.05
    assert frame["cpu_request"][0] >= 2 * frame["cpu"].mean()


def test_diurnal_peaks_in_the_afternoon() -> None:
    frame = FAMILIES["diurnal"](2, days=7)
    hour = frame["timestamp"].dt.hour()
    afternoon = frame.filter(hour.is_between(13, 15))["cpu"].mean()
    night = frame.filter(hour.is_between(1, 3))["cpu"].mean()
    assert afternoon > 2 * night


def test_weekly_is_quiet_at_weekends() -> None:
    frame = FAMILIES["weekly"](0, days=14)
    weekend = frame["timestamp"].dt.weekday() >= 6  # polars: Monday = 1
    assert frame.filter(weekend)["cpu"].mean() < 0.6 * frame.filter(~weekend)["cpu"].mean()


def test_bursty_has_rare_high_bursts() -> None:
    frame = FAMILIES["bursty"](0, days=7)
    cpu = frame["cpu"]
    assert cpu.quantile(0.99) > 3 * cpu.median()
    assert (cpu > 3 * cpu.median()).mean() < 0.2


def test_leak_grows_until_restarts() -> None:
    memory = hourly(FAMILIES["leak"](0, days=14), "memory")
    rises = np.diff(memory)
    drops = np.flatnonzero(rises < -0.2 * memory[:-1])
    assert 2 <= drops.shape[0] <= 10
    assert (rises > 0).mean() > 0.9
    # Between restarts memory keeps growing: the hour before a restart is the highest.
    assert memory[drops[0]] > 1.3 * memory[0]


@pytest.mark.parametrize(("name", "up"), [("step-up", True), ("step-down", False)])
def test_step_changes_the_level(name: str, up: bool) -> None:
    for seed in range(3):
        frame = FAMILIES[name](seed, days=14)
        cpu = hourly(frame, "cpu")
        memory = hourly(frame, "memory")
        first, last = slice(0, 24 * 4), slice(-24 * 4, None)
        for series in (cpu, memory):
            ratio = series[last].mean() / series[first].mean()
            assert (ratio > 1.4) if up else (ratio < 1 / 1.4)
        # One step, in the middle third of the trace.
        step = int(np.argmax(np.abs(np.diff(memory))))
        assert 0.3 * len(memory) < step < 0.7 * len(memory)


def test_batch_alternates_busy_and_idle() -> None:
    frame = FAMILIES["batch"](0, days=7)
    busy = frame["cpu"] > 0.3
    assert 0.1 < busy.mean() < 0.5
    assert frame.filter(busy)["memory"].mean() > 3 * frame.filter(~busy)["memory"].median()


def test_jvm_heap_is_flat_once_committed() -> None:
    frame = FAMILIES["jvm"](0, days=7)
    memory = frame["memory"].to_numpy()
    committed = memory[memory > 0.9 * memory.max()]
    assert committed.shape[0] > 0.95 * memory.shape[0]
    assert committed.std() / committed.mean() < 0.01
    assert frame["memory_limit"][0] == frame["memory_request"][0]


def test_sidecar_is_idle_and_over_requested() -> None:
    frame = FAMILIES["sidecar"](0, days=2)
    assert frame["container"].unique().to_list() == ["sidecar"]
    assert frame["cpu"].max() < 0.02
    assert frame["memory"].max() < 64 * MIB
    assert frame["cpu_request"][0] > 10 * frame["cpu"].mean()


def test_generate_names_workloads_by_family_and_seed() -> None:
    frame = generate(["steady", "leak"], seeds=[0, 100], days=0.25)
    assert sorted(frame["workload"].unique().to_list()) == [
        "leak-0",
        "leak-100",
        "steady-0",
        "steady-100",
    ]
    assert frame.height == 4 * 360
    assert generate(days=0.1, seeds=[1])["namespace"].n_unique() == len(FAMILIES)


def test_generate_rejects_unknown_families() -> None:
    with pytest.raises(ValueError, match="unknown family 'nope'; known: steady, diurnal"):
        generate(["steady", "nope"])


@pytest.mark.parametrize(
    ("text", "seeds"),
    [("0-4", [0, 1, 2, 3, 4]), ("7", [7]), ("0,2,100-102", [0, 2, 100, 101, 102]), ("1,1", [1])],
)
def test_parse_seeds(text: str, seeds: list[int]) -> None:
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "4-1", "-3", "1-x"])
def test_parse_seeds_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="seed"):
        parse_seeds(text)
