"""The explanation of a container, recomputed by hand from what it shows: the percentile from
its histogram buckets, the margin, the pod minimum, the confidence of the bounds and the caps,
ending at exactly what the engine and the capping write."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from analytics.estimation import recommend_rows, store_for
from analytics.ingest import ingest_samples
from analytics.quantity import parse_cpu_millicores, parse_memory_bytes
from analytics.snapshot import AggregateSnapshot, export_workload, import_workload
from analytics.store import AggregateStore
from analytics.strategies import STRATEGIES, build_estimators
from analytics.usage import prepare_samples
from recommender.inspection.explain import ExplainError, explain_container
from recommender.vpa.capping import apply_policy
from recommender.vpa.objects import (
    RecommendedContainerResources,
    VerticalPodAutoscaler,
    parse_vpa,
)
from tests.unit.analytics.traces import mixed_trace


def _state(
    strategy: str = "vpa",
) -> tuple[AggregateStore, tuple[AggregateSnapshot, ...], dt.datetime]:
    """Two days of prod/shop/api ingested with the strategy's model parameters."""
    trace = mixed_trace(3, days=2)
    params, _ = build_estimators(strategy)
    store = AggregateStore.empty(params.model_fields_only())
    ingest_samples(store, prepare_samples(trace))
    end = trace["timestamp"].max()
    assert isinstance(end, dt.datetime)
    return store, export_workload(store, "prod", "shop", "api"), end.replace(tzinfo=dt.UTC)


def _vpa(policy: dict[str, object] | None = None, status: object = None) -> VerticalPodAutoscaler:
    spec: dict[str, object] = {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
        "recommenders": [{"name": "vpa-fleet"}],
    }
    if policy:
        spec["resourcePolicy"] = policy
    obj: dict[str, object] = {
        "apiVersion": "autoscaling.k8s.io/v1",
        "kind": "VerticalPodAutoscaler",
        "metadata": {"name": "api", "namespace": "shop", "uid": "u1"},
        "spec": spec,
    }
    if status is not None:
        obj["status"] = status
    return parse_vpa(obj)


def _by_hand_percentile(buckets: list[tuple[float, float, float]], p: float) -> float:
    """Upstream's walk: the end of the first bucket whose cumulative weight reaches p x total
    (the last non-empty bucket stops the walk)."""
    total = sum(w for _, _, w in buckets)
    partial = 0.0
    for _start, end, weight in buckets[:-1]:
        partial += weight
        if partial >= p * total:
            return end
    return buckets[-1][1] if buckets[-1][1] != buckets[-1][0] else buckets[-1][0]


def test_the_target_is_recomputed_by_hand_from_the_explanation() -> None:
    store, snapshots, end = _state()
    policy = {
        "containerPolicies": [
            {"containerName": "app", "maxAllowed": {"memory": "600Mi"}},
            {"containerName": "*", "minAllowed": {"cpu": "300m"}},
        ]
    }
    vpa = _vpa(policy)
    explanation = explain_container(
        cluster="prod", vpa=vpa, container="app", aggregates=snapshots, as_of=end
    )
    cpu, memory = explanation.resources
    assert (cpu.resource, memory.resource) == ("cpu", "memory")

    # CPU target: p90 of the histogram (cores -> millicores), + 15%, at least 25m / 2.
    buckets = [(b.start, b.end, b.weight) for b in cpu.buckets]
    p90 = _by_hand_percentile(buckets, 0.9)
    millis = math.trunc(p90 * 1000.0)
    with_margin = millis + math.trunc(millis * 0.15)
    target_cpu = max(with_margin, math.trunc(25 / 2))
    assert [s.kind for s in cpu.target.steps] == ["percentile", "margin", "pod-minimum"]
    assert [s.value for s in cpu.target.steps] == [millis, with_margin, target_cpu]
    assert cpu.target.uncapped == target_cpu
    assert dict(cpu.percentiles)[0.9] == p90

    # Memory: p90 of the peaks' histogram, + 15%, then capped by the app's maxAllowed.
    buckets = [(b.start, b.end, b.weight) for b in memory.buckets]
    peak = math.trunc(_by_hand_percentile(buckets, 0.9))
    target_memory = max(peak + math.trunc(peak * 0.15), math.trunc(250 * 1024 * 1024 / 2))
    assert memory.target.uncapped == target_memory
    assert target_memory > parse_memory_bytes("600Mi")
    assert [(c.field, c.quantity, c.source) for c in memory.target.caps] == [
        ("maxAllowed", "600Mi", "containerPolicy app")
    ]
    assert memory.target.capped_quantity == "600Mi"
    assert explanation.containers_in_pod == 2

    # The engine and the capping give the same, to the string.
    _, estimators = build_estimators("vpa")
    now_ns = int(end.timestamp()) * 10**9 + end.microsecond * 1000
    engine = recommend_rows(store, store.all_rows(), estimators, now_ns)
    entry = next(r for r in engine.recommendations if r.container_name == "app")
    (capped,) = apply_policy(
        [RecommendedContainerResources.model_validate(entry.to_status_entry())],
        vpa.spec.resource_policy,
    )
    assert explanation.capped.target == capped.target
    assert parse_cpu_millicores(capped.target["cpu"]) == target_cpu


def test_a_min_allowed_of_the_star_policy_is_shown_as_applied() -> None:
    _, snapshots, end = _state()
    vpa = _vpa({"containerPolicies": [{"containerName": "*", "minAllowed": {"cpu": "5"}}]})
    explanation = explain_container(
        cluster="prod", vpa=vpa, container="proxy", aggregates=snapshots, as_of=end
    )
    cpu = explanation.resources[0]
    assert [(c.field, c.quantity, c.source) for c in cpu.target.caps] == [
        ("minAllowed", "5", "containerPolicy *")
    ]
    assert cpu.target.capped_quantity == "5"
    assert not explanation.matches_status
    assert "no recommendation" in explanation.note


def test_bounds_show_the_confidence_of_two_days_of_history() -> None:
    _, snapshots, end = _state()
    explanation = explain_container(
        cluster="prod", vpa=_vpa(), container="app", aggregates=snapshots, as_of=end
    )
    assert 1.5 < explanation.history_days <= 2.0
    assert explanation.sample_count > 0
    upper = explanation.resources[0].upper_bound
    assert [s.kind for s in upper.steps] == ["percentile", "margin", "confidence", "pod-minimum"]
    base, scaled = upper.steps[1].value, upper.steps[2].value
    expected = math.trunc(base * (1 + 1.0 / explanation.confidence_days))
    assert abs(scaled - expected) <= 1  # Go's Pow vs Python's in the last bit


def test_status_match_is_reported() -> None:
    _, snapshots, end = _state()
    first = explain_container(
        cluster="prod", vpa=_vpa(), container="app", aggregates=snapshots, as_of=end
    )
    status = {
        "recommendation": {
            "containerRecommendations": [
                {"containerName": "app", "target": dict(first.capped.target)}
            ]
        }
    }
    again = explain_container(
        cluster="prod",
        vpa=_vpa(status=status),
        container="app",
        aggregates=snapshots,
        as_of=end,
    )
    assert again.matches_status and again.note == ""


def test_unknown_or_ambiguous_containers_and_expired_state_are_refused() -> None:
    _, snapshots, end = _state()
    with pytest.raises(ExplainError, match=r"shop/api: name a container; .* 2: app, proxy"):
        explain_container(
            cluster="prod", vpa=_vpa(), container=None, aggregates=snapshots, as_of=end
        )
    with pytest.raises(ExplainError, match="'db' has no saved state"):
        explain_container(
            cluster="prod", vpa=_vpa(), container="db", aggregates=snapshots, as_of=end
        )
    off = _vpa({"containerPolicies": [{"containerName": "app", "mode": "Off"}]})
    with pytest.raises(ExplainError, match="mode Off"):
        explain_container(cluster="prod", vpa=off, container="app", aggregates=snapshots, as_of=end)
    with pytest.raises(ExplainError, match="expired"):
        explain_container(
            cluster="prod",
            vpa=_vpa(),
            container="app",
            aggregates=snapshots,
            as_of=end + dt.timedelta(days=30),
        )


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_is_explained_down_to_the_engine_s_numbers(strategy: str) -> None:
    _, snapshots, end = _state(strategy)
    explanation = explain_container(
        cluster="prod",
        vpa=_vpa(),
        container="app",
        aggregates=snapshots,
        as_of=end,
        strategy=strategy,
    )
    params, estimators = build_estimators(strategy)
    fresh = AggregateStore.empty(params.model_fields_only())
    import_workload(fresh, "prod", "shop", "api", snapshots)
    now_ns = int(end.timestamp()) * 10**9 + end.microsecond * 1000
    engine = recommend_rows(fresh, fresh.all_rows(), estimators, now_ns)
    entry = next(r for r in engine.recommendations if r.container_name == "app")
    assert explanation.capped.target == entry.target.to_quantities()
    for resource in explanation.resources:
        for bound in (resource.target, resource.lower_bound, resource.upper_bound):
            assert bound.steps and bound.steps[-1].value == bound.uncapped


def test_default_with_its_hourly_profile_ends_at_what_the_engine_writes() -> None:
    """`default` reads an hourly profile beside the histograms: the explanation loads the
    profile from the saved state and shows the step it took, ending at the engine's amounts."""
    trace = mixed_trace(3, days=3)
    params, estimators = build_estimators("default")
    store = store_for(params.model_fields_only(), estimators)
    assert store.profile is not None
    ingest_samples(store, prepare_samples(trace))
    end = trace["timestamp"].max()
    assert isinstance(end, dt.datetime)
    end = end.replace(tzinfo=dt.UTC)
    snapshots = export_workload(store, "prod", "shop", "api")
    explanation = explain_container(
        cluster="prod",
        vpa=_vpa(),
        container="app",
        aggregates=snapshots,
        as_of=end,
        strategy="default",
    )
    now_ns = int(end.timestamp()) * 10**9 + end.microsecond * 1000
    engine = recommend_rows(store, store.all_rows(), estimators, now_ns)
    entry = next(r for r in engine.recommendations if r.container_name == "app")
    without = recommend_rows(
        store, store.all_rows(), build_estimators("default", {"profile": False})[1], now_ns
    )
    flat = next(r for r in without.recommendations if r.container_name == "app")
    assert entry.target != flat.target  # three days of profile moved something
    cpu, memory = explanation.resources
    assert cpu.target.uncapped == entry.target.cpu_millicores
    assert cpu.lower_bound.uncapped == entry.lower_bound.cpu_millicores
    assert cpu.upper_bound.uncapped == entry.upper_bound.cpu_millicores
    assert memory.target.uncapped == entry.target.memory_whole_bytes
    moved = [
        b
        for b in (cpu.target, cpu.lower_bound, cpu.upper_bound, memory.target)
        if b.steps[-1].kind == "profile"
    ]
    assert moved
    for bound in moved:
        assert bound.steps[-1].value == bound.uncapped
        assert "hourly profile" in bound.steps[-1].description
