"""Resource policy applied to recommendations as the stock recommender does."""

from __future__ import annotations

import pytest

from recommender.vpa.capping import PolicyError, apply_policy, is_scaled
from recommender.vpa.objects import PodResourcePolicy, RecommendedContainerResources


def _entry(name: str, cpu: str = "126m", memory: str = "600Mi") -> RecommendedContainerResources:
    values = {"cpu": cpu, "memory": memory}
    return RecommendedContainerResources(
        containerName=name,
        target=values,
        lowerBound={"cpu": "25m", "memory": "250Mi"},
        upperBound={"cpu": "2", "memory": "2Gi"},
        uncappedTarget=values,
    )


def _policy(*container_policies: dict[str, object]) -> PodResourcePolicy:
    return PodResourcePolicy.model_validate({"containerPolicies": list(container_policies)})


def test_no_policy_changes_nothing_but_the_order() -> None:
    entries = [_entry("b"), _entry("a")]
    assert apply_policy(entries, None) == [entries[1], entries[0]]


def test_min_and_max_clamp_target_and_bounds_with_the_policy_quantity() -> None:
    policy = _policy(
        {"containerName": "app", "minAllowed": {"cpu": "200m"}, "maxAllowed": {"memory": "1Gi"}}
    )
    [capped] = apply_policy([_entry("app")], policy)
    assert capped.target == {"cpu": "200m", "memory": "600Mi"}
    assert capped.lower_bound == {"cpu": "200m", "memory": "250Mi"}
    assert capped.upper_bound == {"cpu": "2", "memory": "1Gi"}
    assert capped.uncapped_target == {"cpu": "126m", "memory": "600Mi"}


def test_zero_limits_are_ignored() -> None:
    policy = _policy({"containerName": "*", "minAllowed": {"cpu": "0"}, "maxAllowed": {"cpu": "0"}})
    [capped] = apply_policy([_entry("app")], policy)
    assert capped.target["cpu"] == "126m"
    assert capped.upper_bound["cpu"] == "2"


def test_mode_off_and_controlled_resources() -> None:
    policy = _policy(
        {"containerName": "sidecar", "mode": "Off"},
        {"containerName": "*", "controlledResources": ["memory"]},
    )
    assert not is_scaled("sidecar", policy)
    assert is_scaled("app", policy)
    [app] = apply_policy([_entry("sidecar"), _entry("app")], policy)
    assert app.container_name == "app"
    assert app.target == {"memory": "600Mi"}
    assert app.uncapped_target == {"memory": "600Mi"}


def test_global_max_applies_where_the_policy_is_silent() -> None:
    policy = _policy({"containerName": "app", "maxAllowed": {"cpu": "1"}})
    [capped] = apply_policy([_entry("app")], policy, {"cpu": "500m", "memory": "512Mi"})
    assert capped.upper_bound == {"cpu": "1", "memory": "512Mi"}
    assert capped.target == {"cpu": "126m", "memory": "512Mi"}


def test_min_above_max_ends_at_max_like_upstream() -> None:
    policy = _policy(
        {"containerName": "app", "minAllowed": {"cpu": "3"}, "maxAllowed": {"cpu": "1"}}
    )
    [capped] = apply_policy([_entry("app")], policy)
    assert capped.target["cpu"] == "1"


def test_bad_quantity_names_vpa_container_and_field() -> None:
    policy = _policy({"containerName": "app", "minAllowed": {"memory": "lots"}})
    with pytest.raises(PolicyError, match=r"shop/web container app: minAllowed\.memory"):
        apply_policy([_entry("app")], policy, vpa_key="shop/web")
