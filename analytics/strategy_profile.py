"""Hourly usage profiles: the compact per-container summary that lets `default` see time.

The engine's histograms say how often a container used how much, never when. A periodic
workload (a nightly batch job, a daytime service) needs the when: the request for the coming
hours can follow what the same hours of past days used. `HourlyProfile` keeps, per aggregate
(workload container), the last `slots` hourly summaries in a ring indexed by absolute hour:
the hour's CPU peak, CPU sum and sample count (for the mean), and memory peak (an OOM kill
counts as `oom_bump_up_ratio` times the memory at the kill). With 168 slots (a week) that is
4 x 168 float64 and 168 int64 per container: about 6.6 KiB, fixed, whatever the history.

Everything is arrays over many aggregates: `observe` folds a batch of samples in (numpy,
no Python loop over containers), `predict` reads the profile of the coming hours. The state
is plain arrays (`to_arrays` / `from_arrays`), so it checkpoints like the store it sits
beside. Rows are aggregate rows; keeping them aligned with the store's is the caller's job.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from analytics.arrays import BoolArray, FloatArray, Int64Array

if TYPE_CHECKING:
    from analytics.store import EstimationInput
    from analytics.strategies import PodEstimates

__all__ = [
    "HOUR_NS",
    "HourlyProfile",
    "ProfileAware",
    "ProfileForecast",
    "daily_consistency",
    "daily_depth",
]

HOUR_NS: Final = 3_600_000_000_000
_UNSET: Final = -1


@runtime_checkable
class ProfileAware(Protocol):
    """Estimators that can also read an hourly profile kept beside the store."""

    def estimate_with_profile(
        self, aggregates: EstimationInput, profile: HourlyProfile, now_ns: int
    ) -> PodEstimates:
        """Estimates for the aggregates; `profile` holds the same rows in the same order."""
        ...


@dataclass(frozen=True)
class ProfileForecast:
    """What the profile predicts, per aggregate, for the hours ahead.

    `cpu_mean`, `cpu_peak`, `memory_peak`: shape (n, hours), the largest value of the same
    hour (and its `spread` neighbours on each side) over the past days, NaN where no past day
    has it. `recent_cpu_peak`, `recent_memory_peak`: shape (n,), the peaks of the last
    `recent_hours` hours (NaN with none); `sustained_cpu_mean`, shape (n,), the lowest hourly
    CPU mean of the last `sustained_hours` hours (a level held throughout, which a short burst
    is not; NaN unless all are held). `quiet_cpu_mean`, `quiet_cpu_peak`: shape
    (n, quiet_hours), the last `quiet_hours` hours; `memory_trend`, shape (n,), the growth
    per hour of their memory peaks (`_slope`); NaN unless all of those hours are held.
    `week_cpu_mean`, `week_cpu_peak`, `week_memory_peak`: shape (n, hours), the same hours
    one week earlier (and their `spread` neighbours), NaN where the ring does not hold them.
    `days`: shape (n,), how many whole days of history
    the profile holds.
    """

    cpu_mean: FloatArray
    cpu_peak: FloatArray
    memory_peak: FloatArray
    recent_cpu_mean: FloatArray
    recent_cpu_peak: FloatArray
    recent_memory_peak: FloatArray
    sustained_cpu_mean: FloatArray
    quiet_cpu_mean: FloatArray
    quiet_cpu_peak: FloatArray
    memory_trend: FloatArray
    week_cpu_mean: FloatArray
    week_cpu_peak: FloatArray
    week_memory_peak: FloatArray
    days: FloatArray


@dataclass
class HourlyProfile:
    """The last `slots` hourly summaries of n aggregates (a ring by absolute hour number)."""

    hour: Int64Array
    cpu_peak: FloatArray
    cpu_sum: FloatArray
    cpu_count: FloatArray
    memory_peak: FloatArray
    first_hour: Int64Array

    @classmethod
    def empty(cls, n: int, slots: int = 168) -> HourlyProfile:
        """A profile of n aggregates with no history."""
        if slots < 24:
            raise ValueError(f"an hourly profile needs at least 24 slots, got {slots}")
        shape = (n, slots)
        return cls(
            hour=np.full(shape, _UNSET, dtype=np.int64),
            cpu_peak=np.zeros(shape),
            cpu_sum=np.zeros(shape),
            cpu_count=np.zeros(shape),
            memory_peak=np.zeros(shape),
            first_hour=np.full(n, _UNSET, dtype=np.int64),
        )

    @property
    def slots(self) -> int:
        """Hours the ring holds."""
        return int(self.hour.shape[1])

    def __len__(self) -> int:
        return int(self.hour.shape[0])

    # -- state -----------------------------------------------------------------------------

    def to_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """The whole state as named arrays (for a checkpoint)."""
        return {
            "hour": self.hour,
            "cpu_peak": self.cpu_peak,
            "cpu_sum": self.cpu_sum,
            "cpu_count": self.cpu_count,
            "memory_peak": self.memory_peak,
            "first_hour": self.first_hour,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, npt.NDArray[np.generic]]) -> HourlyProfile:
        """A profile from `to_arrays`' output; ValueError naming a missing or bad array."""
        names = ("hour", "cpu_peak", "cpu_sum", "cpu_count", "memory_peak", "first_hour")
        for name in names:
            if name not in arrays:
                raise ValueError(f"hourly profile: array {name!r} is missing")
        shape = arrays["hour"].shape
        for name in names[:-1]:
            if arrays[name].shape != shape:
                raise ValueError(
                    f"hourly profile: array {name!r} has shape {arrays[name].shape}, "
                    f"expected {shape}"
                )
        if arrays["first_hour"].shape != shape[:1]:
            raise ValueError(
                f"hourly profile: array 'first_hour' has shape {arrays['first_hour'].shape}, "
                f"expected {shape[:1]}"
            )
        return cls(
            hour=arrays["hour"].astype(np.int64),
            cpu_peak=arrays["cpu_peak"].astype(np.float64),
            cpu_sum=arrays["cpu_sum"].astype(np.float64),
            cpu_count=arrays["cpu_count"].astype(np.float64),
            memory_peak=arrays["memory_peak"].astype(np.float64),
            first_hour=arrays["first_hour"].astype(np.int64),
        )

    def take(self, rows: Int64Array) -> HourlyProfile:
        """The aggregates at `rows` (a copy)."""
        return HourlyProfile(
            hour=self.hour[rows],
            cpu_peak=self.cpu_peak[rows],
            cpu_sum=self.cpu_sum[rows],
            cpu_count=self.cpu_count[rows],
            memory_peak=self.memory_peak[rows],
            first_hour=self.first_hour[rows],
        )

    def extend(self, n: int) -> None:
        """Append n aggregates with no history."""
        more = HourlyProfile.empty(n, self.slots)
        self.hour = np.concatenate([self.hour, more.hour])
        self.cpu_peak = np.concatenate([self.cpu_peak, more.cpu_peak])
        self.cpu_sum = np.concatenate([self.cpu_sum, more.cpu_sum])
        self.cpu_count = np.concatenate([self.cpu_count, more.cpu_count])
        self.memory_peak = np.concatenate([self.memory_peak, more.memory_peak])
        self.first_hour = np.concatenate([self.first_hour, more.first_hour])

    # -- updates ---------------------------------------------------------------------------

    def observe(
        self,
        rows: Int64Array,
        t_ns: Int64Array,
        *,
        cpu_millicores: Int64Array,
        cpu_valid: BoolArray,
        memory_bytes: Int64Array,
        memory_valid: BoolArray,
        oom_memory_bytes: FloatArray | None = None,
    ) -> None:
        """Fold samples into the profile: sample i belongs to aggregate `rows[i]`.

        `oom_memory_bytes` (NaN where there was no kill) counts as a memory peak: the caller
        passes the memory at the kill already bumped, as the histograms record it. A slot
        whose stored hour is older than a sample's is reset first; samples older than the
        hour a slot already holds are dropped.
        """
        if rows.shape[0] == 0:
            return
        slots = self.slots
        hour = t_ns // HOUR_NS
        position = hour % slots
        flat = rows * slots + position
        stored = self.hour.reshape(-1)
        newest = np.full(stored.shape[0], _UNSET, dtype=np.int64)
        np.maximum.at(newest, flat, hour)
        reset = newest > stored
        for array in (self.cpu_peak, self.cpu_sum, self.cpu_count, self.memory_peak):
            array.reshape(-1)[reset] = 0.0
        stored[reset] = newest[reset]
        current = hour == stored[flat]
        seen = np.full(len(self), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(seen, rows, hour)
        unset = self.first_hour == _UNSET
        self.first_hour = np.where(
            unset & (seen < np.iinfo(np.int64).max), seen, self.first_hour
        ).astype(np.int64)

        cpu_ok = current & cpu_valid
        cpu = cpu_millicores.astype(np.float64)
        np.maximum.at(self.cpu_peak.reshape(-1), flat[cpu_ok], cpu[cpu_ok])
        np.add.at(self.cpu_sum.reshape(-1), flat[cpu_ok], cpu[cpu_ok])
        np.add.at(self.cpu_count.reshape(-1), flat[cpu_ok], 1.0)
        memory = np.where(memory_valid, memory_bytes.astype(np.float64), 0.0)
        if oom_memory_bytes is not None:
            memory = np.fmax(memory, oom_memory_bytes)
        memory_ok = current & (memory_valid | np.isfinite(memory) & (memory > 0))
        np.maximum.at(self.memory_peak.reshape(-1), flat[memory_ok], memory[memory_ok])

    # -- forecasts -------------------------------------------------------------------------

    def forecast(
        self,
        now_ns: Int64Array,
        hours: int,
        *,
        days: int = 7,
        spread: int = 1,
        recent_hours: int = 2,
        sustained_hours: int = 2,
        quiet_hours: int = 8,
    ) -> ProfileForecast:
        """The profile of the `hours` hours starting at each aggregate's `now_ns`.

        For the hour h ahead, each of the last `days` days contributes its hours
        h - spread .. h + spread (one day earlier, or more); the forecast is the largest.
        Hours older than the ring or not yet seen do not count.
        """
        n = len(self)
        now_hour = now_ns // HOUR_NS
        ahead = np.arange(hours, dtype=np.int64)
        back = 24 * np.arange(1, days + 1, dtype=np.int64)
        jitter = np.arange(-spread, spread + 1, dtype=np.int64)
        # (n, hours, days, jitter) absolute hours to read.
        wanted = (
            now_hour[:, None, None, None]
            + ahead[None, :, None, None]
            - back[None, None, :, None]
            + jitter[None, None, None, :]
        )
        usable = (wanted < now_hour[:, None, None, None]) & (
            wanted >= now_hour[:, None, None, None] - self.slots
        )
        cpu_mean, cpu_peak, memory_peak = self._read(wanted, usable)
        week = now_hour[:, None, None] + ahead[None, :, None] - 168 + jitter[None, None, :]
        week_usable = (week < now_hour[:, None, None]) & (
            week >= now_hour[:, None, None] - self.slots
        )
        week_mean, week_peak, week_memory = self._read(week, week_usable)
        axes = (2, 3)
        recent = now_hour[:, None] - 1 - np.arange(recent_hours, dtype=np.int64)[None, :]
        r_mean, r_cpu, r_memory = self._read(recent, recent >= now_hour[:, None] - self.slots)
        held = now_hour[:, None] - 1 - np.arange(sustained_hours, dtype=np.int64)[None, :]
        held_mean, _, _ = self._read(held, held >= now_hour[:, None] - self.slots)
        quiet = now_hour[:, None] - 1 - np.arange(quiet_hours, dtype=np.int64)[None, :]
        q_mean, q_cpu, q_memory = self._read(quiet, quiet >= now_hour[:, None] - self.slots)
        q_whole: BoolArray = np.asarray(
            ~np.isnan(q_mean).any(axis=1) & ~np.isnan(q_memory).any(axis=1)
        )
        seen = self.first_hour != _UNSET
        history_days = np.where(seen, (now_hour - self.first_hour) / 24.0, 0.0)
        del n
        return ProfileForecast(
            cpu_mean=_nanmax(cpu_mean, axes),
            cpu_peak=_nanmax(cpu_peak, axes),
            memory_peak=_nanmax(memory_peak, axes),
            recent_cpu_mean=_nanmax(r_mean, (1,)),
            recent_cpu_peak=_nanmax(r_cpu, (1,)),
            recent_memory_peak=_nanmax(r_memory, (1,)),
            sustained_cpu_mean=np.where(
                np.isnan(held_mean).any(axis=1), np.nan, -_nanmax(-held_mean, (1,))
            ),
            quiet_cpu_mean=np.where(q_whole[:, None], q_mean, np.nan),
            quiet_cpu_peak=np.where(q_whole[:, None], q_cpu, np.nan),
            memory_trend=np.where(q_whole, _slope(q_memory), np.nan),
            week_cpu_mean=_nanmax(week_mean, (2,)),
            week_cpu_peak=_nanmax(week_peak, (2,)),
            week_memory_peak=_nanmax(week_memory, (2,)),
            days=np.floor(history_days),
        )

    def daily_cpu_means(self, now_ns: Int64Array, days: int = 7) -> FloatArray:
        """Hourly mean CPU of the last `days` whole days, shape (n, days, 24): day 0 is the
        24 hours before now, day d the 24 before that; NaN for hours not held."""
        now_hour = now_ns // HOUR_NS
        wanted = (
            now_hour[:, None, None]
            - 24 * (1 + np.arange(days, dtype=np.int64))[None, :, None]
            + np.arange(24, dtype=np.int64)[None, None, :]
        )
        mean, _, _ = self._read(wanted, wanted >= now_hour[:, None, None] - self.slots)
        return mean

    def _read(
        self, wanted: Int64Array, usable: BoolArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """CPU mean, CPU peak, memory peak at absolute hours `wanted` (NaN where unknown)."""
        slots = self.slots
        rows = np.arange(len(self), dtype=np.int64).reshape((-1,) + (1,) * (wanted.ndim - 1))
        flat = rows * slots + wanted % slots
        present = usable & (self.hour.reshape(-1)[flat] == wanted)
        count = self.cpu_count.reshape(-1)[flat]
        has_cpu = present & (count > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(has_cpu, self.cpu_sum.reshape(-1)[flat] / count, np.nan)
        peak = np.where(has_cpu, self.cpu_peak.reshape(-1)[flat], np.nan)
        memory = self.memory_peak.reshape(-1)[flat]
        memory = np.where(present & (memory > 0), memory, np.nan)
        return mean, peak, memory


def daily_consistency(means: FloatArray) -> FloatArray:
    """How well each day's hourly CPU repeats the day before, from `daily_cpu_means`: the
    median Pearson correlation of consecutive whole days (NaN with fewer than two). Near 1
    for a daily (or 4, 6, 12-hour) cycle, near 0 for noise and random bursts, whose hours do
    not predict the same hours tomorrow. The median, so that the pairs a weekend breaks do
    not turn a weekly service aperiodic for its weekend."""
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        centred = means - np.nanmean(means, axis=2, keepdims=True)
        scale = np.sqrt(np.nansum(centred * centred, axis=2))
        pair = np.nansum(centred[:, :-1, :] * centred[:, 1:, :], axis=2) / (
            scale[:, :-1] * scale[:, 1:]
        )
        complete: BoolArray = np.asarray(~np.isnan(means).any(axis=2))
        pair = np.where(complete[:, :-1] & complete[:, 1:], pair, np.nan)
        result: FloatArray = np.nanmedian(pair, axis=1)
    return result


def daily_depth(means: FloatArray) -> FloatArray:
    """From `daily_cpu_means`: per row, the largest over whole days of the day's quietest
    hour over its busiest (NaN without a whole day). Near 0 only for a job that idles
    between runs every day; a daily cycle that never idles, or a quiet weekend, is not."""
    complete = ~np.isnan(means).any(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ratio = np.nanmin(means, axis=2) / np.nanmax(means, axis=2)
        result: FloatArray = np.nanmax(np.where(complete, ratio, np.nan), axis=1)
    return result


def _slope(recent: FloatArray) -> FloatArray:
    """Growth per hour of rows of hourly values (the last hour first): the median of the
    hour-to-hour differences where at least three in four of them grew, 0 elsewhere; a leak's
    steady climb counts, a single step (a job starting) or a sawtooth (jobs coming and going)
    does not."""
    steps = recent[:, :-1] - recent[:, 1:]
    if not steps.shape[1]:
        return np.zeros(recent.shape[0])
    climbing = np.mean(steps >= 0, axis=1) >= 0.75
    result: FloatArray = np.where(climbing, np.median(steps, axis=1), 0.0)
    return result


def _nanmax(values: FloatArray, axes: tuple[int, ...]) -> FloatArray:
    """Largest non-NaN value over `axes`; NaN where all are NaN."""
    filled = np.where(np.isnan(values), -np.inf, values)
    best = filled.max(axis=axes) if filled.size else np.full(values.shape[:1], -np.inf)
    result: FloatArray = np.where(np.isneginf(best), np.nan, best)
    return result
