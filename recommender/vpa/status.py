"""The VPA status the recommender writes, and whether a new one is worth writing.

`desired_status` mirrors upstream `model.Vpa.AsStatus` after `UpdateConditions`: the capped
recommendation, the conditions, and `observedGeneration`. `worth_writing` compares it with
the status the API server has: a write happens when conditions or the set of recommended
containers/resources change, or when a value moves by more than `threshold` (relative; 0, the
default, writes every change, as upstream does).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from analytics.quantity import parse_quantity
from recommender.vpa.conditions import HISTORY_STALE, stale_conditions, updated_conditions
from recommender.vpa.objects import (
    RecommendedContainerResources,
    RecommendedPodResources,
    VerticalPodAutoscaler,
    VpaStatus,
)


def desired_status(
    vpa: VerticalPodAutoscaler,
    recommendations: Sequence[RecommendedContainerResources],
    *,
    pods_matched: bool,
    now: str,
    config_unsupported: str | None = None,
) -> VpaStatus:
    """The status after one pass: `recommendations` already capped (see `capping`). History
    was read, so HistoryStale goes."""
    recommendation = RecommendedPodResources(containerRecommendations=tuple(recommendations))
    conditions = updated_conditions(
        [c for c in vpa.status.conditions if c.type != HISTORY_STALE],
        pods_matched=pods_matched,
        has_recommendation=bool(recommendations),
        now=now,
        config_unsupported=config_unsupported,
    )
    return VpaStatus(
        recommendation=recommendation,
        conditions=conditions,
        observedGeneration=vpa.metadata.generation,
    )


def stale_status(vpa: VerticalPodAutoscaler, message: str, now: str) -> VpaStatus:
    """The status when the VPA's history cannot be read: the recommendation and observed
    generation as written, HistoryStale saying why."""
    return VpaStatus(
        recommendation=vpa.status.recommendation,
        conditions=stale_conditions(vpa.status.conditions, message=message, now=now),
        observedGeneration=vpa.status.observed_generation,
    )


def status_json(status: VpaStatus) -> dict[str, Any]:
    """The status as the API expects it (camelCase, empty fields left out)."""
    return status.model_dump(by_alias=True, exclude_none=True, mode="json")


def _values(status: VpaStatus) -> dict[tuple[str, str, str], str]:
    values: dict[tuple[str, str, str], str] = {}
    if status.recommendation is None:
        return values
    for entry in status.recommendation.container_recommendations:
        for field in ("target", "lower_bound", "upper_bound", "uncapped_target"):
            for resource, quantity in getattr(entry, field).items():
                values[(entry.container_name, field, resource)] = quantity
    return values


def _relative_change(old: str, new: str) -> Fraction:
    try:
        before, after = parse_quantity(old), parse_quantity(new)
    except ValueError:
        return Fraction(1)  # an unreadable old value is always replaced
    if before == after:
        return Fraction(0)
    if before == 0:
        return Fraction(1)
    return abs(after - before) / before


def worth_writing(current: VpaStatus, desired: VpaStatus, threshold: float = 0.0) -> bool:
    """True when `desired` differs from `current` enough to be written."""
    if current.conditions != desired.conditions:
        return True
    if current.observed_generation != desired.observed_generation:
        return True
    old, new = _values(current), _values(desired)
    if old.keys() != new.keys():
        return True
    limit = Fraction(threshold)
    return any(_relative_change(old[key], new[key]) > limit for key in new)
