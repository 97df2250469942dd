"""Recommendations for chosen rows of a store, as of a moment: shared by the trace replay and
the recommender loop, so that both compute exactly the same thing from the same state."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics.arrays import Int64Array
from analytics.recommendation import ContainerRecommendation, Resources
from analytics.store import AggregateStore
from analytics.strategies import PodEstimators

__all__ = ["Estimated", "recommend_rows"]


@dataclass(frozen=True)
class Estimated:
    """Recommendations of the rows asked for, sorted by key, and how many rows got none:
    `expired` (no sample during the history window before now) and `empty` (no usable
    sample at all)."""

    recommendations: list[ContainerRecommendation]
    expired: int
    empty: int


def recommend_rows(
    store: AggregateStore, rows: Int64Array, estimators: PodEstimators, now_ns: int
) -> Estimated:
    """Recommend for the aggregates at `rows` as of `now_ns`.

    Expired aggregates are left out before pod minimums are split: the minimums are shared by
    the remaining rows of each workload, as upstream shares them by the containers it still
    aggregates.
    """
    rows = np.asarray(rows, dtype=np.int64)
    expired = store.expired(now_ns)[rows]
    live = rows[~expired]
    aggregates = store.estimation_input(live)
    estimates = estimators.estimate(aggregates)
    empty = aggregates.cpu.is_empty() & aggregates.memory.is_empty()

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
    return Estimated(
        recommendations, expired=int(np.count_nonzero(expired)), empty=int(np.count_nonzero(empty))
    )
