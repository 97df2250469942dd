from __future__ import annotations

import datetime as dt
from fractions import Fraction

import pytest

from recommender.actuator.audit import AuditAction, AuditRecord
from recommender.actuator.inputs import InputError, WorkloadRef, parse_pod
from recommender.actuator.plan import (
    Candidate,
    Context,
    Method,
    Policy,
    SkipReason,
    Trigger,
    decide,
    find,
    memory_floor,
    ours_under_way,
)
from tests.unit.actuator.builders import (
    NOW,
    budget,
    container,
    pod,
    vpa,
    workload,
)

REF = WorkloadRef("Deployment", "shop", "web")
JAVA = ["java", "-Xmx512m", "-jar", "/app.jar"]


def candidate(**changes: object) -> Candidate:
    the_vpa = changes.pop("vpa", vpa())
    pods = changes.pop("pods", (pod(pending="Infeasible"),))
    found = find(the_vpa, pods, NOW, changes.pop("policy", Policy()))  # type: ignore[arg-type]
    assert found is not None
    values: dict[str, object] = {
        "vpa": the_vpa,
        "finding": found,
        "owner": REF,
        "workload": workload(),
        "pods": pods,
    }
    values.update(changes)
    return Candidate(**values)  # type: ignore[arg-type]


def one(c: Candidate, **context: object) -> object:
    policy = context.pop("policy", Policy())
    [decision] = decide([c], Context(now=NOW, policy=policy, **context))  # type: ignore[arg-type]
    return decision


# -- findings ----------------------------------------------------------------------------------


def test_infeasible_resize_is_a_trigger_at_once() -> None:
    found = find(vpa(), [pod(pending="Infeasible")], NOW, Policy())
    assert found is not None and found.trigger is Trigger.INFEASIBLE and found.ready


def test_deferred_resize_waits_for_the_configured_time() -> None:
    policy = Policy(deferred_timeout=dt.timedelta(minutes=10))
    young = find(vpa(), [pod(pending="Deferred", since=NOW - dt.timedelta(minutes=9))], NOW, policy)
    assert young is not None and young.trigger is Trigger.DEFERRED and not young.ready
    assert "a rollout is due from 2026-11-29T12:01:00Z" in young.detail
    old = find(vpa(), [pod(pending="Deferred", since=NOW - dt.timedelta(minutes=10))], NOW, policy)
    assert old is not None and old.ready


def test_infeasible_is_left_to_the_updater_where_it_evicts() -> None:
    two = [pod(pending="Infeasible", since=NOW - dt.timedelta(minutes=4)), pod("web-2")]
    policy = Policy(infeasible_grace=dt.timedelta(minutes=5))
    waiting = find(vpa(), two, NOW, policy)
    assert waiting is not None and not waiting.ready
    assert "a rollout is due from 2026-11-29T12:01:00Z" in waiting.detail
    decision = one(candidate(pods=tuple(two)), policy=policy)
    assert decision.reason is SkipReason.UPDATER_FIRST  # type: ignore[attr-defined]
    later = find(vpa(), two, NOW + dt.timedelta(minutes=1), policy)
    assert later is not None and later.ready
    # InPlace never evicts, and the updater leaves single pods alone: no waiting.
    assert find(vpa(mode="InPlace"), two, NOW, policy).ready  # type: ignore[union-attr]
    assert find(vpa(), two[:1], NOW, policy).ready  # type: ignore[union-attr]


def test_nothing_to_do_for_settled_pods_within_bounds() -> None:
    inside = container(requests={"cpu": "300m", "memory": "300Mi"})
    assert find(vpa(), [pod(spec=inside)], NOW, Policy()) is None
    assert find(vpa(), [pod(pending="Infeasible", terminating=True)], NOW, Policy()) is None


def test_single_replica_outside_bounds_is_ours_not_the_updaters() -> None:
    found = find(vpa(), [pod()], NOW, Policy(min_replicas=2))
    assert found is not None and found.trigger is Trigger.BELOW_MIN_REPLICAS
    # Two pods: the updater's.
    assert find(vpa(), [pod(), pod("web-2")], NOW, Policy(min_replicas=2)) is None
    # The VPA's own minReplicas wins over the setting, as in the updater.
    assert find(vpa(min_replicas=1), [pod()], NOW, Policy(min_replicas=2)) is None


def test_boot_memory_runtime_without_a_restart_policy_is_a_trigger() -> None:
    jvm = container(command=JAVA)
    pods = [pod(spec=jvm), pod("web-2", spec=jvm)]
    found = find(vpa(), pods, NOW, Policy())
    assert found is not None and found.trigger is Trigger.BOOT_MEMORY
    assert "JVM (-Xmx512m in command/args)" in found.detail
    # Once the template says RestartContainer for memory, in-place resizes restart it.
    restarting = container(command=JAVA, resize_policy={"memory": "RestartContainer"})
    assert find(vpa(), [pod(spec=restarting), pod("web-2", spec=restarting)], NOW, Policy()) is None
    # Modes without in-place resize never change running memory.
    assert find(vpa(mode="Recreate"), pods, NOW, Policy()) is None
    # A pod the updater already resized in place, memory within the bounds.
    inside = container(command=JAVA, requests={"cpu": "300m", "memory": "300Mi"})
    resized = [pod(spec=inside, annotations={"vpaInPlaceUpdated": "true"}), pod("b", spec=inside)]
    again = find(vpa(), resized, NOW, Policy())
    assert again is not None and "resized in place by the updater" in again.detail


def test_pod_with_a_bad_quantity_is_refused_with_its_name_and_field() -> None:
    with pytest.raises(
        InputError, match=r"pod shop/p: spec.containers\[app\].resources.requests.cpu"
    ):
        parse_pod(
            {
                "metadata": {"name": "p", "namespace": "shop"},
                "spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "x"}}}]},
            }
        )


# -- decisions ---------------------------------------------------------------------------------


def test_infeasible_rolls_out_the_deployment_with_the_recommendation() -> None:
    decision = one(candidate())
    assert decision.action is AuditAction.ROLLOUT and not decision.dry_run  # type: ignore[attr-defined]
    [change] = decision.changes  # type: ignore[attr-defined]
    assert dict(change.requests) == {"cpu": "250m", "memory": "256Mi"}
    # The memory limit keeps its ratio to the request (256Mi/128Mi).
    assert dict(change.limits) == {"memory": "512Mi"}
    assert "resize of pod web-1 is Infeasible" in decision.message  # type: ignore[attr-defined]


def test_restart_annotation_method_leaves_resources_to_the_admission_controller() -> None:
    decision = one(candidate(), policy=Policy(method=Method.RESTART_ANNOTATION))
    assert decision.action is AuditAction.ROLLOUT and decision.restart  # type: ignore[attr-defined]
    assert decision.changes == ()  # type: ignore[attr-defined]
    without = one(
        candidate(), policy=Policy(method=Method.RESTART_ANNOTATION), admission_controller=False
    )
    assert without.reason is SkipReason.NO_ADMISSION_CONTROLLER  # type: ignore[attr-defined]


def test_method_per_vpa_annotation() -> None:
    annotated = vpa(annotations={"vpa-fleet.io/rollout-method": "restart-annotation"})
    assert one(candidate(vpa=annotated)).restart  # type: ignore[attr-defined]
    bad = vpa(annotations={"vpa-fleet.io/rollout-method": "evict"})
    decision = one(candidate(vpa=bad))
    assert decision.reason is SkipReason.BAD_METHOD  # type: ignore[attr-defined]
    assert "'evict'" in decision.message  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("changes", "context", "reason", "says"),
    [
        (
            {
                "workload": None,
                "owner": WorkloadRef("DaemonSet", "shop", "web"),
                "owner_problem": "DaemonSets are reported, not rolled out",
            },
            {},
            SkipReason.NOT_ROLLED,
            "DaemonSets are reported",
        ),
        (
            {"vpa": vpa(annotations={"vpa-fleet.io/skip": "true"})},
            {},
            SkipReason.SKIP_ANNOTATION,
            'the VPA is annotated vpa-fleet.io/skip: "true"',
        ),
        (
            {"workload": workload(annotations={"vpa-fleet.io/skip": "true"})},
            {},
            SkipReason.SKIP_ANNOTATION,
            "the Deployment is annotated",
        ),
        ({"vpa": vpa(mode="Off")}, {}, SkipReason.UPDATE_MODE, "update mode is Off"),
        ({"vpa": vpa(mode="Initial")}, {}, SkipReason.UPDATE_MODE, "update mode is Initial"),
        ({"pods": (pod(pending="Deferred"),)}, {}, SkipReason.DEFERRED_WAITING, "waiting 600 s"),
        (
            {"budgets": (budget(allowed=0),)},
            {},
            SkipReason.DISRUPTION_BUDGET,
            "PodDisruptionBudget web allows no disruption",
        ),
        ({"workload": workload(rolling=True)}, {}, SkipReason.ROLLOUT_IN_PROGRESS, "under way"),
        ({}, {"rolling": [REF]}, SkipReason.ROLLOUT_IN_PROGRESS, "under way"),
        (
            {"workload": workload(spec=container(requests={"cpu": "250m", "memory": "256Mi"}))},
            {},
            SkipReason.NOTHING_TO_CHANGE,
            "already has the recommended resources",
        ),
        (
            {},
            {
                "rolling": [
                    WorkloadRef("Deployment", "other", "x"),
                    WorkloadRef("Deployment", "other", "y"),
                ]
            },
            SkipReason.CLUSTER_LIMIT,
            "max_rollouts_per_cluster 2",
        ),
        (
            {},
            {"rolling": [WorkloadRef("Deployment", "shop", "x")]},
            SkipReason.NAMESPACE_LIMIT,
            "namespace shop (max_rollouts_per_namespace 1)",
        ),
    ],
)
def test_safety_rules_skip_with_their_reason(
    changes: dict[str, object], context: dict[str, object], reason: SkipReason, says: str
) -> None:
    decision = one(candidate(**changes), **context)
    assert decision.action is AuditAction.SKIP  # type: ignore[attr-defined]
    assert decision.reason is reason  # type: ignore[attr-defined]
    assert says in decision.message  # type: ignore[attr-defined]


def test_a_budget_of_other_pods_does_not_block() -> None:
    decision = one(candidate(budgets=(budget(app="other", allowed=0), budget("b", allowed=1))))
    assert decision.action is AuditAction.ROLLOUT  # type: ignore[attr-defined]


def test_cooldown_counts_real_rollouts_only() -> None:
    def record(minutes_ago: int, dry_run: bool) -> AuditRecord:
        return AuditRecord(
            time=NOW - dt.timedelta(minutes=minutes_ago),
            cluster="c",
            namespace="shop",
            workload_kind="Deployment",
            workload_name="web",
            vpa="web",
            action=AuditAction.ROLLOUT,
            trigger="Infeasible",
            reason="patch",
            message="",
            dry_run=dry_run,
        )

    policy = Policy(cooldown=dt.timedelta(minutes=30))
    recent = one(candidate(), policy=policy, history=[record(10, False)])
    assert recent.reason is SkipReason.COOLDOWN  # type: ignore[attr-defined]
    assert "cooldown until 2026-11-29T12:20:00Z" in recent.message  # type: ignore[attr-defined]
    planned = one(candidate(), policy=policy, history=[record(10, True)])
    assert planned.action is AuditAction.ROLLOUT  # type: ignore[attr-defined]
    old = one(candidate(), policy=policy, history=[record(31, False)])
    assert old.action is AuditAction.ROLLOUT  # type: ignore[attr-defined]


def test_a_rolling_workload_stamped_lately_is_ours_under_way() -> None:
    """What a restarted recommender counts again for max_rollouts_per_*."""
    window = dt.timedelta(minutes=30)

    def ours(rolling: bool, value: str) -> bool:
        stamped = workload(rolling=rolling, annotations={"vpa-fleet.io/rolled-out-at": value})
        return ours_under_way(stamped, NOW, window)

    assert ours(True, "2026-11-29T11:50:00Z")
    assert not ours(False, "2026-11-29T11:50:00Z")  # finished
    assert not ours(True, "2026-11-29T11:00:00Z")  # someone else's rollout, after ours
    assert not ours(True, "soon")
    assert not ours_under_way(workload(rolling=True), NOW, window)


def test_cooldown_counts_a_rollout_stamped_on_the_workload() -> None:
    """After a restart the audit trail is empty: the workload's own stamp still counts."""
    policy = Policy(cooldown=dt.timedelta(minutes=30))

    def stamped(value: str) -> Candidate:
        return candidate(workload=workload(annotations={"vpa-fleet.io/rolled-out-at": value}))

    recent = one(stamped("2026-11-29T11:50:00Z"), policy=policy, history=[])
    assert recent.reason is SkipReason.COOLDOWN  # type: ignore[attr-defined]
    assert "rolled out at 2026-11-29T11:50:00Z" in recent.message  # type: ignore[attr-defined]
    for value in ("2026-11-29T11:29:00Z", "yesterday"):
        decision = one(stamped(value), policy=policy, history=[])
        assert decision.action is AuditAction.ROLLOUT, value  # type: ignore[attr-defined]


def test_statefulset_on_delete() -> None:
    ref = WorkloadRef("StatefulSet", "shop", "web")
    on_delete = workload(kind="StatefulSet", strategy="OnDelete")
    patched = one(candidate(owner=ref, workload=on_delete))
    assert patched.action is AuditAction.ROLLOUT  # type: ignore[attr-defined]
    assert "vpa-fleet deletes none" in patched.message  # type: ignore[attr-defined]
    restarted = one(
        candidate(owner=ref, workload=on_delete), policy=Policy(method=Method.RESTART_ANNOTATION)
    )
    assert restarted.reason is SkipReason.ON_DELETE  # type: ignore[attr-defined]


def test_dry_run_plans_the_same_rollout() -> None:
    real = one(candidate())
    planned = one(candidate(), policy=Policy(dry_run=True))
    assert planned.action is AuditAction.ROLLOUT and planned.dry_run  # type: ignore[attr-defined]
    assert planned.changes == real.changes  # type: ignore[attr-defined]
    assert "would be rolled out (dry run)" in planned.message  # type: ignore[attr-defined]


def test_boot_memory_rollout_sets_the_memory_restart_policy() -> None:
    jvm = container(command=JAVA)
    pods = (pod(spec=jvm), pod("web-2", spec=jvm))
    decision = one(candidate(pods=pods, workload=workload(spec=jvm)))
    assert decision.action is AuditAction.ROLLOUT  # type: ignore[attr-defined]
    [change] = decision.changes  # type: ignore[attr-defined]
    assert dict(change.resize_policy) == {"cpu": "NotRequired", "memory": "RestartContainer"}
    assert "its memory changes through a restart, its CPU in place" in decision.message  # type: ignore[attr-defined]


def test_memory_decrease_is_held_at_the_peak_plus_margin() -> None:
    big = container(requests={"cpu": "250m", "memory": "1Gi"}, limits={})
    low = vpa(target={"cpu": "250m", "memory": "100Mi"})
    pods = (pod(pending="Infeasible", spec=big),)
    peak = 300 * 1024**2
    decision = one(candidate(vpa=low, pods=pods, workload=workload(spec=big), peaks={"app": peak}))
    [change] = decision.changes  # type: ignore[attr-defined]
    assert change.requests == {"memory": "345Mi"}  # 300Mi x 1.15
    assert "observed peak 300Mi plus 15%" in decision.message  # type: ignore[attr-defined]
    unknown = one(candidate(vpa=low, pods=pods, workload=workload(spec=big)))
    assert unknown.reason is SkipReason.NOTHING_TO_CHANGE  # type: ignore[attr-defined]


def test_two_vpas_over_one_workload_get_one_decision() -> None:
    decisions = decide(
        [candidate(), candidate(vpa=vpa("web-2"))], Context(now=NOW, policy=Policy())
    )
    assert len(decisions) == 1


def test_memory_floor_examples() -> None:
    mi = 1024**2
    assert memory_floor(Fraction(100 * mi), Fraction(200 * mi), None, 0.15) == 200 * mi
    assert memory_floor(Fraction(1024 * mi), Fraction(100 * mi), None, 0.15) == 1024 * mi
    assert memory_floor(Fraction(1024 * mi), Fraction(100 * mi), 200 * mi, 0.5) == 300 * mi
