"""Baseline strategies from other recommenders, to measure ours against: `krr-simple` and
`autopilot`.

Both are built from the engine's state like every strategy (decaying histograms of CPU
samples and of memory peaks), as `Strategy` objects in `BASELINES`. The simulator
(`analytics.simulate`) finds them by name; `register_baselines()` adds them to the engine's
registry, after which `replay_trace`, `vpa-fleet recommend` and settings accept them too.
Neither recommender has the VPA's bounds; both get a band of `bound_fraction` around the
target as [lowerBound, upperBound], so that the updater rule resizes when the target moves by
more than that. Sources and the differences from the originals are in docs/simulate.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from pydantic import Field

from analytics.arrays import Int64Array
from analytics.estimators import (
    FloorEstimator,
    MarginEstimator,
    PercentileEstimator,
    Resource,
    ResourceEstimator,
    ScaledEstimator,
)
from analytics.go_semantics import resource_amount, resource_amount_array
from analytics.model_params import ModelParams
from analytics.store import EstimationInput
from analytics.strategies import PodEstimators, Strategy, register_strategy

__all__ = [
    "AUTOPILOT",
    "BASELINES",
    "KRR_SIMPLE",
    "AutopilotParams",
    "KrrSimpleParams",
    "LoadAdjustedPercentileEstimator",
    "register_baselines",
]

_DAY_S: Final = 86_400.0
_MIB: Final = 1024 * 1024


# -- estimators ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadAdjustedPercentileEstimator:
    """A percentile of the load-adjusted histogram: each bucket's weight times its value.

    A plain percentile answers "below which value is the usage p of the time"; the
    load-adjusted one "below which value is p of the work done", so short busy periods count
    by the load they carry. The answer is a bucket end, as for `PercentileEstimator`.
    """

    resource: Resource
    percentile: float

    def estimate(self, aggregates: EstimationInput) -> Int64Array:
        histograms = aggregates.cpu if self.resource is Resource.CPU else aggregates.memory
        layout = histograms.layout
        values = layout.percentile_values
        lowest, highest = histograms.bucket_bounds()
        columns = np.arange(layout.num_buckets)
        inside = (columns >= lowest[:, None]) & (columns <= highest[:, None])
        load = np.cumsum(np.where(inside, histograms.weights * values, 0.0), axis=1)
        threshold = self.percentile * load[:, -1]
        below = np.count_nonzero(load < threshold[:, None], axis=1)
        bucket = np.clip(below, lowest, highest)
        chosen = np.where(histograms.is_empty(), 0.0, values[bucket])
        unit = 1000.0 if self.resource is Resource.CPU else 1.0
        return resource_amount_array(chosen * unit)

    def describe(self) -> str:
        return f"p{self.percentile * 100:g} of {self.resource} usage, load-adjusted"


def _bounded(
    target_cpu: ResourceEstimator, target_memory: ResourceEstimator, band: float
) -> PodEstimators:
    """Target and a band of +-band around it as the bounds."""
    return PodEstimators(
        target_cpu=target_cpu,
        target_memory=target_memory,
        lower_cpu=ScaledEstimator(target_cpu, 1.0 - band),
        lower_memory=ScaledEstimator(target_memory, 1.0 - band),
        upper_cpu=ScaledEstimator(target_cpu, 1.0 + band),
        upper_memory=ScaledEstimator(target_memory, 1.0 + band),
    )


def _band() -> float:
    return Field(
        0.1,
        ge=0,
        lt=1,
        description="bounds are the target -/+ this fraction: the updater resizes only when "
        "the target moves further",
    )


# -- krr-simple ------------------------------------------------------------------------------------


class KrrSimpleParams(ModelParams):
    """Robusta KRR's `simple` strategy: CPU at a percentile of usage, memory at the peak plus a
    buffer, each at least a minimum. History barely decays (a half-life of a year), and OOM
    kills count only as the memory used at the kill (KRR's default ignores them)."""

    cpu_histogram_decay_half_life_s: float = Field(
        365 * _DAY_S, ge=1e-6, description="half-life of CPU sample weights, seconds"
    )
    memory_histogram_decay_half_life_s: float = Field(
        365 * _DAY_S, ge=1e-6, description="half-life of memory peak weights, seconds"
    )
    memory_aggregation_interval_count: int = Field(
        14, ge=1, description="days of history (KRR's --history_duration, 336 h)"
    )
    oom_bump_up_ratio: float = Field(
        1.0, ge=1, description="memory after an OOM kill is at least this times the memory used"
    )
    oom_min_bump_up_bytes: float = Field(
        0, ge=0, description="memory after an OOM kill is at least this many bytes above it"
    )
    cpu_percentile: float = Field(
        0.95, ge=0, le=1, description="percentile of CPU usage for the request (0..1)"
    )
    memory_buffer_fraction: float = Field(
        0.15, ge=0, description="fraction added on top of the peak memory usage"
    )
    min_cpu_millicores: float = Field(10, ge=0, description="smallest CPU request, millicores")
    min_memory_mib: float = Field(100, ge=0, description="smallest memory request, MiB")
    bound_fraction: float = _band()


def _build_krr_simple(params: KrrSimpleParams) -> PodEstimators:
    cpu = FloorEstimator(
        PercentileEstimator(Resource.CPU, params.cpu_percentile),
        resource_amount(params.min_cpu_millicores),
    )
    memory = FloorEstimator(
        MarginEstimator(PercentileEstimator(Resource.MEMORY, 1.0), params.memory_buffer_fraction),
        resource_amount(params.min_memory_mib * _MIB),
    )
    return _bounded(cpu, memory, params.bound_fraction)


# -- autopilot -------------------------------------------------------------------------------------


class AutopilotParams(ModelParams):
    """Google Autopilot's moving-window recommender: CPU at a percentile of the load-adjusted
    decaying histogram (12 h half-life), memory at the peak of 5-minute maxima plus a
    safety margin."""

    cpu_histogram_decay_half_life_s: float = Field(
        12 * 3600.0, ge=1e-6, description="half-life of CPU sample weights, seconds"
    )
    memory_histogram_decay_half_life_s: float = Field(
        48 * 3600.0, ge=1e-6, description="half-life of memory peak weights, seconds"
    )
    memory_aggregation_interval_s: float = Field(
        300.0, ge=1e-6, description="one memory peak per container per interval, seconds"
    )
    memory_aggregation_interval_count: int = Field(
        8 * 288, ge=1, description="intervals of history kept for an idle container (8 days)"
    )
    cpu_percentile: float = Field(
        0.95, ge=0, le=1, description="percentile of the load-adjusted CPU histogram (0..1)"
    )
    cpu_load_adjusted: bool = Field(
        True, description="weigh CPU buckets by their value (false: a plain time percentile)"
    )
    memory_percentile: float = Field(
        1.0, ge=0, le=1, description="percentile of the memory peaks (1: the peak)"
    )
    cpu_margin_fraction: float = Field(0.0, ge=0, description="fraction added to CPU")
    memory_margin_fraction: float = Field(0.1, ge=0, description="fraction added to memory")
    min_cpu_millicores: float = Field(10, ge=0, description="smallest CPU request, millicores")
    min_memory_mib: float = Field(10, ge=0, description="smallest memory request, MiB")
    bound_fraction: float = _band()


def _build_autopilot(params: AutopilotParams) -> PodEstimators:
    cpu_base: ResourceEstimator = (
        LoadAdjustedPercentileEstimator(Resource.CPU, params.cpu_percentile)
        if params.cpu_load_adjusted
        else PercentileEstimator(Resource.CPU, params.cpu_percentile)
    )
    cpu = FloorEstimator(
        MarginEstimator(cpu_base, params.cpu_margin_fraction),
        resource_amount(params.min_cpu_millicores),
    )
    memory = FloorEstimator(
        MarginEstimator(
            PercentileEstimator(Resource.MEMORY, params.memory_percentile),
            params.memory_margin_fraction,
        ),
        resource_amount(params.min_memory_mib * _MIB),
    )
    return _bounded(cpu, memory, params.bound_fraction)


KRR_SIMPLE: Final = Strategy(
    name="krr-simple",
    description="Robusta KRR's simple strategy: CPU p95, memory peak + 15%, minimums "
    "10m / 100Mi; bounds +-10% around the target",
    params_model=KrrSimpleParams,
    build=_build_krr_simple,
)
AUTOPILOT: Final = Strategy(
    name="autopilot",
    description="Google Autopilot's moving window: CPU p95 of the load-adjusted histogram "
    "(12 h half-life), memory peak of 5-minute maxima + 10%; bounds +-10% around the target",
    params_model=AutopilotParams,
    build=_build_autopilot,
)
BASELINES: Final[dict[str, Strategy]] = {s.name: s for s in (KRR_SIMPLE, AUTOPILOT)}
"""The baselines by name."""


def register_baselines() -> None:
    """Add the baselines to the engine's strategy registry (`analytics.strategies`)."""
    for strategy in BASELINES.values():
        register_strategy(strategy)


register_baselines()
