"""Recommendation strategies: validated parameters composed into six estimators, and a registry.

A strategy turns its parameters (a pydantic model extending `ModelParams`) into `PodEstimators`:
target, lower bound and upper bound for CPU and memory. Strategies register by name; later ones
(krr-simple, autopilot, ...) join with `register_strategy`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self

from pydantic import Field, ValidationError, model_validator

from analytics.arrays import Int64Array
from analytics.estimators import (
    ConfidenceMultiplierEstimator,
    MarginEstimator,
    PercentileEstimator,
    PodMinimumEstimator,
    Resource,
    ResourceEstimator,
)
from analytics.go_semantics import resource_amount
from analytics.model_params import ModelParams
from analytics.store import EstimationInput

__all__ = [
    "STRATEGIES",
    "ParameterError",
    "PercentileParams",
    "PodEstimates",
    "PodEstimators",
    "Strategy",
    "VpaParams",
    "build_estimators",
    "get_strategy",
    "register_strategy",
]


class ParameterError(ValueError):
    """Strategy parameters that do not validate; the message names the field."""


@dataclass(frozen=True)
class PodEstimates:
    """Recommended amounts for n aggregates: CPU in millicores, memory in bytes."""

    target_cpu: Int64Array
    target_memory: Int64Array
    lower_cpu: Int64Array
    lower_memory: Int64Array
    upper_cpu: Int64Array
    upper_memory: Int64Array


@dataclass(frozen=True)
class PodEstimators:
    """The six estimators of a recommendation."""

    target_cpu: ResourceEstimator
    target_memory: ResourceEstimator
    lower_cpu: ResourceEstimator
    lower_memory: ResourceEstimator
    upper_cpu: ResourceEstimator
    upper_memory: ResourceEstimator

    def estimate(self, aggregates: EstimationInput) -> PodEstimates:
        """Run all six estimators over the aggregates."""
        return PodEstimates(
            target_cpu=self.target_cpu.estimate(aggregates),
            target_memory=self.target_memory.estimate(aggregates),
            lower_cpu=self.lower_cpu.estimate(aggregates),
            lower_memory=self.lower_memory.estimate(aggregates),
            upper_cpu=self.upper_cpu.estimate(aggregates),
            upper_memory=self.upper_memory.estimate(aggregates),
        )


def _percentile(default: float, what: str) -> Any:
    return Field(default, ge=0, le=1, description=f"percentile of {what} (0..1)")


class _BoundedPercentiles(ModelParams):
    """Shared fields and checks: percentiles ordered lower <= target <= upper."""

    safety_margin_fraction: float = Field(
        0.15, ge=0, description="fraction added on top of every percentile"
    )
    pod_min_cpu_millicores: float = Field(
        25, ge=0, description="pod-level CPU floor, millicores, split over the pod's containers"
    )
    pod_min_memory_mb: float = Field(
        250, ge=0, description="pod-level memory floor, MiB, split over the pod's containers"
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        for resource in ("cpu", "memory"):
            lower = getattr(self, f"lower_bound_{resource}_percentile")
            target = getattr(self, f"target_{resource}_percentile")
            upper = getattr(self, f"upper_bound_{resource}_percentile")
            if not lower <= target <= upper:
                raise ValueError(
                    f"lower_bound_{resource}_percentile ({lower}) <= "
                    f"target_{resource}_percentile ({target}) <= "
                    f"upper_bound_{resource}_percentile ({upper}) must hold"
                )
        return self

    def pod_minimum_millicores(self) -> int:
        """Pod CPU floor as a resource amount, computed as upstream does."""
        return resource_amount(self.pod_min_cpu_millicores * 0.001 * 1000.0)

    def pod_minimum_bytes(self) -> int:
        """Pod memory floor as a resource amount, computed as upstream does."""
        return resource_amount(self.pod_min_memory_mb * 1024 * 1024)


class VpaParams(_BoundedPercentiles):
    """Parameters of `vpa`, the stock recommender's estimator; defaults are its flag defaults."""

    target_cpu_percentile: float = _percentile(0.9, "CPU usage for the target")
    lower_bound_cpu_percentile: float = _percentile(0.5, "CPU usage for the lower bound")
    upper_bound_cpu_percentile: float = _percentile(0.95, "CPU usage for the upper bound")
    target_memory_percentile: float = _percentile(0.9, "memory peaks for the target")
    lower_bound_memory_percentile: float = _percentile(0.5, "memory peaks for the lower bound")
    upper_bound_memory_percentile: float = _percentile(0.95, "memory peaks for the upper bound")
    confidence_interval_cpu_s: float = Field(
        86400.0, ge=1e-6, description="history, seconds, that counts as one unit of confidence"
    )
    confidence_interval_memory_s: float = Field(
        86400.0, ge=1e-6, description="history, seconds, that counts as one unit of confidence"
    )


class PercentileParams(_BoundedPercentiles):
    """Parameters of `percentile`: plain percentiles plus margin, without confidence scaling."""

    target_cpu_percentile: float = _percentile(0.95, "CPU usage for the target")
    lower_bound_cpu_percentile: float = _percentile(0.5, "CPU usage for the lower bound")
    upper_bound_cpu_percentile: float = _percentile(1.0, "CPU usage for the upper bound")
    target_memory_percentile: float = _percentile(0.99, "memory peaks for the target")
    lower_bound_memory_percentile: float = _percentile(0.5, "memory peaks for the lower bound")
    upper_bound_memory_percentile: float = _percentile(1.0, "memory peaks for the upper bound")


def _percentiles(params: _BoundedPercentiles, resource: Resource, which: str) -> ResourceEstimator:
    name = f"{which}_{resource.value}_percentile"
    estimator: ResourceEstimator = PercentileEstimator(resource, getattr(params, name))
    return MarginEstimator(estimator, params.safety_margin_fraction)


def _with_minimum(params: _BoundedPercentiles, estimator: ResourceEstimator) -> ResourceEstimator:
    minimum = (
        params.pod_minimum_millicores()
        if estimator.resource is Resource.CPU
        else params.pod_minimum_bytes()
    )
    return PodMinimumEstimator(estimator, minimum)


def _build_percentile(params: _BoundedPercentiles) -> PodEstimators:
    def make(resource: Resource, which: str) -> ResourceEstimator:
        return _with_minimum(params, _percentiles(params, resource, which))

    return PodEstimators(
        target_cpu=make(Resource.CPU, "target"),
        target_memory=make(Resource.MEMORY, "target"),
        lower_cpu=make(Resource.CPU, "lower_bound"),
        lower_memory=make(Resource.MEMORY, "lower_bound"),
        upper_cpu=make(Resource.CPU, "upper_bound"),
        upper_memory=make(Resource.MEMORY, "upper_bound"),
    )


def _build_vpa(params: VpaParams) -> PodEstimators:
    interval_ns = {
        Resource.CPU: round(params.confidence_interval_cpu_s * 1e9),
        Resource.MEMORY: round(params.confidence_interval_memory_s * 1e9),
    }

    def upper(resource: Resource) -> ResourceEstimator:
        base = _percentiles(params, resource, "upper_bound")
        return ConfidenceMultiplierEstimator(base, 1.0, 1.0, interval_ns[resource])

    def lower(resource: Resource) -> ResourceEstimator:
        base = _percentiles(params, resource, "lower_bound")
        return ConfidenceMultiplierEstimator(base, 0.001, -2.0, interval_ns[resource])

    return PodEstimators(
        target_cpu=_with_minimum(params, _percentiles(params, Resource.CPU, "target")),
        target_memory=_with_minimum(params, _percentiles(params, Resource.MEMORY, "target")),
        lower_cpu=_with_minimum(params, lower(Resource.CPU)),
        lower_memory=_with_minimum(params, lower(Resource.MEMORY)),
        upper_cpu=_with_minimum(params, upper(Resource.CPU)),
        upper_memory=_with_minimum(params, upper(Resource.MEMORY)),
    )


@dataclass(frozen=True)
class Strategy:
    """A named way to recommend: its parameter model and how to build its estimators."""

    name: str
    description: str
    params_model: type[ModelParams]
    build: Callable[[Any], PodEstimators]

    def parse_params(self, raw: Mapping[str, object] | None) -> ModelParams:
        """Validate raw parameters (strings are converted); errors name the field."""
        try:
            return self.params_model.model_validate(dict(raw or {}))
        except ValidationError as error:
            problems = []
            for item in error.errors():
                field = ".".join(str(part) for part in item["loc"]) or "parameters"
                given = f" (got {item['input']!r})" if item["type"] != "extra_forbidden" else ""
                message = (
                    "unknown parameter"
                    if item["type"] == "extra_forbidden"
                    else item["msg"].removeprefix("Value error, ")
                )
                problems.append(f"{field}: {message}{given}")
            raise ParameterError(
                f"invalid parameters for strategy '{self.name}': " + "; ".join(problems)
            ) from None


STRATEGIES: dict[str, Strategy] = {}
"""Registered strategies by name."""


def register_strategy(strategy: Strategy) -> None:
    """Make a strategy available by name (replacing one of the same name)."""
    STRATEGIES[strategy.name] = strategy


def get_strategy(name: str) -> Strategy:
    """The strategy registered under name; ValueError listing the known names otherwise."""
    try:
        return STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(STRATEGIES))
        raise ValueError(f"unknown strategy {name!r}; known: {known}") from None


def build_estimators(
    name: str, raw_params: Mapping[str, object] | None = None
) -> tuple[ModelParams, PodEstimators]:
    """Validated parameters and estimators of the named strategy."""
    strategy = get_strategy(name)
    params = strategy.parse_params(raw_params)
    return params, strategy.build(params)


register_strategy(
    Strategy(
        name="vpa",
        description="the stock VPA recommender: p90 target, p50/p95 bounds widened while "
        "history is short, 15% margin, pod minimums",
        params_model=VpaParams,
        build=_build_vpa,
    )
)
register_strategy(
    Strategy(
        name="percentile",
        description="percentiles of usage plus a margin, without confidence scaling",
        params_model=PercentileParams,
        build=_build_percentile,
    )
)

# The baselines (krr-simple, autopilot) and `default` live in their own modules, which build
# on this one and register themselves when imported; importing them here makes every strategy
# known wherever strategies are looked up, whichever module is imported first.
import analytics.strategies_baselines  # noqa: E402
import analytics.strategies_default  # noqa: E402, F401
