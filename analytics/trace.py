"""Recommendations for a recorded usage trace: the replay behind `vpa-fleet recommend`.

The trace is ingested in one batch (vectorized path) and every workload container gets a
recommendation as of the trace's last timestamp. Replicas (pods) of a workload share one
aggregate, and the containers of a workload split its pod-level minimums.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from analytics.ingest import ingest_samples
from analytics.recommendation import ContainerRecommendation, Resources
from analytics.store import AggregateStore
from analytics.strategies import build_estimators
from analytics.usage import prepare_samples

__all__ = ["ContainerRecommendation", "Resources", "TraceResult", "recommend_trace", "replay_trace"]


@dataclass(frozen=True)
class TraceResult:
    """Recommendations of a trace, and what was left out of them, counted by reason.

    Reasons: invalid measurements (`cpu_nan`, `memory_negative`, ...), samples the container
    state drops (`cpu_not_newer`: duplicate timestamps), OOM kills without a memory value
    (`oom_without_memory`), and whole containers: `expired` (no sample during the history window
    before the end) and `empty_history` (no usable sample at all).
    """

    recommendations: list[ContainerRecommendation]
    skipped: dict[str, int] = field(default_factory=dict)
    store: AggregateStore | None = None


def replay_trace(
    frame: pl.DataFrame, strategy: str = "vpa", params: Mapping[str, object] | None = None
) -> TraceResult:
    """Recommend for every workload container of a usage frame (see `analytics.usage`).

    Raises `SampleError` for a frame that breaks the schema and `ParameterError` or ValueError
    for an unknown strategy or bad parameters.
    """
    model_and_strategy_params, estimators = build_estimators(strategy, params)
    samples = prepare_samples(frame)
    skipped: Counter[str] = Counter(samples.skipped)
    store = AggregateStore.empty(model_and_strategy_params.model_fields_only())
    skipped.update(ingest_samples(store, samples))
    end_ns = samples.end_ns
    if end_ns is None:
        return TraceResult([], dict(skipped), store)

    expired = store.expired(end_ns)
    if expired.any():
        skipped["expired"] = int(np.count_nonzero(expired))
    live = np.flatnonzero(~expired)
    aggregates = store.estimation_input(live)
    estimates = estimators.estimate(aggregates)
    empty = aggregates.cpu.is_empty() & aggregates.memory.is_empty()
    if empty.any():
        skipped["empty_history"] = int(np.count_nonzero(empty))

    recommendations = []
    for position in np.flatnonzero(~empty).tolist():
        cluster, namespace, workload, container = store.aggregate_key(int(live[position]))
        target = Resources.from_amounts(
            int(estimates.target_cpu[position]), int(estimates.target_memory[position])
        )
        recommendations.append(
            ContainerRecommendation(
                cluster=cluster,
                namespace=namespace,
                workload=workload,
                container_name=container,
                target=target,
                lower_bound=Resources.from_amounts(
                    int(estimates.lower_cpu[position]), int(estimates.lower_memory[position])
                ),
                upper_bound=Resources.from_amounts(
                    int(estimates.upper_cpu[position]), int(estimates.upper_memory[position])
                ),
                uncapped_target=target,
            )
        )
    recommendations.sort(key=lambda r: (r.cluster, r.namespace, r.workload, r.container_name))
    return TraceResult(recommendations, dict(skipped), store)


def recommend_trace(
    frame: pl.DataFrame, strategy: str = "vpa", params: Mapping[str, object] | None = None
) -> list[ContainerRecommendation]:
    """Recommendations for every workload container of a usage frame, sorted by key."""
    return replay_trace(frame, strategy, params).recommendations
