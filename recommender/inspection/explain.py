"""How one container's recommendation follows from its saved state: pure, no I/O.

The state is the exact one the loop checkpointed (`analytics.snapshot`, restored bit for bit).
It is imported into a fresh store and run through the same estimators the loop ran, one
estimator layer at a time, so that every intermediate number is the engine's own: the
percentile of the histogram (the end of the bucket where it falls), the margin, the confidence
multiplier of the bounds, the pod minimum, then the VPA's caps (minAllowed, maxAllowed, the
recommender's own maximum) as `recommender.vpa.capping` applies them.

The pod minimum is split over the VPA's containers that get a recommendation as of the moment
(those not expired and whose policy is not `mode: Off`), as the loop splits it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from analytics.estimation import recommend_rows, store_for
from analytics.estimators import (
    ConfidenceMultiplierEstimator,
    MarginEstimator,
    PercentileEstimator,
    PodMinimumEstimator,
    Resource,
    ResourceEstimator,
    confidence,
)
from analytics.histogram import HistogramArrays
from analytics.model_params import ModelParams
from analytics.quantity import format_cpu_millicores, format_memory_bytes, parse_quantity
from analytics.recommendation import ContainerRecommendation, Resources
from analytics.snapshot import AggregateSnapshot, SnapshotError, import_workload
from analytics.store import EstimationInput
from analytics.strategies import PodEstimators, build_estimators
from recommender.vpa.capping import apply_policy, controlled_resources, is_scaled
from recommender.vpa.objects import RecommendedContainerResources, VerticalPodAutoscaler

__all__ = [
    "SHOWN_PERCENTILES",
    "AppliedCap",
    "BoundEstimate",
    "Bucket",
    "ContainerExplanation",
    "ExplainError",
    "OomEvent",
    "ResourceExplanation",
    "Step",
    "explain_container",
]

SHOWN_PERCENTILES = (0.5, 0.9, 0.95, 0.99)
"""Percentiles listed beside those the estimators use."""

_DAY_NS = 86_400 * 1_000_000_000


class ExplainError(ValueError):
    """The container cannot be explained; the message says which VPA, container and why."""


@dataclass(frozen=True)
class Step:
    """One estimator layer: what it computes, with its numbers, and the amount after it."""

    kind: str
    description: str
    formula: str
    value: int


@dataclass(frozen=True)
class AppliedCap:
    """A limit that changed a value: `field` minAllowed or maxAllowed, its quantity, and where
    it comes from (`containerPolicy <name>`, `recommender`, `RecommenderPolicy <ns>/<name>`)."""

    field: str
    quantity: str
    source: str


@dataclass(frozen=True)
class BoundEstimate:
    """One of target / lowerBound / upperBound for one resource, from histogram to status."""

    steps: tuple[Step, ...]
    uncapped: int
    uncapped_quantity: str
    caps: tuple[AppliedCap, ...]
    capped_quantity: str  # "" when the resource is not controlled


@dataclass(frozen=True)
class Bucket:
    start: float
    end: float
    weight: float


@dataclass(frozen=True)
class ResourceExplanation:
    resource: str
    unit: str
    total_weight: float
    buckets: tuple[Bucket, ...]
    percentiles: tuple[tuple[float, float], ...]
    target: BoundEstimate
    lower_bound: BoundEstimate
    upper_bound: BoundEstimate


@dataclass(frozen=True)
class OomEvent:
    """An OOM kill: from a pod's status (time, request) or only the peak the state holds."""

    pod: str
    time: dt.datetime | None = None
    memory_request: int | None = None
    peak_bytes: int = 0


@dataclass(frozen=True)
class ContainerExplanation:
    cluster: str
    namespace: str
    name: str
    container: str
    strategy: str
    parameters: Mapping[str, str]
    as_of: dt.datetime
    sample_count: int
    first_sample: dt.datetime | None
    last_sample: dt.datetime | None
    history_days: float
    confidence_days: float
    containers_in_pod: int
    resources: tuple[ResourceExplanation, ...]
    oom_events: tuple[OomEvent, ...]
    capped: RecommendedContainerResources
    matches_status: bool
    note: str = ""
    status_target: Mapping[str, str] = field(default_factory=dict)
    policy: str = ""  # the RecommenderPolicy whose settings apply ("" for the recommender's)


def _ns(moment: dt.datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def _time(ns: int) -> dt.datetime | None:
    if ns <= 0:
        return None
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC)


def _quantity(resource: Resource, amount: int) -> str:
    if resource is Resource.CPU:
        return format_cpu_millicores(amount)
    return format_memory_bytes(amount)


def _unit(resource: Resource) -> str:
    return "m" if resource is Resource.CPU else " bytes"


def _steps(estimator: ResourceEstimator, aggregates: EstimationInput, position: int) -> list[Step]:
    """The layers of an estimator, innermost first, each evaluated by the engine itself."""
    value = int(estimator.estimate(aggregates)[position])
    unit = _unit(estimator.resource)
    if isinstance(estimator, PercentileEstimator):
        walk = aggregates.cpu_walk if estimator.resource is Resource.CPU else aggregates.memory_walk
        end = float(walk.percentile(estimator.percentile)[position])
        scale = " cores x 1000" if estimator.resource is Resource.CPU else " bytes"
        return [
            Step(
                "percentile",
                estimator.describe(),
                f"end of the bucket holding p{estimator.percentile * 100:g}: "
                f"{end:.9g}{scale} -> {value}{unit}",
                value,
            )
        ]
    base_estimator = getattr(estimator, "base", None)
    inner = _steps(base_estimator, aggregates, position) if base_estimator is not None else []
    base = inner[-1].value if inner else 0
    if isinstance(estimator, MarginEstimator):
        formula = f"{base} + trunc({base} x {estimator.margin_fraction:g}) = {value}{unit}"
        kind = "margin"
    elif isinstance(estimator, ConfidenceMultiplierEstimator):
        days = float(confidence(aggregates, estimator.confidence_interval_ns)[position])
        formula = (
            f"trunc({base} x (1 + {estimator.multiplier:g}/{days:.6g})^{estimator.exponent:g})"
            f" = {value}{unit}"
        )
        kind = "confidence"
    elif isinstance(estimator, PodMinimumEstimator):
        share = int(estimator.minimums(aggregates)[position])
        n = int(aggregates.containers_per_pod[position])
        formula = f"max({base}, {estimator.pod_minimum}/{n} = {share}) = {value}{unit}"
        kind = "pod-minimum"
    else:
        kind = type(estimator).__name__
        formula = f"{value}{unit}"
    return [*inner, Step(kind, estimator.describe(), formula, value)]


def _buckets(histograms: HistogramArrays, position: int) -> tuple[Bucket, ...]:
    starts = histograms.layout.bucket_starts
    weights = histograms.weights[position]
    last = len(starts) - 1
    return tuple(
        Bucket(
            float(starts[i]),
            float(starts[i + 1]) if i < last else float(starts[i]),
            float(weights[i]),
        )
        for i in np.flatnonzero(weights > 0).tolist()
    )


def _caps(
    resource: str,
    *,
    uncapped: str,
    capped: Mapping[str, str],
    vpa: VerticalPodAutoscaler,
    container: str,
    global_max: Mapping[str, str],
    global_source: str,
) -> tuple[AppliedCap, ...]:
    """The limits that moved the value, in the order `capping` applies them."""
    if resource not in capped:
        return ()
    policy = vpa.spec.resource_policy
    container_policy = policy.for_container(container) if policy else None
    source = f"containerPolicy {container_policy.container_name}" if container_policy else ""
    applied = []
    amount: Fraction = parse_quantity(uncapped)
    low = container_policy.min_allowed.get(resource) if container_policy else None
    if low is not None and parse_quantity(low) != 0 and amount < parse_quantity(low):
        applied.append(AppliedCap("minAllowed", low, source))
        amount = parse_quantity(low)
    own_max = container_policy.max_allowed.get(resource) if container_policy else None
    high, where = (
        (own_max, source) if own_max is not None else (global_max.get(resource), global_source)
    )
    if high is not None and parse_quantity(high) != 0 and amount > parse_quantity(high):
        applied.append(AppliedCap("maxAllowed", high, where))
    return tuple(applied)


def explain_container(
    *,
    cluster: str,
    vpa: VerticalPodAutoscaler,
    container: str | None,
    aggregates: Sequence[AggregateSnapshot],
    as_of: dt.datetime,
    strategy: str = "vpa",
    strategy_params: Mapping[str, object] | None = None,
    global_max_allowed: Mapping[str, str] | None = None,
    oom_kills: Sequence[OomEvent] = (),
    aggregation: ModelParams | None = None,
    policy_name: str = "",
) -> ContainerExplanation:
    """Explain one container of `vpa` from its saved state `aggregates` as of `as_of` (the
    end of the saved history). `container` None picks the only container with state.

    `aggregation` are the model parameters the state was aggregated with when they are not
    the strategy's own (a RecommenderPolicy choosing another strategy than the recommender's:
    its estimators then get the recommender's aggregation, as the loop builds them).

    ExplainError when the state does not load, the container has no state, or it gets no
    recommendation (policy `mode: Off`, history expired, no usable sample).
    """
    namespace, name = vpa.metadata.namespace, vpa.metadata.name
    where = f"VerticalPodAutoscaler {namespace}/{name}"
    container = _pick_container(where, aggregates, container)
    try:
        if aggregation is None:
            params, estimators = build_estimators(strategy, strategy_params)
            aggregation = params.model_fields_only()
        else:
            merged = {**aggregation.model_dump(), **dict(strategy_params or {})}
            params, estimators = build_estimators(strategy, merged)
    except ValueError as error:  # unknown strategy, parameters that do not validate
        raise ExplainError(f"{where}: {error}") from None
    store = store_for(aggregation, estimators)
    try:
        import_workload(store, cluster, namespace, name, aggregates)
    except SnapshotError as error:
        raise ExplainError(f"{where}: saved state does not load: {error}") from None
    policy = vpa.spec.resource_policy
    if not is_scaled(container, policy):
        raise ExplainError(f"{where}: container {container!r} has mode Off: no recommendation")

    now_ns = _ns(as_of)
    rows = store.workload_rows(cluster, namespace, name)
    names = store.aggregate_keys["container"].to_list()
    rows = rows[[is_scaled(names[int(r)], policy) for r in rows]]
    expired = store.expired(now_ns)
    live = rows[~expired[rows]]
    row = next((int(r) for r in live if names[int(r)] == container), None)
    if row is None:
        raise ExplainError(
            f"{where}: container {container!r}: no sample within the history window before "
            f"{as_of.isoformat()} (its state expired)"
        )
    inputs = store.estimation_input(live)
    position = int(np.flatnonzero(live == row)[0])
    if bool(inputs.cpu.is_empty()[position] and inputs.memory.is_empty()[position]):
        raise ExplainError(f"{where}: container {container!r}: no usable sample")

    # The engine's own result for the same rows: the walk below must end at the same numbers.
    estimated = recommend_rows(store, rows, estimators, now_ns)
    engine = next(r for r in estimated.recommendations if r.container_name == container)

    layers, walked = _walk(estimators, inputs, position, engine)
    amounts = {resource: [steps[-1].value for steps in trios] for resource, trios in walked.items()}
    uncapped_entry = RecommendedContainerResources.model_validate(
        {
            "containerName": container,
            "target": Resources.from_amounts(
                amounts[Resource.CPU][0], amounts[Resource.MEMORY][0]
            ).to_quantities(),
            "lowerBound": Resources.from_amounts(
                amounts[Resource.CPU][1], amounts[Resource.MEMORY][1]
            ).to_quantities(),
            "upperBound": Resources.from_amounts(
                amounts[Resource.CPU][2], amounts[Resource.MEMORY][2]
            ).to_quantities(),
        }
    )
    if uncapped_entry.target != engine.target.to_quantities():
        raise AssertionError(  # the layers are the engine's estimators: cannot differ
            f"{where}: explanation {uncapped_entry.target} != engine {engine.target}"
        )
    uncapped_entry = uncapped_entry.model_copy(update={"uncapped_target": uncapped_entry.target})
    global_max = dict(global_max_allowed or {})
    (capped,) = apply_policy([uncapped_entry], policy, global_max, vpa_key=vpa.key)

    resources = _resource_explanations(
        _Walked(inputs, position, layers, walked, uncapped_entry, capped),
        vpa=vpa,
        container=container,
        global_max=global_max,
        global_source=f"RecommenderPolicy {policy_name}" if policy_name else "recommender",
    )

    snapshot = next(s for s in aggregates if s.container == container)
    kills = [
        *oom_kills,
        *(
            OomEvent(pod=r.pod, peak_bytes=r.oom_peak_bytes)
            for r in snapshot.running
            if r.oom_peak_bytes > 0
        ),
    ]
    first, last = int(store.first_sample_start_ns[row]), int(store.last_sample_start_ns[row])
    written, matches, note = _status_check(vpa, container, capped)
    return ContainerExplanation(
        cluster=cluster,
        namespace=namespace,
        name=name,
        container=container,
        strategy=strategy,
        parameters={k: str(v) for k, v in params.model_dump().items()},
        as_of=as_of,
        sample_count=int(store.total_samples_count[row]),
        first_sample=_time(first) if first > 0 else None,
        last_sample=_time(last) if last > 0 else None,
        history_days=max(0, last - first) / _DAY_NS if first > 0 and last > 0 else 0.0,
        confidence_days=float(confidence(inputs, _DAY_NS)[position]),
        containers_in_pod=int(inputs.containers_per_pod[position]),
        resources=tuple(resources),
        oom_events=tuple(sorted(kills, key=lambda k: (k.time is None, k.time, k.pod))),
        capped=capped,
        matches_status=matches,
        note=note,
        status_target=dict(written.target) if written else {},
        policy=policy_name,
    )


def _walk(
    estimators: PodEstimators,
    inputs: EstimationInput,
    position: int,
    engine: ContainerRecommendation,
) -> tuple[dict[Resource, tuple[ResourceEstimator, ...]], dict[Resource, list[list[Step]]]]:
    """The estimator layers of target, lower and upper bound per resource, each evaluated,
    and the hourly-profile step where the strategy's profile rules moved an amount."""
    layers: dict[Resource, tuple[ResourceEstimator, ...]] = {
        Resource.CPU: (estimators.target_cpu, estimators.lower_cpu, estimators.upper_cpu),
        Resource.MEMORY: (
            estimators.target_memory,
            estimators.lower_memory,
            estimators.upper_memory,
        ),
    }
    walked: dict[Resource, list[list[Step]]] = {
        resource: [_steps(e, inputs, position) for e in trio] for resource, trio in layers.items()
    }
    _profile_steps(walked, engine)
    return layers, walked


def _profile_steps(
    walked: dict[Resource, list[list[Step]]], engine: ContainerRecommendation
) -> None:
    """Where the strategy's hourly-profile rules (`default`) moved an amount away from its
    histogram estimators, add the step that did, ending at the engine's own amount."""
    wanted = {
        Resource.CPU: [
            engine.target.cpu_millicores,
            engine.lower_bound.cpu_millicores,
            engine.upper_bound.cpu_millicores,
        ],
        Resource.MEMORY: [
            engine.target.memory_whole_bytes,
            engine.lower_bound.memory_whole_bytes,
            engine.upper_bound.memory_whole_bytes,
        ],
    }
    for resource, trios in walked.items():
        unit = _unit(resource)
        for steps, amount, what in zip(
            trios, wanted[resource], ("target", "lower bound", "upper bound"), strict=True
        ):
            before = steps[-1].value
            if int(amount) != before:
                steps.append(
                    Step(
                        "profile",
                        f"hourly profile: the {what} for the coming hours, from the same "
                        "hours of past days and the recent ones (see docs/simulate.md)",
                        f"{before}{unit} from the histograms -> {int(amount)}{unit}",
                        int(amount),
                    )
                )


def _percentile_estimators(estimator: ResourceEstimator) -> list[PercentileEstimator]:
    if isinstance(estimator, PercentileEstimator):
        return [estimator]
    base = getattr(estimator, "base", None)
    return _percentile_estimators(base) if base is not None else []


@dataclass(frozen=True)
class _Walked:
    """The estimator layers of one container, evaluated, and its entry before/after caps."""

    inputs: EstimationInput
    position: int
    layers: Mapping[Resource, tuple[ResourceEstimator, ...]]
    walked: Mapping[Resource, list[list[Step]]]
    uncapped: RecommendedContainerResources
    capped: RecommendedContainerResources


def _resource_explanations(
    w: _Walked,
    *,
    vpa: VerticalPodAutoscaler,
    container: str,
    global_max: Mapping[str, str],
    global_source: str,
) -> tuple[ResourceExplanation, ...]:
    resources = []
    inputs, position = w.inputs, w.position
    keep = controlled_resources(container, vpa.spec.resource_policy)
    for resource, trios in w.walked.items():
        histograms = inputs.cpu if resource is Resource.CPU else inputs.memory
        walk = inputs.cpu_walk if resource is Resource.CPU else inputs.memory_walk
        used = {s.percentile for e in w.layers[resource] for s in _percentile_estimators(e)}
        bounds = []
        for steps, field_name in zip(trios, ("target", "lower_bound", "upper_bound"), strict=True):
            uncapped = getattr(w.uncapped, field_name)[resource.value]
            values = getattr(w.capped, field_name)
            bounds.append(
                BoundEstimate(
                    steps=tuple(steps),
                    uncapped=steps[-1].value,
                    uncapped_quantity=uncapped,
                    caps=_caps(
                        resource.value,
                        uncapped=uncapped,
                        capped=values,
                        vpa=vpa,
                        container=container,
                        global_max=global_max,
                        global_source=global_source,
                    )
                    if resource.value in keep
                    else (),
                    capped_quantity=values.get(resource.value, ""),
                )
            )
        resources.append(
            ResourceExplanation(
                resource=resource.value,
                unit="cores" if resource is Resource.CPU else "bytes",
                total_weight=float(histograms.total_weight[position]),
                buckets=_buckets(histograms, position),
                percentiles=tuple(
                    (p, float(walk.percentile(p)[position]))
                    for p in sorted({*SHOWN_PERCENTILES, *used})
                ),
                target=bounds[0],
                lower_bound=bounds[1],
                upper_bound=bounds[2],
            )
        )

    return tuple(resources)


def _pick_container(
    where: str, aggregates: Sequence[AggregateSnapshot], container: str | None
) -> str:
    known = sorted(s.container for s in aggregates)
    if container is None:
        if len(known) != 1:
            raise ExplainError(
                f"{where}: name a container; its saved state has {len(known)}: "
                f"{', '.join(known) or 'none'}"
            )
        container = known[0]
    if container not in known:
        raise ExplainError(
            f"{where}: container {container!r} has no saved state (containers with state: "
            f"{', '.join(known) or 'none'})"
        )
    return container


def _status_check(
    vpa: VerticalPodAutoscaler, container: str, capped: RecommendedContainerResources
) -> tuple[RecommendedContainerResources | None, bool, str]:
    """The status entry of the container, whether its target is the explained one, and why
    not when it is not."""
    status = {
        entry.container_name: entry
        for entry in (
            vpa.status.recommendation.container_recommendations if vpa.status.recommendation else ()
        )
    }
    written = status.get(container)
    matches = written is not None and written.target == capped.target
    note = ""
    if written is None:
        note = "the VPA's status has no recommendation for this container"
    elif not matches:
        note = (
            f"the status target {dict(written.target)} differs: it was written at a later tick "
            "than this saved state, or by other settings"
        )
    return written, matches, note
