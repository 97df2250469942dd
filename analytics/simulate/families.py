"""Seeded synthetic usage traces: one family per kind of workload the recommender meets.

Each family is a function `(seed, days, step_s) -> usage frame` in the engine's schema
(`analytics.usage`) with the starting point of a simulation added: `cpu_request` (cores),
`memory_request` and `memory_limit` (bytes), the same on every row of a container, set the way
people set them by hand (rounded, usually generous, sized for the load at the start). Columns
`cpu` and `memory` are the demand: what the container would use if nothing stopped it.

A family's frame has one workload (`<family>-<seed>`) in namespace `<family>` of cluster
`sim`, one pod and one container, sampled every `step_s` seconds from `START` (a Monday,
00:00 UTC). The same (family, seed, days, step) always gives the same frame: every random draw
comes from a generator seeded with the family's salt and the seed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import polars as pl

from analytics.arrays import FloatArray

__all__ = [
    "CLUSTER",
    "FAMILIES",
    "START",
    "Family",
    "generate",
    "parse_seeds",
]

START: Final = dt.datetime(2024, 1, 1)
"""First sample of every family: Monday 2024-01-01 00:00 UTC."""

CLUSTER: Final = "sim"
MIB: Final = 1024.0 * 1024.0
GIB: Final = 1024.0 * MIB
_DAY_S: Final = 86_400.0


@dataclass(frozen=True)
class _Clock:
    """Sample times of one trace: seconds since START, hour of day, day of week (0 = Monday)."""

    seconds: FloatArray
    step_s: int

    @property
    def n(self) -> int:
        return int(self.seconds.shape[0])

    @property
    def hours(self) -> FloatArray:
        result: FloatArray = (self.seconds % _DAY_S) / 3600.0
        return result

    @property
    def weekday(self) -> FloatArray:
        result: FloatArray = np.floor(self.seconds / _DAY_S) % 7
        return result

    @property
    def duration_s(self) -> float:
        return float(self.n * self.step_s)


@dataclass(frozen=True)
class _Shape:
    """What a family function computes: demand per sample and the initial settings."""

    cpu: FloatArray
    memory: FloatArray
    cpu_request: float
    memory_request: float
    limit_ratio: float
    container: str = "app"


@dataclass(frozen=True)
class Family:
    """A named trace family."""

    name: str
    description: str
    salt: int
    shape: Callable[[np.random.Generator, _Clock], _Shape]

    def __call__(self, seed: int, days: float = 14.0, step_s: int = 60) -> pl.DataFrame:
        """The family's trace for one seed: `days` of samples every `step_s` seconds."""
        if days <= 0:
            raise ValueError(f"days must be positive, got {days}")
        if step_s <= 0:
            raise ValueError(f"step_s must be positive, got {step_s}")
        n = max(1, round(days * _DAY_S / step_s))
        clock = _Clock(np.arange(n, dtype=np.float64) * step_s, step_s)
        rng = np.random.default_rng([self.salt, seed])
        shape = self.shape(rng, clock)
        return _frame(self.name, seed, clock, shape)


def _frame(family: str, seed: int, clock: _Clock, shape: _Shape) -> pl.DataFrame:
    workload = f"{family}-{seed}"
    start_us = int(START.replace(tzinfo=dt.UTC).timestamp()) * 1_000_000
    t_us = start_us + np.arange(clock.n, dtype=np.int64) * clock.step_s * 1_000_000
    n = clock.n
    memory_request = shape.memory_request
    return pl.DataFrame(
        {
            "timestamp": pl.Series(t_us, dtype=pl.Int64).cast(pl.Datetime("us")),
            "cluster": [CLUSTER] * n,
            "namespace": [family] * n,
            "workload": [workload] * n,
            "pod": [f"{workload}-0"] * n,
            "container": [shape.container] * n,
            "cpu": np.maximum(shape.cpu, 0.0),
            "memory": np.floor(np.maximum(shape.memory, 0.0)),
            "cpu_request": np.full(n, shape.cpu_request),
            "memory_request": np.full(n, memory_request),
            "memory_limit": np.full(n, np.floor(memory_request * shape.limit_ratio)),
        }
    )


# -- building blocks -----------------------------------------------------------------------------


def _nice_cpu(cores: float) -> float:
    """Rounded up the way people write CPU requests: 50m steps below 1 core, 250m above."""
    step = 0.05 if cores < 1.0 else 0.25
    return float(np.ceil(cores / step - 1e-9) * step)


def _nice_memory(bytes_: float) -> float:
    """Rounded up to 64Mi below 1Gi, to 256Mi above."""
    step = 64 * MIB if bytes_ < GIB else 256 * MIB
    return float(np.ceil(bytes_ / step - 1e-9) * step)


def _cpu_noise(rng: np.random.Generator, n: int, sigma: float = 0.2) -> FloatArray:
    """Multiplicative minute-to-minute CPU noise with mean 1."""
    noise: FloatArray = rng.lognormal(-sigma * sigma / 2, sigma, n)
    return noise


def _memory_noise(rng: np.random.Generator, n: int, scale: float = 0.01) -> FloatArray:
    """Slowly wandering multiplicative memory noise around 1: white noise averaged over 30
    samples, with standard deviation `scale`."""
    window = 30
    white = rng.normal(0.0, 1.0, n + window - 1)
    smooth = np.convolve(white, np.full(window, 1.0 / np.sqrt(window)), mode="valid")
    result: FloatArray = 1.0 + scale * smooth
    return result


def _daily(clock: _Clock, peak_hour: float) -> FloatArray:
    """0 at night, 1 at the peak hour: a raised cosine over the day."""
    result: FloatArray = (1.0 + np.cos(2 * np.pi * (clock.hours - peak_hour) / 24.0)) / 2.0
    return result


def _limit_ratio(rng: np.random.Generator, choices: Sequence[float]) -> float:
    return float(rng.choice(np.asarray(choices, dtype=np.float64)))


# -- the families --------------------------------------------------------------------------------


def _steady(rng: np.random.Generator, clock: _Clock) -> _Shape:
    cpu_base = rng.uniform(0.1, 0.8)
    memory_base = rng.uniform(200, 1200) * MIB
    return _Shape(
        cpu=cpu_base * _cpu_noise(rng, clock.n, 0.15),
        memory=memory_base * _memory_noise(rng, clock.n),
        cpu_request=_nice_cpu(cpu_base * rng.uniform(2.0, 4.0)),
        memory_request=_nice_memory(memory_base * rng.uniform(1.3, 2.0)),
        limit_ratio=_limit_ratio(rng, (1.0, 1.5, 2.0)),
    )


def _diurnal_parts(
    rng: np.random.Generator, clock: _Clock
) -> tuple[FloatArray, FloatArray, float, float]:
    cpu_peak = rng.uniform(0.3, 1.5)
    trough = rng.uniform(0.15, 0.4)
    memory_base = rng.uniform(300, 1500) * MIB
    day = _daily(clock, rng.uniform(12.0, 16.0))
    cpu = cpu_peak * (trough + (1 - trough) * day) * _cpu_noise(rng, clock.n)
    memory = memory_base * (1 + rng.uniform(0.15, 0.35) * day) * _memory_noise(rng, clock.n)
    return cpu, memory, cpu_peak, memory_base


def _diurnal(rng: np.random.Generator, clock: _Clock) -> _Shape:
    cpu, memory, cpu_peak, memory_base = _diurnal_parts(rng, clock)
    return _Shape(
        cpu=cpu,
        memory=memory,
        cpu_request=_nice_cpu(cpu_peak * rng.uniform(1.2, 2.0)),
        memory_request=_nice_memory(memory_base * 1.3 * rng.uniform(1.2, 1.8)),
        limit_ratio=_limit_ratio(rng, (1.0, 1.5, 2.0)),
    )


def _weekly(rng: np.random.Generator, clock: _Clock) -> _Shape:
    cpu, memory, cpu_peak, memory_base = _diurnal_parts(rng, clock)
    weekend = rng.uniform(0.25, 0.5)
    factor = np.where(clock.weekday >= 5, weekend, 1.0)
    return _Shape(
        cpu=cpu * factor,
        memory=memory * (0.85 + 0.15 * factor),
        cpu_request=_nice_cpu(cpu_peak * rng.uniform(1.2, 2.0)),
        memory_request=_nice_memory(memory_base * 1.3 * rng.uniform(1.2, 1.8)),
        limit_ratio=_limit_ratio(rng, (1.0, 1.5, 2.0)),
    )


def _bursts(
    rng: np.random.Generator, clock: _Clock, per_day: float, minutes: tuple[float, float]
) -> FloatArray:
    """1 during bursts (Poisson arrivals, uniform durations), 0 elsewhere."""
    count = int(rng.poisson(per_day * clock.duration_s / _DAY_S))
    starts = rng.uniform(0.0, clock.duration_s, count)
    lengths = rng.uniform(minutes[0] * 60, minutes[1] * 60, count)
    on = np.zeros(clock.n + 1, dtype=np.float64)
    first = np.clip(np.ceil(starts / clock.step_s), 0, clock.n).astype(np.int64)
    last = np.clip(np.ceil((starts + lengths) / clock.step_s), 0, clock.n).astype(np.int64)
    last = np.maximum(last, np.minimum(first + 1, clock.n))
    np.add.at(on, first, 1.0)
    np.add.at(on, last, -1.0)
    result: FloatArray = (np.cumsum(on)[: clock.n] > 0).astype(np.float64)
    return result


def _bursty(rng: np.random.Generator, clock: _Clock) -> _Shape:
    cpu_base = rng.uniform(0.05, 0.2)
    burst = min(cpu_base * rng.uniform(5.0, 15.0), 4.0)
    memory_base = rng.uniform(150, 600) * MIB
    on = _bursts(rng, clock, rng.uniform(4.0, 10.0), (3.0, 20.0))
    cpu = (cpu_base + (burst - cpu_base) * on) * _cpu_noise(rng, clock.n, 0.25)
    memory = memory_base * (1 + rng.uniform(0.2, 0.6) * on) * _memory_noise(rng, clock.n)
    return _Shape(
        cpu=cpu,
        memory=memory,
        cpu_request=_nice_cpu(cpu_base * rng.uniform(3.0, 6.0)),
        memory_request=_nice_memory(memory_base * rng.uniform(1.4, 2.0)),
        limit_ratio=_limit_ratio(rng, (1.0, 1.5)),
    )


def _restarts(rng: np.random.Generator, clock: _Clock, days: tuple[float, float]) -> FloatArray:
    """Seconds since the last restart at each sample; restarts every `days` (uniform)."""
    times = [0.0]
    while times[-1] < clock.duration_s:
        times.append(times[-1] + rng.uniform(days[0], days[1]) * _DAY_S)
    restart = np.asarray(times, dtype=np.float64)
    last = restart[np.searchsorted(restart, clock.seconds, side="right") - 1]
    result: FloatArray = clock.seconds - last
    return result


def _leak(rng: np.random.Generator, clock: _Clock) -> _Shape:
    cpu_base = rng.uniform(0.1, 0.5)
    memory_base = rng.uniform(200, 600) * MIB
    period = (rng.uniform(1.5, 2.5), rng.uniform(3.0, 4.5))
    since = _restarts(rng, clock, period)
    growth_per_day = memory_base * rng.uniform(0.3, 0.8)
    memory = (memory_base + growth_per_day * since / _DAY_S) * _memory_noise(rng, clock.n)
    return _Shape(
        cpu=cpu_base * _cpu_noise(rng, clock.n, 0.15),
        memory=memory,
        cpu_request=_nice_cpu(cpu_base * rng.uniform(1.5, 3.0)),
        memory_request=_nice_memory(memory_base * rng.uniform(1.5, 2.5)),
        limit_ratio=_limit_ratio(rng, (1.0, 1.5, 2.0)),
    )


def _step(rng: np.random.Generator, clock: _Clock, factor: float, memory_factor: float) -> _Shape:
    cpu_base = rng.uniform(0.1, 0.6)
    memory_base = rng.uniform(200, 900) * MIB
    at = rng.uniform(0.35, 0.65) * clock.duration_s
    after = clock.seconds >= at
    cpu = cpu_base * np.where(after, factor, 1.0) * _cpu_noise(rng, clock.n, 0.15)
    memory = memory_base * np.where(after, memory_factor, 1.0) * _memory_noise(rng, clock.n)
    return _Shape(
        cpu=cpu,
        memory=memory,
        cpu_request=_nice_cpu(cpu_base * rng.uniform(1.5, 2.5)),
        memory_request=_nice_memory(memory_base * rng.uniform(1.3, 1.8)),
        limit_ratio=_limit_ratio(rng, (1.0, 1.5, 2.0)),
    )


def _step_up(rng: np.random.Generator, clock: _Clock) -> _Shape:
    return _step(rng, clock, rng.uniform(1.8, 3.0), rng.uniform(1.5, 2.5))


def _step_down(rng: np.random.Generator, clock: _Clock) -> _Shape:
    return _step(rng, clock, 1 / rng.uniform(2.0, 4.0), 1 / rng.uniform(1.5, 3.0))


def _batch(rng: np.random.Generator, clock: _Clock) -> _Shape:
    period_h = float(rng.choice(np.array([4.0, 6.0, 12.0, 24.0])))
    length_h = period_h * rng.uniform(0.15, 0.4)
    offset_h = rng.uniform(0.0, period_h)
    phase = ((clock.seconds / 3600.0 - offset_h) % period_h) / length_h
    on = phase < 1.0
    cpu_on = rng.uniform(0.8, 2.5)
    cpu_off = rng.uniform(0.005, 0.02)
    memory_on = rng.uniform(1.0, 4.0) * GIB
    memory_off = rng.uniform(100, 200) * MIB
    # Memory climbs over the first fifth of a run, then holds.
    ramp = np.clip(phase / 0.2, 0.0, 1.0)
    cpu = np.where(on, cpu_on, cpu_off) * _cpu_noise(rng, clock.n, 0.15)
    memory = np.where(on, memory_off + (memory_on - memory_off) * ramp, memory_off)
    return _Shape(
        cpu=cpu,
        memory=memory * _memory_noise(rng, clock.n),
        cpu_request=_nice_cpu(cpu_on * rng.uniform(1.0, 1.5)),
        memory_request=_nice_memory(memory_on * rng.uniform(1.1, 1.5)),
        limit_ratio=_limit_ratio(rng, (1.0, 1.25)),
    )


def _jvm(rng: np.random.Generator, clock: _Clock) -> _Shape:
    heap = rng.uniform(1.0, 3.0) * GIB
    since = _restarts(rng, clock, (2.0, 5.0))
    # The heap is committed within minutes of a start and never given back.
    warm = np.clip(since / (15 * 60.0), 0.0, 1.0)
    sawtooth = 0.01 * ((since / 600.0) % 1.0)
    memory = heap * (0.3 + 0.7 * warm) * (1.0 + sawtooth)
    cpu_peak = rng.uniform(0.3, 1.0)
    cpu = cpu_peak * (0.3 + 0.7 * _daily(clock, rng.uniform(12.0, 16.0)))
    gc = ((since % 600.0) < clock.step_s).astype(np.float64)
    cpu = cpu * (1.0 + gc) * _cpu_noise(rng, clock.n, 0.15)
    return _Shape(
        cpu=cpu,
        memory=memory,
        cpu_request=_nice_cpu(cpu_peak * rng.uniform(1.0, 2.0)),
        memory_request=_nice_memory(heap * rng.uniform(1.1, 1.5)),
        limit_ratio=1.0,
    )


def _sidecar(rng: np.random.Generator, clock: _Clock) -> _Shape:
    cpu_base = rng.uniform(0.001, 0.005)
    memory_base = rng.uniform(10, 40) * MIB
    return _Shape(
        cpu=cpu_base * _cpu_noise(rng, clock.n, 0.3),
        memory=memory_base * _memory_noise(rng, clock.n),
        cpu_request=float(rng.choice(np.array([0.05, 0.1]))),
        memory_request=float(rng.choice(np.array([64.0, 128.0]))) * MIB,
        limit_ratio=2.0,
        container="sidecar",
    )


FAMILIES: Final[dict[str, Family]] = {
    family.name: family
    for family in (
        Family("steady", "flat CPU and memory with noise; requests 2-4x CPU usage", 11, _steady),
        Family(
            "diurnal", "daily CPU cycle (peak mid-afternoon), memory follows a little", 12, _diurnal
        ),
        Family("weekly", "daily cycle with quiet weekends", 13, _weekly),
        Family(
            "bursty",
            "low CPU with 3-20 minute bursts of 5-15x, memory spikes with them",
            14,
            _bursty,
        ),
        Family("leak", "memory grows linearly until a restart every 1.5-4.5 days", 15, _leak),
        Family(
            "step-up", "CPU x1.8-3 and memory x1.5-2.5 from a moment in mid-trace", 16, _step_up
        ),
        Family(
            "step-down", "CPU /2-4 and memory /1.5-3 from a moment in mid-trace", 17, _step_down
        ),
        Family(
            "batch", "a job every 4-24 h: busy for 15-40% of the period, idle between", 18, _batch
        ),
        Family(
            "jvm", "a heap committed within minutes of a start and kept; GC CPU spikes", 19, _jvm
        ),
        Family(
            "sidecar",
            "an idle sidecar: a few millicores and tens of MiB, 50-100m requested",
            20,
            _sidecar,
        ),
    )
}
"""Every family by name, in a fixed order."""


def parse_seeds(text: str) -> list[int]:
    """Seeds from "0-4", "7", "0,2,100-104" (ranges include both ends)."""
    seeds: list[int] = []
    for part in text.split(","):
        item = part.strip()
        if not item:
            continue
        first, dash, last = item.partition("-")
        try:
            low = int(first)
            high = int(last) if dash else low
        except ValueError:
            raise ValueError(f"bad seed {item!r}: expected N or N-M (e.g. 0-4)") from None
        if low < 0 or high < low:
            raise ValueError(f"bad seed range {item!r}: expected 0 <= N <= M")
        seeds.extend(range(low, high + 1))
    if not seeds:
        raise ValueError(f"no seeds in {text!r}")
    return list(dict.fromkeys(seeds))


def generate(
    families: Iterable[str] | None = None,
    seeds: Iterable[int] = range(5),
    days: float = 14.0,
    step_s: int = 60,
) -> pl.DataFrame:
    """Traces of the given families (all by default) for every seed, in one frame."""
    names = list(FAMILIES) if families is None else list(families)
    unknown = [name for name in names if name not in FAMILIES]
    if unknown:
        raise ValueError(
            f"unknown famil{'y' if len(unknown) == 1 else 'ies'} "
            f"{', '.join(repr(u) for u in unknown)}; known: {', '.join(FAMILIES)}"
        )
    seed_list = list(seeds)
    if not names or not seed_list:
        raise ValueError("nothing to generate: no families or no seeds")
    frames = [FAMILIES[name](seed, days, step_s) for name in names for seed in seed_list]
    return pl.concat(frames)
