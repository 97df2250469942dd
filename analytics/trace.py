"""Recommendations for a recorded usage trace: the replay behind `vpa-fleet recommend`.

The trace is ingested in one batch (vectorized path) and every workload container gets a
recommendation as of the trace's last timestamp. Replicas (pods) of a workload share one
aggregate, and the containers of a workload split its pod-level minimums.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl

from analytics.estimation import recommend_rows, store_for
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
    store = store_for(model_and_strategy_params, estimators)
    skipped.update(ingest_samples(store, samples))
    end_ns = samples.end_ns
    if end_ns is None:
        return TraceResult([], dict(skipped), store)

    estimated = recommend_rows(store, store.all_rows(), estimators, end_ns)
    if estimated.expired:
        skipped["expired"] = estimated.expired
    if estimated.empty:
        skipped["empty_history"] = estimated.empty
    return TraceResult(estimated.recommendations, dict(skipped), store)


def recommend_trace(
    frame: pl.DataFrame, strategy: str = "vpa", params: Mapping[str, object] | None = None
) -> list[ContainerRecommendation]:
    """Recommendations for every workload container of a usage frame, sorted by key."""
    return replay_trace(frame, strategy, params).recommendations
