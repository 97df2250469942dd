"""`default`: this project's strategy, designed to beat the stock VPA on the simulator.

Built from the engine's state like every strategy (decaying histograms of CPU samples and of
memory peaks), from four ideas:

- **CPU sized to burstiness.** The target is a base percentile of CPU usage plus a share of
  the spread up to a high percentile: `p_base + burst_weight * (p_burst - p_base)`, then a
  small margin. A steady container's spread is small, so its request sits just above its
  usage; a bursty one gets room in proportion to its bursts.
- **Memory from the peaks.** The target is a high percentile of the memory peaks plus a margin.
  OOM kills are already in those peaks (the engine bumps them), so no separate rule is needed.
- **Shorter half-lives** than the VPA's, so requests come down sooner after a step down.
- **Hysteresis.** The bounds are an asymmetric band around the target: the updater resizes
  when the request falls below `target x (1 - lower_band)` (grows at once) or above
  `target x (1 + upper_band)` (shrinks only when well oversized).

Design, parameters and results on the generated families are in docs/simulate.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Self

import numpy as np
from pydantic import Field, model_validator

from analytics.arrays import Int64Array
from analytics.estimators import MarginEstimator, PercentileEstimator, Resource, ResourceEstimator
from analytics.go_semantics import resource_amount, resource_amount_array
from analytics.model_params import ModelParams
from analytics.store import EstimationInput
from analytics.strategies import PodEstimators, Strategy, register_strategy
from analytics.strategies_baselines import FloorEstimator, ScaledEstimator

__all__ = [
    "DEFAULT",
    "BurstPercentileEstimator",
    "DefaultParams",
    "register_default",
]

_HOUR_S: Final = 3600.0
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
        0.1, "share of the spread between the base and high CPU percentiles added (0..1)"
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
        1.0,
        ge=0,
        description="upper bound is the target x (1 + this): a request above shrinks",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.cpu_base_percentile > self.cpu_burst_percentile:
            raise ValueError(
                f"cpu_base_percentile ({self.cpu_base_percentile}) <= "
                f"cpu_burst_percentile ({self.cpu_burst_percentile}) must hold"
            )
        return self


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
    return PodEstimators(
        target_cpu=cpu,
        target_memory=memory,
        lower_cpu=ScaledEstimator(cpu, 1.0 - params.lower_band_fraction),
        lower_memory=ScaledEstimator(memory, 1.0 - params.lower_band_fraction),
        upper_cpu=ScaledEstimator(cpu, 1.0 + params.upper_band_fraction),
        upper_memory=ScaledEstimator(memory, 1.0 + params.upper_band_fraction),
    )


DEFAULT: Final = Strategy(
    name="default",
    description="this project's default: CPU p90 + 10% of the p90-p99 spread (24 h half-life), "
    "memory p98 of hourly peaks + 5% (12 h half-life, OOM kills doubled); bounds -15%/+100% "
    "around the target",
    params_model=DefaultParams,
    build=_build_default,
)


def register_default() -> None:
    """Add `default` to the engine's strategy registry (`analytics.strategies`)."""
    register_strategy(DEFAULT)
