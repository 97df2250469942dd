"""The pure parts of the actuator's adapters: the rollout patch, a policy's overrides, the
settings, the memory peaks from the engine's state, and what `vpa-fleet run` prints."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import polars as pl

from analytics.store import AggregateStore
from recommender.actuator.audit import AuditAction, AuditRecord, ContainerResources
from recommender.actuator.inputs import WorkloadRef
from recommender.actuator.kube import rollout_patch, slim_pod
from recommender.actuator.overrides import with_overrides
from recommender.actuator.peaks import memory_peaks
from recommender.actuator.plan import Decision, Method, Policy, Trigger
from recommender.actuator.runner import AuditMirror, policy_from_settings, report_actuation
from recommender.actuator.service import ActuationReport
from recommender.observability.metrics import RecommenderMetrics
from recommender.policy.objects import ActuatorOverrides
from recommender.settings import ActuatorSettings, load_settings
from tests.unit.actuator.builders import NOW, vpa

WORKLOAD = {
    "metadata": {"name": "web", "resourceVersion": "42"},
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "resizePolicy": [
                            {"resourceName": "cpu", "restartPolicy": "NotRequired"},
                            {"resourceName": "memory", "restartPolicy": "NotRequired"},
                        ],
                    }
                ]
            }
        }
    },
}


def decision(**changes: object) -> Decision:
    values: dict[str, object] = {
        "vpa": vpa(),
        "workload": WorkloadRef("Deployment", "shop", "web"),
        "workload_uid": "u",
        "trigger": Trigger.INFEASIBLE,
        "action": AuditAction.ROLLOUT,
        "reason": None,
        "method": Method.PATCH,
        "message": "m",
        "changes": (
            ContainerResources(
                "app",
                {"cpu": "250m", "memory": "256Mi"},
                {"memory": "512Mi"},
                {"cpu": "NotRequired", "memory": "RestartContainer"},
            ),
        ),
    }
    values.update(changes)
    return Decision(**values)  # type: ignore[arg-type]


def test_patch_sets_resources_and_the_whole_resize_policy_conditionally() -> None:
    patch = rollout_patch(decision(), WORKLOAD, NOW)
    assert patch == {
        "metadata": {
            "resourceVersion": "42",
            "annotations": {"vpa-fleet.io/rolled-out-at": "2026-11-29T12:00:00Z"},
        },
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "resources": {
                                "requests": {"cpu": "250m", "memory": "256Mi"},
                                "limits": {"memory": "512Mi"},
                            },
                            "resizePolicy": [
                                {"resourceName": "cpu", "restartPolicy": "NotRequired"},
                                {"resourceName": "memory", "restartPolicy": "RestartContainer"},
                            ],
                        }
                    ]
                }
            }
        },
    }


def test_restart_patch_sets_only_the_annotation() -> None:
    patch = rollout_patch(
        decision(method=Method.RESTART_ANNOTATION, changes=(), restart=True), WORKLOAD, NOW
    )
    assert patch["spec"] == {
        "template": {
            "metadata": {
                "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-29T12:00:00Z"}
            }
        }
    }


def test_slim_pod_keeps_what_the_core_reads() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "n", "managedFields": [{}], "ownerReferences": []},
        "spec": {"containers": [{"name": "app", "image": "i", "ports": [{}], "command": ["java"]}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready"}, {"type": "PodResizePending", "status": "True"}],
            "containerStatuses": [{"name": "app", "resources": {}, "imageID": "x"}],
        },
    }
    slim = slim_pod(pod)
    assert "managedFields" not in slim["metadata"]
    assert slim["spec"]["containers"] == [{"name": "app", "image": "i", "command": ["java"]}]
    assert slim["status"]["conditions"] == [{"type": "PodResizePending", "status": "True"}]


def test_policy_overrides() -> None:
    base = Policy()
    assert with_overrides(base, ActuatorOverrides()) == base
    assert with_overrides(base, ActuatorOverrides(enabled=False)) is None
    changed = with_overrides(
        base,
        ActuatorOverrides(
            dry_run=True,
            mode="restart-annotation",
            deferred_timeout_s=60,
            max_rollouts_per_namespace=3,
            cooldown_s=0,
            memory_margin=0.5,
        ),
    )
    assert changed == Policy(
        dry_run=True,
        method=Method.RESTART_ANNOTATION,
        deferred_timeout=dt.timedelta(seconds=60),
        max_rollouts_per_namespace=3,
        cooldown=dt.timedelta(0),
        memory_margin=0.5,
    )


def test_settings_section() -> None:
    settings = load_settings(env={"VPA_FLEET_ACTUATOR__DRY_RUN": "true"})
    assert settings.actuator.enabled is False  # off by default
    assert policy_from_settings(settings.actuator) == Policy(dry_run=True)
    assert policy_from_settings(ActuatorSettings(mode="restart-annotation")).method is (
        Method.RESTART_ANNOTATION
    )


def test_memory_peaks_from_the_engine_state() -> None:
    store = AggregateStore.empty()
    assert memory_peaks(store, "c", "shop", "web") == {}
    keys = pl.DataFrame(
        {"cluster": ["c"], "namespace": ["shop"], "workload": ["web"], "container": ["app"]}
    )
    store.add_aggregates(keys, np.zeros(1, dtype=np.int64))
    layout = store.memory.layout
    bucket = int(layout.bucket_index(np.array([300.0 * 1024**2]))[0])
    store.memory.weights[0, bucket] = 1.0
    [peak] = memory_peaks(store, "c", "shop", "web").values()
    # The end of the bucket holding 300Mi: at or above it, within one bucket (5 %).
    assert 300 * 1024**2 <= peak <= 300 * 1024**2 * 1.06


def test_what_run_prints_and_counts() -> None:
    def record(action: AuditAction, reason: str, count: int, dry_run: bool = False) -> AuditRecord:
        return AuditRecord(
            time=NOW,
            cluster="c",
            namespace="shop",
            workload_kind="Deployment",
            workload_name="web",
            vpa="web",
            action=action,
            trigger="Infeasible",
            reason=reason,
            message=f"{action.value} {reason}",
            dry_run=dry_run,
            count=count,
        )

    report = ActuationReport(
        records=[
            record(AuditAction.ROLLOUT, "patch", 1),
            record(AuditAction.SKIP, "DisruptionBudget", 1),
            record(AuditAction.SKIP, "Cooldown", 3),  # repeated: not printed again
        ]
    )
    out = io.StringIO()
    metrics = RecommenderMetrics()
    report_actuation(report, "c", out, metrics)
    lines = out.getvalue().splitlines()
    assert lines == [
        "  actuator rollout: rollout patch",
        "  actuator skip: skip DisruptionBudget",
        "actuator: 3 decision(s), 1 rollout(s), 0 error(s)",
    ]
    sample = metrics.registry.get_sample_value
    labels = {"cluster": "c", "action": "rollout"}
    assert sample("vpa_fleet_actuator_actions_total", {**labels, "outcome": "done"}) == 1
    assert (
        sample("vpa_fleet_actuator_actions_total", {**labels, "outcome": "DisruptionBudget"}) == 1
    )


def test_the_driver_keeps_the_last_audit_trail_for_the_api() -> None:
    mirror = AuditMirror()
    assert mirror() == []
    record = AuditRecord(
        time=NOW,
        cluster="c",
        namespace="shop",
        workload_kind="Deployment",
        workload_name="web",
        vpa="web",
        action=AuditAction.SKIP,
        trigger="Infeasible",
        reason="Cooldown",
        message="m",
    )
    mirror.update([record])
    listed = mirror()
    listed.clear()  # a copy: the caller cannot change what the mirror holds
    assert mirror() == [record]
