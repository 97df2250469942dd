"""The actuator's reads and writes against one API server: a pod's owning workload (through
its ReplicaSet to the Deployment), the namespace's PodDisruptionBudgets, the admission
controller's status Lease, and the rollout patch itself."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from recommender.actuator.inputs import (
    RESIZE_IN_PROGRESS,
    RESIZE_PENDING,
    Budget,
    PodInfo,
    WorkloadRef,
    parse_budget,
    parse_time,
)
from recommender.actuator.plan import (
    RESTARTED_AT,
    ROLLED_OUT_AT,
    STAMP_FORMAT,
    Decision,
    Method,
)
from recommender.kube.rest import JSON, KubeApiError, KubeClient
from recommender.loop.pods import slim_pod as loop_slim_pod

STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
ADMISSION_LEASE = "vpa-admission-controller"
ADMISSION_LEASE_TIMEOUT = dt.timedelta(minutes=1)
"""The updater's AdmissionControllerStatusTimeout: a Lease older than this is not running."""

_PATHS = {"Deployment": "deployments", "StatefulSet": "statefulsets", "ReplicaSet": "replicasets"}

_NOT_ROLLED = {
    "DaemonSet": "DaemonSets are reported, not rolled out (a DaemonSet rollout restarts a pod "
    "on every node)",
    "Pod": "a pod without a controller is reported, not rolled out (nothing would recreate it)",
}


def workload_path(ref: WorkloadRef) -> str:
    return f"/apis/apps/v1/namespaces/{ref.namespace}/{_PATHS[ref.kind]}/{ref.name}"


def slim_pod(obj: JSON) -> JSON:
    """What the actuator reads of a pod (its watch cache keeps only this)."""
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    return {
        "metadata": {
            key: metadata[key]
            for key in (
                "name",
                "namespace",
                "uid",
                "resourceVersion",
                "labels",
                "annotations",
                "ownerReferences",
                "deletionTimestamp",
            )
            if key in metadata
        },
        "spec": {
            "containers": [
                {
                    key: c[key]
                    for key in (
                        "name",
                        "image",
                        "command",
                        "args",
                        "env",
                        "resources",
                        "resizePolicy",
                    )
                    if key in c
                }
                for c in spec.get("containers") or []
            ]
        },
        "status": {
            "phase": status.get("phase"),
            "conditions": [
                c
                for c in status.get("conditions") or []
                if c.get("type") in (RESIZE_PENDING, RESIZE_IN_PROGRESS)
            ],
            "containerStatuses": [
                {"name": s.get("name"), "resources": s.get("resources")}
                for s in status.get("containerStatuses") or []
            ],
        },
    }


@dataclass(frozen=True)
class Owner:
    """A pod's owning workload: the object when it is one we roll, else why not."""

    ref: WorkloadRef
    obj: JSON | None
    problem: str = ""


def _get(kube: KubeClient, path: str) -> JSON | None:
    try:
        return kube.get(path)
    except KubeApiError as error:
        if error.not_found:
            return None
        raise


def _controller(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("kind", "")), str(ref.get("name", ""))
    return None


def resolve_owner(kube: KubeClient, pod: PodInfo) -> Owner:
    """The workload to roll for `pod`: its StatefulSet, or its ReplicaSet's Deployment."""
    namespace = pod.namespace
    if pod.owner is None:
        return Owner(WorkloadRef("Pod", namespace, pod.name), None, _NOT_ROLLED["Pod"])
    kind, name = pod.owner.kind, pod.owner.name
    if kind == "ReplicaSet":
        replica_set = _get(kube, workload_path(WorkloadRef(kind, namespace, name)))
        parent = _controller(replica_set) if replica_set else None
        if parent is None or parent[0] != "Deployment":
            return Owner(
                WorkloadRef(kind, namespace, name),
                None,
                f"ReplicaSet {name} has no Deployment: a ReplicaSet alone is not rolled out",
            )
        kind, name = parent
    ref = WorkloadRef(kind, namespace, name)
    if kind not in ("Deployment", "StatefulSet"):
        return Owner(ref, None, _NOT_ROLLED.get(kind, f"a {kind} is not rolled out by vpa-fleet"))
    obj = _get(kube, workload_path(ref))
    if obj is None:
        return Owner(ref, None, f"{ref} was not found")
    obj.setdefault("kind", kind)
    return Owner(ref, obj)


def list_budgets(kube: KubeClient, namespace: str) -> list[Budget]:
    items, _ = kube.list_all(f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets")
    return [parse_budget(item) for item in items]


def admission_controller_live(kube: KubeClient, namespace: str, now: dt.datetime) -> bool:
    """Whether the VPA admission controller's status Lease was written within the minute
    (the updater's own test: pkg/utils/status)."""
    lease = _get(
        kube, f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{ADMISSION_LEASE}"
    )
    if lease is None:
        return False
    times = [
        parse_time(lease.get("metadata", {}).get("creationTimestamp"), "Lease creationTimestamp"),
        parse_time(lease.get("spec", {}).get("renewTime"), "Lease spec.renewTime"),
    ]
    latest = max((t for t in times if t is not None), default=None)
    return latest is not None and now - latest < ADMISSION_LEASE_TIMEOUT


def rollout_patch(decision: Decision, workload: Mapping[str, Any], now: dt.datetime) -> JSON:
    """The strategic merge patch of the workload's pod template that carries `decision`,
    conditional on the resourceVersion read."""
    containers = []
    template_containers = {
        c.get("name"): c
        for c in ((workload.get("spec") or {}).get("template") or {})
        .get("spec", {})
        .get("containers")
        or []
    }
    for change in decision.changes:
        entry: JSON = {"name": change.container}
        if change.requests or change.limits:
            resources: JSON = {}
            if change.requests:
                resources["requests"] = dict(change.requests)
            if change.limits:
                resources["limits"] = dict(change.limits)
            entry["resources"] = resources
        if change.resize_policy:
            # resizePolicy is an atomic list: give all of it, other resources kept.
            kept = [
                p
                for p in template_containers.get(change.container, {}).get("resizePolicy") or []
                if p.get("resourceName") not in change.resize_policy
            ]
            entry["resizePolicy"] = kept + [
                {"resourceName": name, "restartPolicy": policy}
                for name, policy in sorted(change.resize_policy.items())
            ]
        containers.append(entry)
    template: JSON = {}
    if containers:
        template["spec"] = {"containers": containers}
    stamp = now.astimezone(dt.UTC).strftime(STAMP_FORMAT)
    if decision.restart or decision.method is Method.RESTART_ANNOTATION:
        template["metadata"] = {"annotations": {RESTARTED_AT: stamp}}
    return {
        "metadata": {
            "resourceVersion": (workload.get("metadata") or {}).get("resourceVersion"),
            "annotations": {ROLLED_OUT_AT: stamp},
        },
        "spec": {"template": template},
    }


def apply_rollout(
    kube: KubeClient, decision: Decision, workload: Mapping[str, Any], now: dt.datetime
) -> JSON:
    return kube.request(
        "PATCH",
        workload_path(decision.workload),
        body=rollout_patch(decision, workload, now),
        content_type=STRATEGIC_MERGE_PATCH,
    )


def slim_pod_shared(obj: JSON) -> JSON:
    """What the loop and the actuator read of a pod, for the one watch they share."""
    loop, mine = loop_slim_pod(obj), slim_pod(obj)
    return {
        "metadata": {**loop["metadata"], **mine["metadata"]},
        "spec": {
            "containers": [
                {**a, **b}
                for a, b in zip(loop["spec"]["containers"], mine["spec"]["containers"], strict=True)
            ]
        },
        "status": {
            **mine["status"],
            "containerStatuses": [
                {**a, **b}
                for a, b in zip(
                    loop["status"]["containerStatuses"],
                    mine["status"]["containerStatuses"],
                    strict=True,
                )
            ],
        },
    }
