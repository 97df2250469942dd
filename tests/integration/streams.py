"""Seeded usage streams for the parity test: one workload each, in the trace format.

Each stream is a usage frame (schema of `analytics.usage`: timestamp, cluster, namespace,
workload, pod, container, cpu cores, memory bytes, optional memory_request and oom) built from
numpy draws with a fixed seed, and says what part of the stock recommender it exercises.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

__all__ = ["MIB", "RANDOM_STREAMS", "STREAMS", "Stream", "random_stream", "steady"]

MIB = 1024 * 1024
MINUTE = 60
HOUR = 3600
DAY = 86400
START = dt.datetime(2026, 3, 2, 8, 0)  # naive = UTC
_START_US = calendar.timegm(START.timetuple()) * 1_000_000

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Stream:
    name: str
    exercises: str
    frame: pl.DataFrame


def _frame(
    seconds: Floats,
    pod: Sequence[str] | str,
    container: Sequence[str] | str,
    cpu: Floats,
    memory: Floats,
    *,
    memory_request: Sequence[float | None] | None = None,
    oom: Sequence[bool] | npt.NDArray[np.bool_] | None = None,
) -> pl.DataFrame:
    """A frame from per-row arrays; `seconds` counts from START and is kept to the microsecond."""
    n = len(seconds)
    micros = _START_US + np.round(np.asarray(seconds) * 1e6).astype(np.int64)
    columns: dict[str, pl.Series] = {
        "timestamp": pl.from_epoch(pl.Series(micros), time_unit="us"),
        "cluster": pl.Series(["lab"] * n),
        "namespace": pl.Series(["shop"] * n),
        "workload": pl.Series(["web"] * n),
        "pod": pl.Series([pod] * n if isinstance(pod, str) else list(pod)),
        "container": pl.Series([container] * n if isinstance(container, str) else list(container)),
        "cpu": pl.Series(np.asarray(cpu, dtype=np.float64)),
        "memory": pl.Series(np.asarray(memory, dtype=np.float64)),
    }
    if memory_request is not None:
        columns["memory_request"] = pl.Series(list(memory_request), dtype=pl.Float64)
    if oom is not None:
        columns["oom"] = pl.Series(list(oom), dtype=pl.Boolean)
    return pl.DataFrame(columns)


def _grid(days: float, step_seconds: float) -> Floats:
    return np.arange(0.0, days * DAY, step_seconds)


def _positive(values: Floats, floor: float) -> Floats:
    return np.maximum(values, floor)


def steady() -> Stream:
    """Constant 100m and 500Mi once a minute for two days: the documented 126m target."""
    t = _grid(2, MINUTE)
    frame = _frame(t, "web-0", "app", np.full(t.size, 0.1), np.full(t.size, 500.0 * MIB))
    return Stream("steady", "all samples in one bucket of each histogram", frame)


def diurnal() -> Stream:
    rng = np.random.default_rng(1)
    t = _grid(3, MINUTE)
    phase = np.sin(2 * np.pi * t / DAY)
    cpu = _positive(0.4 + 0.3 * phase + rng.normal(0, 0.03, t.size), 0.001)
    memory = 700 * MIB + 150 * MIB * phase + rng.normal(0, 10 * MIB, t.size)
    frame = _frame(t, "web-0", "app", cpu, memory)
    return Stream("diurnal", "daily cycles: percentiles across many buckets", frame)


def spiky() -> Stream:
    rng = np.random.default_rng(2)
    t = _grid(2, 30)
    cpu = rng.gamma(2.0, 0.03, t.size)
    spikes = rng.random(t.size) < 0.01
    cpu[spikes] = rng.uniform(1.5, 4.0, int(spikes.sum()))
    memory = 300 * MIB + rng.normal(0, 5 * MIB, t.size)
    memory[rng.random(t.size) < 0.005] += 400 * MIB
    frame = _frame(t, "web-0", "app", cpu, memory)
    return Stream("spiky", "rare CPU spikes in the tail, memory peaks replacing peaks", frame)


def growing_memory() -> Stream:
    rng = np.random.default_rng(3)
    t = _grid(4, MINUTE)
    cpu = _positive(0.2 + rng.normal(0, 0.02, t.size), 0.001)
    memory = 200 * MIB + 1024 * MIB * t / (4 * DAY) + rng.normal(0, 8 * MIB, t.size)
    frame = _frame(t, "web-0", "app", cpu, memory)
    return Stream("growing-memory", "a leak: a new, higher peak every interval", frame)


def ooms() -> Stream:
    rng = np.random.default_rng(4)
    t = _grid(2, MINUTE)
    cpu = _positive(0.3 + rng.normal(0, 0.05, t.size), 0.001)
    memory = 450 * MIB + rng.normal(0, 15 * MIB, t.size)
    request: list[float | None] = [512.0 * MIB] * t.size
    oom = np.zeros(t.size, dtype=bool)
    # Kills in two intervals, two of them a minute apart, one whose request is unknown (the
    # row's own usage is then the kill's memory), one right at a new interval's first sample.
    for minute in (300, 1200, 1201, 1440, 2500):
        oom[minute] = True
    request[2500] = None
    frame = _frame(t, "web-0", "app", cpu, memory, memory_request=request, oom=oom)
    return Stream("ooms", "OOM bumps (request x 1.2, at least +100Mi) into memory peaks", frame)


def short_history() -> Stream:
    rng = np.random.default_rng(5)
    t = _grid(20 / (24 * 60), MINUTE)
    cpu = _positive(0.25 + rng.normal(0, 0.02, t.size), 0.001)
    memory = 256 * MIB + rng.normal(0, 4 * MIB, t.size)
    frame = _frame(t, "web-0", "app", cpu, memory)
    return Stream("short-history", "20 minutes: confidence multipliers far from 1", frame)


def replicas() -> Stream:
    rng = np.random.default_rng(6)
    t = _grid(2, MINUTE)
    pods = ("web-0", "web-1", "web-2")
    seconds, pod_names, cpu, memory, oom = [], [], [], [], []
    for index, pod in enumerate(pods):
        seconds.append(t)  # every replica sampled at the same instants: ties across pods
        pod_names += [pod] * t.size
        cpu.append(_positive(0.2 + 0.05 * index + rng.normal(0, 0.04, t.size), 0.001))
        memory.append((600 + 40 * index) * MIB + rng.normal(0, 12 * MIB, t.size))
        killed = np.zeros(t.size, dtype=bool)
        if pod == "web-1":
            killed[[700, 2000]] = True
        oom.append(killed)
    frame = _frame(
        np.concatenate(seconds),
        pod_names,
        "app",
        np.concatenate(cpu),
        np.concatenate(memory),
        memory_request=[1024.0 * MIB] * (3 * t.size),
        oom=np.concatenate(oom),
    )
    return Stream("replicas", "three pods sharing one aggregate, one of them OOM-killed", frame)


def multi_container() -> Stream:
    rng = np.random.default_rng(7)
    t = _grid(2, MINUTE)
    app_cpu = _positive(0.5 + rng.normal(0, 0.08, t.size), 0.001)
    app_memory = 1024 * MIB + rng.normal(0, 30 * MIB, t.size)
    side_cpu = _positive(0.004 + rng.normal(0, 0.001, t.size), 0.0)
    side_memory = 60 * MIB + rng.normal(0, 2 * MIB, t.size)
    frame = _frame(
        np.concatenate([t, t]),
        "web-0",
        ["app"] * t.size + ["sidecar"] * t.size,
        np.concatenate([app_cpu, side_cpu]),
        np.concatenate([app_memory, side_memory]),
    )
    return Stream("multi-container", "pod minimums split over two containers", frame)


def long_history() -> Stream:
    rng = np.random.default_rng(8)
    t = _grid(12, MINUTE)
    daily = np.sin(2 * np.pi * t / DAY)
    weekly = np.sin(2 * np.pi * t / (7 * DAY))
    cpu = _positive(0.6 + 0.3 * daily + 0.2 * weekly + rng.normal(0, 0.05, t.size), 0.001)
    memory = 900 * MIB + 100 * MIB * daily + 150 * MIB * weekly + rng.normal(0, 20 * MIB, t.size)
    frame = _frame(t, "web-0", "app", cpu, memory)
    return Stream("long-history", "12 days: decay over more than the 8-day window", frame)


def hundred_days() -> Stream:
    rng = np.random.default_rng(9)
    t = _grid(105, 30 * MINUTE)
    cpu = _positive(0.3 + 0.1 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 0.03, t.size), 0.001)
    memory = 400 * MIB + 100 * MIB * t / (105 * DAY) + rng.normal(0, 10 * MIB, t.size)
    frame = _frame(t, "web-0", "app", cpu, memory)
    return Stream(
        "hundred-days", "105 days: both histograms shift their reference (100 half-lives)", frame
    )


def gap() -> Stream:
    rng = np.random.default_rng(10)
    t = np.concatenate([_grid(2, MINUTE), 5.5 * DAY + _grid(1, MINUTE)])
    cpu = _positive(0.15 + rng.normal(0, 0.02, t.size), 0.001)
    memory = 350 * MIB + rng.normal(0, 6 * MIB, t.size)
    frame = _frame(t, "web-0", "app", cpu, memory)
    return Stream("gap", "3.5 silent days: the memory window jumps several intervals", frame)


def duplicates_out_of_order() -> Stream:
    rng = np.random.default_rng(11)
    t = _grid(1, MINUTE)
    seconds = np.concatenate([t, t + rng.integers(0, 30, t.size)])  # per-pod scrape jitter
    pods = ["web-0"] * t.size + ["web-1"] * t.size
    cpu = _positive(0.35 + rng.normal(0, 0.05, 2 * t.size), 0.001)
    memory = 420 * MIB + rng.normal(0, 10 * MIB, 2 * t.size)
    frame = _frame(seconds, pods, "app", cpu, memory)
    # Repeated rows: some identical, some with the same key and time but other values (a
    # second scrape of the same metrics-server window); then the whole frame shuffled.
    repeated = frame.sample(n=80, seed=12)
    changed = frame.sample(n=80, seed=13).with_columns(
        pl.col("cpu") * 3.0, pl.col("memory") + 50.0 * MIB
    )
    frame = pl.concat([frame, repeated, changed]).sample(fraction=1.0, shuffle=True, seed=14)
    return Stream("duplicates-out-of-order", "duplicate timestamps and rows out of order", frame)


def zero_memory() -> Stream:
    rng = np.random.default_rng(15)
    t = _grid(3, MINUTE)
    cpu = _positive(0.1 + rng.normal(0, 0.01, t.size), 0.001)
    memory = 500 * MIB + rng.normal(0, 5 * MIB, t.size)
    memory[[0, 1440]] = 0.0  # a container starting (or restarted) with no memory yet
    frame = _frame(t, "web-0", "app", cpu, memory)
    return Stream(
        "zero-memory",
        "a zero first memory sample of an interval: upstream then keeps no peak for it",
        frame,
    )


_BUILDERS: tuple[Callable[[], Stream], ...] = (
    steady,
    diurnal,
    spiky,
    growing_memory,
    ooms,
    short_history,
    replicas,
    multi_container,
    long_history,
    hundred_days,
    gap,
    duplicates_out_of_order,
    zero_memory,
)
STREAMS: tuple[Stream, ...] = tuple(build() for build in _BUILDERS)


def random_stream(seed: int) -> Stream:
    """A random workload: 1-3 pods, 1-2 containers, 10 minutes to 10 days of jittered samples,
    bursts, OOM kills with and without a known request, repeated rows, shuffled."""
    rng = np.random.default_rng(1000 + seed)
    days = float(np.exp(rng.uniform(np.log(10 / 1440), np.log(10))))
    step = float(max(15.0, days * DAY / rng.integers(20, 2000)))
    pods = [f"web-{i}" for i in range(int(rng.integers(1, 4)))]
    containers = ["app", "sidecar"][: int(rng.integers(1, 3))]
    parts = []
    for pod in pods:
        offset = float(rng.integers(0, 2)) * rng.uniform(0, step)  # some pods tie, some not
        for container in containers:
            t = _grid(days, step) + offset
            level = float(np.exp(rng.uniform(np.log(0.002), np.log(3.0))))
            cpu = _positive(level * rng.gamma(4.0, 0.25, t.size), 0.0)
            cpu[rng.random(t.size) < 0.02] *= rng.uniform(2, 10)
            memory = float(np.exp(rng.uniform(np.log(20e6), np.log(4e9)))) * (
                1 + 0.1 * rng.standard_normal(t.size)
            )
            killed = rng.random(t.size) < rng.choice([0.0, 0.002, 0.02])
            request = np.where(rng.random(t.size) < 0.7, np.median(memory), np.nan)
            parts.append(
                _frame(
                    t,
                    pod,
                    container,
                    cpu,
                    _positive(memory, 0.0),
                    memory_request=[None if np.isnan(r) else float(r) for r in request],
                    oom=killed,
                )
            )
    frame = pl.concat(parts)
    repeats = frame.sample(n=min(frame.height, int(rng.integers(0, 20))), seed=seed)
    frame = pl.concat([frame, repeats.with_columns(pl.col("cpu") * 1.5)])
    frame = frame.sample(fraction=1.0, shuffle=True, seed=seed)
    return Stream(f"random-{seed}", "random shapes, ties, kills and repeats", frame)


RANDOM_STREAMS: tuple[Stream, ...] = tuple(random_stream(seed) for seed in range(40))
