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
week: it grows for the next hour and shrinks only when the next `profile_hold_hours` are all
low, so a daily job costs two resizes a day. Design, parameters and results in docs/simulate.md.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Final, Self

import numpy as np
from pydantic import Field, model_validator

from analytics.arrays import FloatArray, Int64Array
from analytics.estimators import (
    ConfidenceMultiplierEstimator,
    MarginEstimator,
    PercentileEstimator,
    Resource,
    ResourceEstimator,
)
from analytics.go_semantics import resource_amount, resource_amount_array
from analytics.model_params import ModelParams
from analytics.store import EstimationInput
from analytics.strategies import PodEstimates, PodEstimators, Strategy, register_strategy
from analytics.strategies_baselines import FloorEstimator, ScaledEstimator
from analytics.strategy_profile import HourlyProfile

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
        0.12, "share of the spread between the base and high CPU percentiles added (0..1)"
    )
    cpu_margin_fraction: float = Field(0.0, ge=0, description="fraction added to CPU")
    memory_percentile: float = _fraction(0.98, "percentile of the memory peaks (0..1)")
    memory_margin_fraction: float = Field(0.05, ge=0, description="fraction added to memory")
    oom_bump_up_ratio: float = Field(
        2.0, ge=1, description="memory after an OOM kill is at least this times the memory used"
    )
    min_cpu_millicores: float = Field(10, ge=0, description="smallest CPU request, millicores")
    min_memory_mib: float = Field(16, ge=0, description="smallest memory request, MiB")
    lower_band_fraction: float = Field(
        0.15,
        ge=0,
        lt=1,
        description="lower bound is the target x (1 - this): a request below grows at once",
    )
    upper_band_fraction: float = Field(
        0.3,
        ge=0,
        description="upper bound is the target x (1 + this): a request above shrinks",
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
        description="hours ahead the target covers; a request shrinks only when all are low",
    )
    profile_recent_hours: int = Field(
        1, ge=0, le=24, description="last hours whose usage the target always covers"
    )
    profile_cpu_peak_weight: float = _fraction(
        0.8, "CPU of an hour: its mean plus this share of its peak above the mean (0..1)"
    )
    profile_cpu_margin_fraction: float = Field(
        0.2, ge=0, description="fraction added to the profile's CPU"
    )
    profile_memory_margin_fraction: float = Field(
        0.1, ge=0, description="fraction added to the profile's memory"
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
class ProfiledEstimators(PodEstimators):
    """The histogram estimators of `default`, plus the hourly profile rule.

    `estimate` (the `PodEstimators` interface) reads the histograms only; callers that keep
    an `HourlyProfile` beside the store call `estimate_with_profile`.
    """

    params: DefaultParams

    def estimate_with_profile(
        self, aggregates: EstimationInput, profile: HourlyProfile, now_ns: int
    ) -> PodEstimates:
        """Estimates for the aggregates, `profile` holding the same rows in the same order.

        Where the profile has `profile_min_days` of history, the target covers the
        profile's next `profile_target_hours` hours and the last `profile_recent_hours`
        hours, plus a margin; the upper bound covers the next `profile_hold_hours` hours, so
        that a request shrinks only when all of them are low. Elsewhere (or with
        `profile` false), the histogram estimates.
        """
        base = self.estimate(aggregates)
        p = self.params
        n = len(aggregates)
        if not p.profile or n == 0:
            return base
        hours = max(p.profile_need_hours, p.profile_hold_hours)
        forecast = profile.forecast(
            np.full(n, now_ns, dtype=np.int64),
            hours,
            days=p.profile_days,
            spread=p.profile_spread_hours,
            recent_hours=p.profile_recent_hours,
        )
        w = p.profile_cpu_peak_weight
        cpu_hours = (forecast.cpu_mean + w * (forecast.cpu_peak - forecast.cpu_mean)) * (
            1.0 + p.profile_cpu_margin_fraction
        )
        recent_cpu = (
            forecast.recent_cpu_mean + w * (forecast.recent_cpu_peak - forecast.recent_cpu_mean)
        ) * (1.0 + p.profile_cpu_margin_fraction)
        memory_hours = forecast.memory_peak * (1.0 + p.profile_memory_margin_fraction)
        recent_memory = forecast.recent_memory_peak * (1.0 + p.profile_memory_margin_fraction)
        known = (forecast.days >= p.profile_min_days) & ~np.isnan(cpu_hours).any(axis=1)
        known &= ~np.isnan(memory_hours).any(axis=1)

        def ahead(values: FloatArray, recent: FloatArray, count: int) -> FloatArray:
            result: FloatArray = np.fmax(np.nanmax(values[:, :count], axis=1), recent)
            return result

        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            cpu_need = ahead(cpu_hours, recent_cpu, p.profile_need_hours)
            cpu_hold = ahead(cpu_hours, recent_cpu, p.profile_hold_hours)
            memory_need = ahead(memory_hours, recent_memory, p.profile_need_hours)
            memory_hold = ahead(memory_hours, recent_memory, p.profile_hold_hours)
        known &= np.isfinite(cpu_hold) & np.isfinite(memory_hold)

        cpu_cap = np.maximum(
            base.target_cpu,
            PercentileEstimator(Resource.CPU, p.profile_cap_cpu_percentile).estimate(aggregates),
        )

        def pick(
            profiled: FloatArray, histogram: Int64Array, cap: Int64Array, floor: int
        ) -> Int64Array:
            amount = np.minimum(resource_amount_array(np.where(known, profiled, 0.0)), cap)
            result: Int64Array = np.where(known, np.maximum(amount, floor), histogram)
            return result

        min_cpu = resource_amount(p.min_cpu_millicores)
        min_memory = resource_amount(p.min_memory_mib * _MIB)
        need_cpu = pick(cpu_need, base.target_cpu, cpu_cap, min_cpu)
        need_memory = pick(memory_need, base.target_memory, base.target_memory, min_memory)
        target_cpu = pick(cpu_hold, base.target_cpu, cpu_cap, min_cpu)
        target_memory = pick(memory_hold, base.target_memory, base.target_memory, min_memory)
        lower = 1.0 - p.lower_band_fraction
        upper = 1.0 + p.upper_band_fraction

        def scaled(values: Int64Array, factor: float) -> Int64Array:
            return resource_amount_array(values.astype(np.float64) * factor)

        return PodEstimates(
            target_cpu=target_cpu,
            target_memory=target_memory,
            lower_cpu=np.where(known, scaled(need_cpu, lower), base.lower_cpu),
            lower_memory=np.where(known, scaled(need_memory, lower), base.lower_memory),
            upper_cpu=np.where(known, scaled(target_cpu, upper), base.upper_cpu),
            upper_memory=np.where(known, scaled(target_memory, upper), base.upper_memory),
        )


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
        lower_cpu=ScaledEstimator(cpu, 1.0 - params.lower_band_fraction),
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
    "the same hours of the past week (grow for the next hour, shrink only when the next 10 "
    "are low); before, CPU p90 + 12% of the p90-p99 spread, memory p98 of hourly peaks + 5%; "
    "bounds -15%/+30%",
    params_model=DefaultParams,
    build=_build_default,
)


def register_default() -> None:
    """Add `default` to the engine's strategy registry (`analytics.strategies`)."""
    register_strategy(DEFAULT)
