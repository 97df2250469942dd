"""What the stock recommender does to a computed recommendation before it writes it:
drop containers whose policy says `mode: Off`, keep only `controlledResources`, and clamp
target, lowerBound and upperBound into the policy's [minAllowed, maxAllowed] (upstream
`routines/vpa.go`, `logic.FilterControlledResources`, `utils/vpa/capping.go:ApplyVPAPolicy`).

Capping works on quantities like upstream: a clamped value becomes the policy's own quantity
(as the API server canonicalised it), so the written string is the one upstream writes.
`uncappedTarget` is left as computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

from analytics.quantity import parse_quantity
from recommender.vpa.objects import (
    ContainerResourcePolicy,
    ContainerScalingMode,
    PodResourcePolicy,
    RecommendedContainerResources,
    ResourceList,
)

DEFAULT_CONTROLLED_RESOURCES = ("cpu", "memory")
_CAPPED_FIELDS = ("target", "lower_bound", "upper_bound")


class PolicyError(ValueError):
    """A resource policy quantity that cannot be parsed; names the container and the field."""


def is_scaled(container_name: str, policy: PodResourcePolicy | None) -> bool:
    """False when the container's policy (or the `*` policy) has `mode: Off`: such containers
    get no recommendation and do not count when the pod minimums are split."""
    container_policy = policy.for_container(container_name) if policy else None
    return container_policy is None or container_policy.mode != ContainerScalingMode.OFF


def controlled_resources(container_name: str, policy: PodResourcePolicy | None) -> tuple[str, ...]:
    container_policy = policy.for_container(container_name) if policy else None
    if container_policy is None or container_policy.controlled_resources is None:
        return DEFAULT_CONTROLLED_RESOURCES
    return container_policy.controlled_resources


def _amount(quantity: str, where: str) -> Fraction:
    try:
        return parse_quantity(quantity)
    except ValueError as error:
        raise PolicyError(f"{where}: {error}") from error


def _clamp(
    values: ResourceList,
    minimum: Mapping[str, str],
    maximum: Mapping[str, str],
    where: str,
) -> ResourceList:
    clamped = dict(values)
    for resource, quantity in values.items():
        amount = _amount(quantity, f"{where}: recommendation {resource}")
        low = minimum.get(resource)
        if low is not None:
            low_amount = _amount(low, f"{where}: minAllowed.{resource}")
            if low_amount != 0 and amount < low_amount:
                clamped[resource], amount = low, low_amount
        high = maximum.get(resource)
        if high is not None:
            high_amount = _amount(high, f"{where}: maxAllowed.{resource}")
            if high_amount != 0 and amount > high_amount:
                clamped[resource] = high
    return clamped


def apply_policy(
    recommendations: list[RecommendedContainerResources],
    policy: PodResourcePolicy | None,
    global_max_allowed: Mapping[str, str] | None = None,
    *,
    vpa_key: str = "",
) -> list[RecommendedContainerResources]:
    """Filter and cap recommendations by the VPA's resource policy; sorted by container name.

    `global_max_allowed` (the recommender's own maximum) applies to resources the container's
    `maxAllowed` does not name, as upstream's `--container-recommendation-max-allowed-*`.
    Raises PolicyError naming the VPA, the container and the field for a bad quantity.
    """
    capped = []
    for entry in sorted(recommendations, key=lambda e: e.container_name):
        name = entry.container_name
        if not is_scaled(name, policy):
            continue
        container_policy: ContainerResourcePolicy | None = (
            policy.for_container(name) if policy else None
        )
        keep = controlled_resources(name, policy)
        minimum = container_policy.min_allowed if container_policy else {}
        maximum = {
            **(global_max_allowed or {}),
            **(container_policy.max_allowed if container_policy else {}),
        }
        where = f"VerticalPodAutoscaler {vpa_key} container {name}"
        fields: dict[str, ResourceList] = {}
        for field_name in ("target", "lower_bound", "upper_bound", "uncapped_target"):
            values = {r: q for r, q in getattr(entry, field_name).items() if r in keep}
            if field_name in _CAPPED_FIELDS:
                values = _clamp(values, minimum, maximum, where)
            fields[field_name] = values
        capped.append(entry.model_copy(update=fields))
    return capped
