"""`default`: this project's strategy, designed to beat the stock VPA on the simulator.

Two sources of state. The engine's decaying histograms (CPU samples, hourly memory peaks) give
the estimates of `PodEstimators.estimate`, used before a day of history and wherever no
hourly profile is kept:

- **CPU sized to burstiness**: `p_base + burst_weight * (p_burst - p_base)` of CPU usage.
- **Memory from the peaks**: a high percentile of hourly peaks plus a margin; OOM kills are in
  those peaks already (bumped by the engine).
- **A band for hysteresis**: bounds `target x (1 - lower_band)` and `target x (1 + upper_band)`,
  the upper one widened while history is short, as the VPA widens its own.

`ProfiledEstimators.estimate_with_profile` also reads an `HourlyProfile`
(`analytics.strategy_profile`): after a day, the request covers the same hours of the past
week: it grows for the next hour and shrinks only when the hours it holds are all low (the
next `profile_hold_hours`, a whole day for a daily cycle, `onoff_hold_hours` for a job), so a
job idle long enough costs two resizes a run and a daily cycle one flat request. Design,
parameters and results in docs/simulate.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Self

import numpy as np
from pydantic import Field, model_validator

from analytics.arrays import BoolArray, FloatArray, Int64Array
from analytics.estimators import (
    ConfidenceMultiplierEstimator,
    FloorEstimator,
    MarginEstimator,
    PercentileEstimator,
    Resource,
    ResourceEstimator,
    ScaledEstimator,
    SmallestEstimator,
)
from analytics.go_semantics import resource_amount, resource_amount_array
from analytics.model_params import ModelParams
from analytics.store import EstimationInput
from analytics.strategies import PodEstimates, PodEstimators, Strategy, register_strategy
from analytics.strategy_profile import (
    HourlyProfile,
    ProfileForecast,
    daily_consistency,
    daily_depth,
)

__all__ = [
    "DEFAULT",
    "BurstPercentileEstimator",
    "DefaultParams",
    "ProfiledEstimators",
    "register_default",
]

_HOUR_S: Final = 3600.0
_DAY_NS: Final = 86_400 * 1_000_000_000
_MIB: Final = 1024 * 1024


@dataclass(frozen=True)
class BurstPercentileEstimator:
    """CPU at `p_base + burst_weight * (p_burst - p_base)`, in millicores.

    Percentiles are bucket ends of the CPU histogram, as for `PercentileEstimator`.
    """

    base_percentile: float
    burst_percentile: float
    burst_weight: float

    @property
    def resource(self) -> Resource:
        return Resource.CPU

    def estimate(self, aggregates: EstimationInput) -> Int64Array:
        base = aggregates.cpu_walk.percentile(self.base_percentile)
        burst = aggregates.cpu_walk.percentile(self.burst_percentile)
        cores = base + self.burst_weight * np.maximum(burst - base, 0.0)
        return resource_amount_array(cores * 1000.0)

    def describe(self) -> str:
        return (
            f"p{self.base_percentile * 100:g} of cpu usage + {self.burst_weight:g} x "
            f"(p{self.burst_percentile * 100:g} - p{self.base_percentile * 100:g})"
        )


def _fraction(default: float, description: str) -> float:
    return Field(default, ge=0, le=1, description=description)


class DefaultParams(ModelParams):
    """Parameters of `default`; the defaults are the values tuned on seeds 0-4."""

    cpu_histogram_decay_half_life_s: float = Field(
        24 * _HOUR_S, ge=1e-6, description="half-life of CPU sample weights, seconds"
    )
    memory_histogram_decay_half_life_s: float = Field(
        12 * _HOUR_S, ge=1e-6, description="half-life of memory peak weights, seconds"
    )
    memory_aggregation_interval_s: float = Field(
        _HOUR_S, ge=1e-6, description="one memory peak per container per interval, seconds"
    )
    memory_aggregation_interval_count: int = Field(
        8 * 24, ge=1, description="intervals of history kept for an idle container (8 days)"
    )
    cpu_base_percentile: float = _fraction(0.9, "base percentile of CPU usage (0..1)")
    cpu_burst_percentile: float = _fraction(0.99, "high percentile of CPU usage (0..1)")
    cpu_burst_weight: float = _fraction(
        0.05, "share of the spread between the base and high CPU percentiles added (0..1)"
    )
    cpu_margin_fraction: float = Field(0.0, ge=0, description="fraction added to CPU")
    memory_percentile: float = _fraction(0.98, "percentile of the memory peaks (0..1)")
    memory_margin_fraction: float = Field(0.08, ge=0, description="fraction added to memory")
    oom_bump_up_ratio: float = Field(
        2.0, ge=1, description="memory after an OOM kill is at least this times the memory used"
    )
    min_cpu_millicores: float = Field(10, ge=0, description="smallest CPU request, millicores")
    min_memory_mib: float = Field(16, ge=0, description="smallest memory request, MiB")
    cpu_lower_percentile: float = _fraction(
        0.85,
        "the CPU lower bound is at most this percentile of CPU usage plus "
        "cpu_lower_margin_fraction: a container grows only when its request falls below a "
        "level it held most of the time, not when a burst moves a high percentile",
    )
    cpu_lower_margin_fraction: float = Field(
        0.15, ge=0, description="margin on cpu_lower_percentile for the lower bound"
    )
    lower_band_fraction: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="lower bound is the target x (1 - this): a request below grows at once",
    )
    memory_lower_band_fraction: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="memory grows at once when below what the next hour needs x (1 - this): "
        "with the limit at the request, a request lagging a climb is a kill",
    )
    memory_headroom_fraction: float = Field(
        0.05,
        ge=0,
        description="memory grows once the last hour's peak comes within this fraction of the "
        "request",
    )
    upper_band_fraction: float = Field(
        0.4,
        ge=0,
        description="upper bound is the target x (1 + this): a request above shrinks",
    )

    settled_days: float = Field(
        5.0, ge=0, description="days of history after which settled_upper_band_fraction applies"
    )
    settled_upper_band_fraction: float = Field(
        0.3,
        ge=0,
        description="upper_band_fraction once a container has settled_days of history",
    )
    settled_memory_upper_band_fraction: float = Field(
        0.2,
        ge=0,
        description="upper_band_fraction of memory once a container has settled_days of "
        "history: a steady heap held 30 % above its need for weeks costs more than one resize",
    )
    min_shrink_millicores: float = Field(
        25, ge=0, description="a request shrinks only to save at least this much CPU, millicores"
    )
    min_shrink_mib: float = Field(
        32, ge=0, description="a request shrinks only to save at least this much memory, MiB"
    )
    young_upper_multiplier: float = Field(
        1.0,
        ge=0,
        description="while history is short, the upper bound is widened by "
        "(1 + this / days of history), as the VPA widens its own: young containers do not "
        "shrink on the first hours of data",
    )
    profile: bool = Field(
        True, description="follow the hourly profile when one is kept (false: histograms only)"
    )
    profile_min_days: float = Field(
        1.0, ge=0, description="days of history before the hourly profile is followed"
    )
    profile_days: int = Field(7, ge=1, le=7, description="past days the profile looks back")
    profile_spread_hours: int = Field(
        1, ge=0, le=6, description="neighbouring hours of each past day that also count"
    )
    profile_need_hours: int = Field(
        1,
        ge=1,
        le=24,
        description="hours ahead a request must cover: below them it grows (lower bound)",
    )
    profile_hold_hours: int = Field(
        10,
        ge=1,
        le=24,
        description="hours ahead the target covers for a container without a daily cycle (a "
        "periodic one covers the next 24); a request shrinks only when all are low",
    )
    profile_recent_hours: int = Field(
        1, ge=0, le=24, description="last hours whose usage the target always covers"
    )
    profile_cpu_peak_weight: float = _fraction(
        0.5, "CPU of an hour: its mean plus this share of its peak above the mean (0..1)"
    )
    profile_cpu_margin_fraction: float = Field(
        0.2, ge=0, description="fraction added to the profile's CPU"
    )
    profile_memory_margin_fraction: float = Field(
        0.1, ge=0, description="fraction added to the profile's memory"
    )
    profile_min_consistency: float = Field(
        0.5,
        ge=-1,
        le=1,
        description="follow the profile only where consecutive days' hourly CPU correlate at "
        "least this much (a daily cycle; random bursts and noise do not)",
    )
    onoff_max_depth: float = Field(
        0.1,
        ge=0,
        le=1,
        description="a periodic container is an on/off job where, every day, its quietest "
        "hour used at most this share of its busiest",
    )
    onoff_hold_hours: int = Field(
        6,
        ge=1,
        le=24,
        description="profile_hold_hours for on/off jobs: a job idle at least this long "
        "between runs is followed down and up",
    )
    onoff_cpu_margin_fraction: float = Field(
        0.2, ge=0, description="an on/off job's CPU of an hour: its mean plus this fraction"
    )
    onoff_busy_percentile: float = _fraction(
        0.9,
        "an on/off job's hours with the job get this percentile of its busy samples (the "
        "share of busy hours tells which percentile of all samples that is)",
    )
    periodic_week_cap_margin_fraction: float = Field(
        0.1,
        ge=0,
        description="a periodic container's CPU cap is at least its busiest hourly mean of "
        "the last week plus this fraction (0: off)",
    )
    periodic_upper_band_fraction: float = Field(
        0.5, ge=0, description="a periodic container's CPU shrinks when this far above target"
    )
    sustained_hours: int = Field(
        2, ge=1, le=24, description="hours a CPU level must hold to count as sustained"
    )
    quiet_hours: int = Field(
        8, ge=1, le=48, description="hours of quiet that let a container shrink at once"
    )
    quiet_ratio: float = Field(
        0.6,
        ge=0,
        le=1,
        description="a container without a daily cycle (known after two days) whose last "
        "quiet_hours needed less than this share of its target shrinks to what they needed "
        "(a step down, in one resize instead of as the histograms forget); 0 turns it off",
    )
    sustained_cpu_margin_fraction: float = Field(
        0.2,
        ge=0,
        description="a container without a daily cycle: CPU covers the lowest hourly mean of "
        "the last profile_recent_hours hours plus this fraction",
    )
    profile_cap_cpu_percentile: float = _fraction(
        0.9,
        "CPU from the profile is never above this percentile of CPU usage (or the histogram "
        "target if higher): the profile lowers requests, it does not raise them past history",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.cpu_base_percentile > self.cpu_burst_percentile:
            raise ValueError(
                f"cpu_base_percentile ({self.cpu_base_percentile}) <= "
                f"cpu_burst_percentile ({self.cpu_burst_percentile}) must hold"
            )
        return self


@dataclass(frozen=True)
class _Kinds:
    """What the profile says about each row: `periodic` (consecutive days' hours repeat),
    `onoff` (periodic, and idle between runs every day), `settled` (two whole days known,
    so a row that is not periodic is known not to be)."""

    periodic: BoolArray
    onoff: BoolArray
    settled: BoolArray
    busy_cpu: FloatArray
    """For on/off jobs, the CPU (millicores) of `onoff_busy_percentile` of their busy samples:
    the percentile of all samples that leaves the idle share below it."""

    @classmethod
    def of(cls, means: FloatArray, p: DefaultParams, aggregates: EstimationInput) -> _Kinds:
        consistency = daily_consistency(means)
        periodic = np.nan_to_num(consistency, nan=-2.0) >= p.profile_min_consistency
        onoff = periodic & (np.nan_to_num(daily_depth(means), nan=2.0) <= p.onoff_max_depth)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            day_peak = np.nanmax(means, axis=2, keepdims=True)
            busy_hours = np.where(np.isnan(means), np.nan, means > 0.5 * day_peak)
            duty = np.nan_to_num(np.nanmean(busy_hours, axis=(1, 2)), nan=1.0)
        quantile = 1.0 - np.clip(duty, 0.01, 1.0) * (1.0 - p.onoff_busy_percentile)
        busy_cpu = aggregates.cpu_walk.percentile(quantile) * 1000.0
        return cls(
            periodic=periodic,
            onoff=onoff,
            settled=~np.isnan(consistency),
            busy_cpu=np.where(onoff, busy_cpu, 0.0),
        )


@dataclass(frozen=True)
class ProfiledEstimators(PodEstimators):
    """The histogram estimators of `default`, plus the hourly profile rules.

    `estimate` (the `PodEstimators` interface) reads the histograms only; the engine calls
    `estimate_with_profile` where it keeps an `HourlyProfile` beside the store.
    """

    params: DefaultParams

    def estimate_with_profile(
        self, aggregates: EstimationInput, profile: HourlyProfile, now_ns: int
    ) -> PodEstimates:
        """Estimates for the aggregates, `profile` holding the same rows in the same order.

        Rows with `profile_min_days` of profile follow it: the lower bound covers the next
        `profile_need_hours` hours and the target the next `profile_hold_hours`, each hour
        being the most the same hours of the past days used (for periodic rows, and never
        more than a week before), and the recent past; capped by history. Other rows (or
        with `profile` false) get the histogram estimates. See docs/simulate.md.
        """
        base = self.estimate(aggregates)
        p = self.params
        if not p.profile or len(aggregates) == 0:
            return base
        now = np.full(len(aggregates), now_ns, dtype=np.int64)
        forecast = profile.forecast(
            now,
            24,
            days=p.profile_days,
            spread=p.profile_spread_hours,
            recent_hours=p.profile_recent_hours,
            sustained_hours=p.sustained_hours,
            quiet_hours=p.quiet_hours,
        )
        means = profile.daily_cpu_means(now, p.profile_days)
        kinds = _Kinds.of(means, p, aggregates)

        def cpu_of(mean: FloatArray, peak: FloatArray) -> FloatArray:
            return _hour_cpu(p, kinds, mean, peak)

        needs = _Needs.of(p, kinds, forecast, cpu_of)
        cpu_need, cpu_hold = needs.cpu_need, needs.cpu_hold
        memory_need, memory_hold = needs.memory_need, needs.memory_hold
        known_cpu, known_memory = needs.known_cpu, needs.known_memory
        sustained_cpu = needs.sustained_cpu

        cpu_cap = self._cpu_cap(aggregates, base, kinds, means, sustained_cpu)
        min_cpu = resource_amount(p.min_cpu_millicores)
        min_memory = resource_amount(p.min_memory_mib * _MIB)
        need_cpu = _pick(known_cpu, cpu_need, base.target_cpu, cpu_cap, min_cpu)
        target_cpu = _pick(known_cpu, cpu_hold, base.target_cpu, cpu_cap, min_cpu)
        cap = np.maximum(base.target_memory, resource_amount_array(needs.growing_memory))
        need_memory = _pick(known_memory, memory_need, base.target_memory, cap, min_memory)
        target_memory = _pick(known_memory, memory_hold, base.target_memory, cap, min_memory)

        quiet_needed = _recent_need(cpu_of(forecast.quiet_cpu_mean, forecast.quiet_cpu_peak))
        quiet = self._quiet_cpu(kinds, target_cpu, quiet_needed)
        target_cpu = np.where(quiet > 0, np.maximum(quiet, min_cpu), target_cpu)
        need_cpu = np.minimum(need_cpu, target_cpu)
        known_cpu |= quiet > 0

        lower = 1.0 - p.lower_band_fraction
        # A week of history makes the estimates steady: a request still far above them then
        # is over-provisioned for good, and one resize removes it for the weeks to come.
        settled = forecast.days >= p.settled_days
        upper = 1.0 + np.where(settled, p.settled_upper_band_fraction, p.upper_band_fraction)
        memory_upper = 1.0 + np.where(
            settled, p.settled_memory_upper_band_fraction, p.upper_band_fraction
        )
        # Growing needs the request below a level held most of the time, not below a high
        # percentile a burst has just moved (periodic rows grow for their next hour).
        cpu_lower_ceiling = MarginEstimator(
            PercentileEstimator(Resource.CPU, p.cpu_lower_percentile), p.cpu_lower_margin_fraction
        ).estimate(aggregates)
        # Without a daily cycle, past days say nothing of the next hour: a request that
        # served the last quiet_hours is not grown for what the days before a step down used.
        recent_floor = np.where(
            kinds.settled, resource_amount_array(quiet_needed * lower), np.iinfo(np.int64).max
        )
        lower_cpu = np.where(
            kinds.periodic,
            _scaled(need_cpu, lower),
            np.minimum(np.minimum(_scaled(need_cpu, lower), cpu_lower_ceiling), recent_floor),
        )
        upper_cpu = np.maximum(
            _scaled(
                target_cpu, np.where(kinds.periodic, 1.0 + p.periodic_upper_band_fraction, upper)
            ),
            target_cpu + resource_amount(p.min_shrink_millicores),
        )
        # A resize that gives back a few MiB or millicores is not worth making.
        upper_memory = np.maximum(
            _scaled(target_memory, memory_upper),
            target_memory + resource_amount(p.min_shrink_mib * _MIB),
        )
        return PodEstimates(
            target_cpu=target_cpu,
            target_memory=target_memory,
            lower_cpu=np.where(known_cpu, lower_cpu, base.lower_cpu),
            lower_memory=np.where(
                known_memory,
                np.maximum(
                    _scaled(need_memory, 1.0 - p.memory_lower_band_fraction),
                    np.minimum(resource_amount_array(needs.memory_floor), target_memory),
                ),
                base.lower_memory,
            ),
            upper_cpu=np.where(known_cpu, upper_cpu, base.upper_cpu),
            upper_memory=np.where(known_memory, upper_memory, base.upper_memory),
        )

    def _quiet_cpu(self, kinds: _Kinds, target_cpu: Int64Array, needed: FloatArray) -> Int64Array:
        """Per row, the CPU its last `quiet_hours` needed where that is below `quiet_ratio`
        of its target and the row is known to have no daily cycle (a step down: it shrinks
        at once, not as the histograms forget); 0 elsewhere."""
        amount = resource_amount_array(needed)
        stepped = kinds.settled & ~kinds.periodic & (amount < target_cpu * self.params.quiet_ratio)
        result: Int64Array = np.where(stepped, amount, 0)
        return result

    def _cpu_cap(
        self,
        aggregates: EstimationInput,
        base: PodEstimates,
        kinds: _Kinds,
        means: FloatArray,
        sustained_cpu: FloatArray,
    ) -> Int64Array:
        """The most CPU the profile may ask for: history's target or a high percentile; an
        on/off job's own high percentile (a percentile over all hours lands in its idle
        ones); for other periodic rows, also the busiest hour of the week (the histograms
        forget busy weekdays over a quiet weekend); for the rest, also a level sustained
        lately (a step up, at once instead of as the histograms catch up)."""
        p = self.params
        history = np.maximum(
            base.target_cpu,
            PercentileEstimator(Resource.CPU, p.profile_cap_cpu_percentile).estimate(aggregates),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            busiest = np.nan_to_num(np.nanmax(means, axis=(1, 2)), nan=0.0)
        week = resource_amount_array(busiest * (1.0 + p.periodic_week_cap_margin_fraction))
        lately = resource_amount_array(np.nan_to_num(sustained_cpu, nan=0.0))
        result: Int64Array = np.where(
            kinds.onoff,
            resource_amount_array(kinds.busy_cpu),
            np.maximum(history, np.where(kinds.periodic, week, lately)),
        )
        return result


def _hour_cpu(p: DefaultParams, kinds: _Kinds, mean: FloatArray, peak: FloatArray) -> FloatArray:
    """CPU an hour needs: on/off jobs by their mean, the others with their peak too."""
    shape = (-1,) + (1,) * (mean.ndim - 1)
    weight = np.where(kinds.onoff, 0.0, p.profile_cpu_peak_weight).reshape(shape)
    margin = np.where(
        kinds.onoff, p.onoff_cpu_margin_fraction, p.profile_cpu_margin_fraction
    ).reshape(shape)
    result: FloatArray = (mean + weight * (peak - mean)) * (1.0 + margin)
    # An hour an on/off job ran in, even part of, needs the job's busy level: its mean is
    # diluted by the idle minutes.
    busy = kinds.busy_cpu.reshape(shape)
    return np.where(kinds.onoff.reshape(shape) & (peak >= 0.5 * busy), busy, result)


@dataclass(frozen=True)
class _Needs:
    """What the profile says each row needs: for the next hours a request must cover
    (`*_need`, the lower bound) and those the target holds (`*_hold`), where `known_*`."""

    cpu_need: FloatArray
    cpu_hold: FloatArray
    memory_need: FloatArray
    memory_hold: FloatArray
    known_cpu: BoolArray
    known_memory: BoolArray
    sustained_cpu: FloatArray
    growing_memory: FloatArray
    """What memory that has been climbing needs over the hours the target holds (0 where it
    has not): history cannot cap it, since history has not seen it yet."""
    memory_floor: FloatArray
    """Rows without a daily cycle: the last hour's memory peak plus
    `memory_headroom_fraction`, a request below it being one climb away from a kill where
    the limit equals the request (a periodic row's coming hours are forecast); 0 elsewhere."""

    @classmethod
    def of(
        cls,
        p: DefaultParams,
        kinds: _Kinds,
        forecast: ProfileForecast,
        cpu_of: Callable[[FloatArray, FloatArray], FloatArray],
    ) -> _Needs:
        memory_margin = 1.0 + p.profile_memory_margin_fraction
        cpu_hours = cpu_of(forecast.cpu_mean, forecast.cpu_peak)
        memory_hours = forecast.memory_peak * memory_margin
        # With a week of history, a periodic hour needs no more than it did a week before:
        # the quiet weekend after busy weekdays, which the same hours of the last days hide.
        weekly = (kinds.periodic & (forecast.days >= 7))[:, None]
        week_cpu = cpu_of(forecast.week_cpu_mean, forecast.week_cpu_peak)
        cpu_hours = np.where(weekly, np.fmin(cpu_hours, week_cpu), cpu_hours)
        memory_hours = np.where(
            weekly, np.fmin(memory_hours, forecast.week_memory_peak * memory_margin), memory_hours
        )
        # Without a daily cycle, the recent past counts with the level it held throughout,
        # not its peak: a burst is over before a resize could help, a step up is not.
        sustained_cpu = forecast.sustained_cpu_mean * (1.0 + p.sustained_cpu_margin_fraction)
        recent_cpu = np.where(
            kinds.periodic,
            cpu_of(forecast.recent_cpu_mean, forecast.recent_cpu_peak),
            sustained_cpu,
        )
        # Memory that has been growing (a leak) is a kill when the request lags it: what
        # the recent past needs includes the growth over the hours covered (a periodic row's
        # climbs are in its forecast already).
        growth = np.where(
            kinds.periodic, 0.0, np.nan_to_num(np.maximum(forecast.memory_trend, 0.0), nan=0.0)
        )

        def recent_memory(hours: int) -> FloatArray:
            grown = forecast.recent_memory_peak + growth * hours
            result: FloatArray = grown * memory_margin
            return result

        # A daily cycle is followed within the day only by its on/off jobs: the others hold
        # the whole next day (a day's swing is not worth two resizes; a weekend's is).
        hold_hours = np.where(
            kinds.onoff, p.onoff_hold_hours, np.where(kinds.periodic, 24, p.profile_hold_hours)
        )
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            cpu_hold = _ahead(cpu_hours, recent_cpu, hold_hours)
            cpu_day = _ahead(cpu_hours, recent_cpu, 24)
            memory_day = _ahead(memory_hours, recent_memory(p.profile_hold_hours), 24)
            memory_hold = _ahead(memory_hours, recent_memory(p.profile_hold_hours), hold_hours)
            # An on/off job idle long enough shrinks both resources between runs; where one of
            # them would stay up (a run starts within the hours held, counting neighbours),
            # both hold the run's level: two resizes for half the saving are not worth it.
            idle = (cpu_hold <= 0.5 * cpu_day) & (memory_hold <= 0.5 * memory_day)
            cpu_hold = np.where(kinds.onoff & ~idle, cpu_day, cpu_hold)
            memory_hold = np.where(kinds.onoff & ~idle, memory_day, memory_hold)
            memory_need = _ahead(
                memory_hours, recent_memory(p.profile_need_hours), p.profile_need_hours
            )
            return cls(
                cpu_need=_ahead(cpu_hours, recent_cpu, p.profile_need_hours),
                cpu_hold=cpu_hold,
                memory_need=memory_need,
                memory_hold=memory_hold,
                known_cpu=np.asarray(
                    (forecast.days >= p.profile_min_days)
                    & ~np.isnan(cpu_hours).any(axis=1)
                    & np.isfinite(cpu_hold)
                ),
                known_memory=np.asarray(
                    (forecast.days >= p.profile_min_days)
                    & ~np.isnan(memory_hours).any(axis=1)
                    & np.isfinite(memory_hold)
                ),
                sustained_cpu=sustained_cpu,
                growing_memory=np.where(growth > 0, recent_memory(p.profile_hold_hours), 0.0),
                memory_floor=np.where(
                    kinds.periodic,
                    0.0,
                    np.nan_to_num(
                        forecast.recent_memory_peak * (1.0 + p.memory_headroom_fraction), nan=0.0
                    ),
                ),
            )


_NONE: Final = float(2**52)
"""An amount no cap or target reaches: "no quiet known"."""


def _recent_need(quiet_hours: FloatArray) -> FloatArray:
    """The most any of the last `quiet_hours` needed, `_NONE` where one is not held."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        needed: FloatArray = np.nan_to_num(np.max(quiet_hours, axis=1), nan=_NONE).clip(max=_NONE)
    return needed


def _ahead(values: FloatArray, recent: FloatArray, count: int | Int64Array) -> FloatArray:
    """The most of the next `count` hours (for all rows, or per row) and the recent past."""
    ahead = np.arange(values.shape[1])[None, :] < np.reshape(count, (-1, 1))
    result: FloatArray = np.fmax(np.nanmax(np.where(ahead, values, -np.inf), axis=1), recent)
    return result


def _pick(
    known: BoolArray, profiled: FloatArray, histogram: Int64Array, cap: Int64Array, floor: int
) -> Int64Array:
    """The profile's amount (capped, floored) where known, the histogram's elsewhere."""
    amount = np.minimum(resource_amount_array(np.where(known, profiled, 0.0)), cap)
    result: Int64Array = np.where(known, np.maximum(amount, floor), histogram)
    return result


def _scaled(values: Int64Array, factor: float | FloatArray) -> Int64Array:
    return resource_amount_array(values.astype(np.float64) * factor)


def _build_default(params: DefaultParams) -> PodEstimators:
    cpu: ResourceEstimator = FloorEstimator(
        MarginEstimator(
            BurstPercentileEstimator(
                params.cpu_base_percentile, params.cpu_burst_percentile, params.cpu_burst_weight
            ),
            params.cpu_margin_fraction,
        ),
        resource_amount(params.min_cpu_millicores),
    )
    memory: ResourceEstimator = FloorEstimator(
        MarginEstimator(
            PercentileEstimator(Resource.MEMORY, params.memory_percentile),
            params.memory_margin_fraction,
        ),
        resource_amount(params.min_memory_mib * _MIB),
    )
    return ProfiledEstimators(
        target_cpu=cpu,
        target_memory=memory,
        lower_cpu=SmallestEstimator(
            ScaledEstimator(cpu, 1.0 - params.lower_band_fraction),
            MarginEstimator(
                PercentileEstimator(Resource.CPU, params.cpu_lower_percentile),
                params.cpu_lower_margin_fraction,
            ),
        ),
        lower_memory=ScaledEstimator(memory, 1.0 - params.lower_band_fraction),
        upper_cpu=ConfidenceMultiplierEstimator(
            ScaledEstimator(cpu, 1.0 + params.upper_band_fraction),
            params.young_upper_multiplier,
            1.0,
            _DAY_NS,
        ),
        upper_memory=ConfidenceMultiplierEstimator(
            ScaledEstimator(memory, 1.0 + params.upper_band_fraction),
            params.young_upper_multiplier,
            1.0,
            _DAY_NS,
        ),
        params=params,
    )


DEFAULT: Final = Strategy(
    name="default",
    description="this project's default: after a day, requests follow the hourly profile of "
    "the same hours of the past week (grow for the next hour, shrink only when the next 10, "
    "or a daily cycle's next 24, are low; jobs idle 6 hours are followed); before, CPU p90 + "
    "5% of the p90-p99 spread, memory p98 of hourly peaks + 8%; bounds -20%/+40%",
    params_model=DefaultParams,
    build=_build_default,
)


def register_default() -> None:
    """Add `default` to the engine's strategy registry (`analytics.strategies`)."""
    register_strategy(DEFAULT)


register_default()
