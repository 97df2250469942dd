"""Recommendations for chosen rows of a store, as of a moment: shared by the trace replay, the
simulator and the recommender loop, so that all compute exactly the same thing from the same
state.

Estimators that read an hourly profile (`ProfileAware`, e.g. `default`) get the store's when it
keeps one; `store_for` makes a store that keeps one exactly for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics.arrays import BoolArray, Int64Array
from analytics.model_params import ModelParams
from analytics.recommendation import ContainerRecommendation, Resources
from analytics.store import AggregateStore
from analytics.strategies import PodEstimates, PodEstimators
from analytics.strategy_profile import ProfileAware

__all__ = [
    "Estimated",
    "RowEstimates",
    "estimate_rows",
    "reads_profile",
    "recommend_rows",
    "store_for",
]


def reads_profile(estimators: PodEstimators) -> bool:
    """Whether the estimators read an hourly profile (a store for them should keep one)."""
    return isinstance(estimators, ProfileAware)


def store_for(params: ModelParams, estimators: PodEstimators) -> AggregateStore:
    """An empty store with `params`' aggregation, keeping a profile if the estimators read one."""
    return AggregateStore.empty(params, profile=reads_profile(estimators))


@dataclass(frozen=True)
class RowEstimates:
    """Estimates of the rows asked for that have not expired (`live`, store rows in the order
    asked), and which of them have a usable sample (`usable`); `expired` counts the others."""

    live: Int64Array
    estimates: PodEstimates
    usable: BoolArray
    expired: int


def estimate_rows(
    store: AggregateStore, rows: Int64Array, estimators: PodEstimators, now_ns: int
) -> RowEstimates:
    """Estimate the aggregates at `rows` as of `now_ns`, as arrays.

    Expired aggregates are left out before pod minimums are split: the minimums are shared by
    the remaining rows of each workload, as upstream shares them by the containers it still
    aggregates. The store's hourly profile is read when it keeps one and the estimators can.
    """
    rows = np.asarray(rows, dtype=np.int64)
    expired = store.expired(now_ns)[rows]
    live = rows[~expired]
    aggregates = store.estimation_input(live)
    if store.profile is not None and isinstance(estimators, ProfileAware):
        estimates = estimators.estimate_with_profile(aggregates, store.profile.take(live), now_ns)
    else:
        estimates = estimators.estimate(aggregates)
    usable = ~(aggregates.cpu.is_empty() & aggregates.memory.is_empty())
    return RowEstimates(live, estimates, usable, int(np.count_nonzero(expired)))


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
    """Recommend for the aggregates at `rows` as of `now_ns` (see `estimate_rows`)."""
    estimated = estimate_rows(store, rows, estimators, now_ns)
    live, estimates = estimated.live, estimated.estimates
    recommendations = []
    for position in np.flatnonzero(estimated.usable).tolist():
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
        recommendations,
        expired=estimated.expired,
        empty=int(np.count_nonzero(~estimated.usable)),
    )
