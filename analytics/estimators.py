"""Resource estimators: small composable objects, each computing one resource for many aggregates.

An estimator maps an `EstimationInput` (n aggregates) to n integer amounts: millicores for CPU,
bytes for memory. Like the stock recommender's decorators, the pieces wrap each other:
`PercentileEstimator` reads a histogram, `MarginEstimator` adds a safety margin,
`ConfidenceMultiplierEstimator` widens a bound while history is short, and
`PodMinimumEstimator` enforces a pod-level floor split over the pod's containers. Arithmetic
follows upstream's `ResourceAmount` rules (truncate toward zero, clamp to [0, 1e14]).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np

from analytics.arrays import FloatArray, Int64Array
from analytics.go_semantics import duration_minutes, go_pow_array, resource_amount_array
from analytics.store import EstimationInput

__all__ = [
    "ConfidenceMultiplierEstimator",
    "FloorEstimator",
    "MarginEstimator",
    "PercentileEstimator",
    "PodMinimumEstimator",
    "Resource",
    "ResourceEstimator",
    "ScaledEstimator",
    "SmallestEstimator",
    "confidence",
]


class Resource(StrEnum):
    """The resources a recommendation covers."""

    CPU = "cpu"
    MEMORY = "memory"


class ResourceEstimator(Protocol):
    """Estimates one resource for every aggregate of the input."""

    @property
    def resource(self) -> Resource:
        """The resource this estimator computes."""
        ...

    def estimate(self, aggregates: EstimationInput) -> Int64Array:
        """Amounts (millicores or bytes), one per aggregate."""
        ...

    def describe(self) -> str:
        """One line saying what the estimator computes, for explanations."""
        ...


@dataclass(frozen=True)
class PercentileEstimator:
    """A percentile of the usage histogram (the end of the bucket where it falls)."""

    resource: Resource
    percentile: float

    def estimate(self, aggregates: EstimationInput) -> Int64Array:
        if self.resource is Resource.CPU:
            return resource_amount_array(aggregates.cpu_walk.percentile(self.percentile) * 1000.0)
        return resource_amount_array(aggregates.memory_walk.percentile(self.percentile))

    def describe(self) -> str:
        return f"p{self.percentile * 100:g} of {self.resource} usage"


@dataclass(frozen=True)
class MarginEstimator:
    """The base estimate plus a fraction of itself."""

    base: ResourceEstimator
    margin_fraction: float

    @property
    def resource(self) -> Resource:
        return self.base.resource

    def estimate(self, aggregates: EstimationInput) -> Int64Array:
        base = self.base.estimate(aggregates)
        margin = resource_amount_array(base.astype(np.float64) * self.margin_fraction)
        result: Int64Array = np.add(base, margin)
        return result

    def describe(self) -> str:
        return f"{self.base.describe()} + {self.margin_fraction * 100:g}%"


def confidence(aggregates: EstimationInput, interval_ns: int) -> FloatArray:
    """How much history backs each aggregate, in intervals (days by default).

    The smaller of the time between the first and last CPU sample, and the CPU sample count
    over one sample a minute; a steady stream of one sample a minute for N days gives N.
    """
    lifespan = (aggregates.last_sample_start_ns - aggregates.first_sample_start_ns).astype(
        np.float64
    ) / float(interval_ns)
    samples = aggregates.total_samples_count.astype(np.float64) / duration_minutes(interval_ns)
    result: FloatArray = np.minimum(lifespan, samples)
    return result


@dataclass(frozen=True)
class ConfidenceMultiplierEstimator:
    """The base estimate times (1 + multiplier / confidence) ** exponent.

    With exponent +1 this inflates an upper bound while history is short (infinite with none);
    with exponent -2 and a small multiplier it deflates a lower bound (to zero with none).
    """

    base: ResourceEstimator
    multiplier: float
    exponent: float
    confidence_interval_ns: int

    @property
    def resource(self) -> Resource:
        return self.base.resource

    def estimate(self, aggregates: EstimationInput) -> Int64Array:
        base = self.base.estimate(aggregates)
        history = confidence(aggregates, self.confidence_interval_ns)
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = go_pow_array(1.0 + self.multiplier / history, self.exponent)
            scaled = base * factor
        return resource_amount_array(scaled)

    def describe(self) -> str:
        return (
            f"{self.base.describe()} x (1 + {self.multiplier:g}/days of history)^{self.exponent:g}"
        )


@dataclass(frozen=True)
class PodMinimumEstimator:
    """At least a pod-level minimum split equally over the containers of the pod."""

    base: ResourceEstimator
    pod_minimum: int

    @property
    def resource(self) -> Resource:
        return self.base.resource

    def minimums(self, aggregates: EstimationInput) -> Int64Array:
        """Each aggregate's share of the pod minimum."""
        fraction = 1.0 / aggregates.containers_per_pod.astype(np.float64)
        return resource_amount_array(float(self.pod_minimum) * fraction)

    def estimate(self, aggregates: EstimationInput) -> Int64Array:
        result: Int64Array = np.maximum(self.base.estimate(aggregates), self.minimums(aggregates))
        return result

    def describe(self) -> str:
        unit = "m" if self.resource is Resource.CPU else " bytes"
        return f"max({self.base.describe()}, {self.pod_minimum}{unit} per pod / containers)"


@dataclass(frozen=True)
class FloorEstimator:
    """At least a fixed amount per container."""

    base: ResourceEstimator
    minimum: int

    @property
    def resource(self) -> Resource:
        return self.base.resource

    def estimate(self, aggregates: EstimationInput) -> Int64Array:
        result: Int64Array = np.maximum(self.base.estimate(aggregates), self.minimum)
        return result

    def describe(self) -> str:
        unit = "m" if self.resource is Resource.CPU else " bytes"
        return f"max({self.base.describe()}, {self.minimum}{unit})"


@dataclass(frozen=True)
class ScaledEstimator:
    """The base estimate times a factor (truncated like every resource amount)."""

    base: ResourceEstimator
    factor: float

    @property
    def resource(self) -> Resource:
        return self.base.resource

    def estimate(self, aggregates: EstimationInput) -> Int64Array:
        base = self.base.estimate(aggregates)
        return resource_amount_array(base.astype(np.float64) * self.factor)

    def describe(self) -> str:
        return f"{self.base.describe()} x {self.factor:g}"


@dataclass(frozen=True)
class SmallestEstimator:
    """The smaller of two estimators of the same resource, per aggregate."""

    first: ResourceEstimator
    second: ResourceEstimator

    @property
    def resource(self) -> Resource:
        return self.first.resource

    def estimate(self, aggregates: EstimationInput) -> Int64Array:
        result: Int64Array = np.minimum(
            self.first.estimate(aggregates), self.second.estimate(aggregates)
        )
        return result

    def describe(self) -> str:
        return f"min({self.first.describe()}, {self.second.describe()})"
