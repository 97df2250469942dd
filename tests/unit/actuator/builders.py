"""Objects for the actuator's unit tests, as the API serves them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from recommender.actuator.inputs import (
    Budget,
    PodInfo,
    WorkloadInfo,
    parse_budget,
    parse_pod,
    parse_workload,
)
from recommender.vpa.objects import VerticalPodAutoscaler, parse_vpa

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
TARGET = {"cpu": "250m", "memory": "256Mi"}
LOWER = {"cpu": "200m", "memory": "200Mi"}
UPPER = {"cpu": "1", "memory": "1Gi"}


def stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def vpa(
    name: str = "web",
    namespace: str = "shop",
    *,
    mode: str = "InPlaceOrRecreate",
    target: dict[str, str] | None = None,
    recommended: bool = True,
    annotations: dict[str, str] | None = None,
    min_replicas: int | None = None,
) -> VerticalPodAutoscaler:
    policy: dict[str, Any] = {"updateMode": mode}
    if min_replicas is not None:
        policy["minReplicas"] = min_replicas
    obj: dict[str, Any] = {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"vpa-{name}",
            "annotations": annotations or {},
        },
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "updatePolicy": policy,
            "recommenders": [{"name": "vpa-fleet"}],
        },
    }
    if recommended:
        obj["status"] = {
            "recommendation": {
                "containerRecommendations": [
                    {
                        "containerName": "app",
                        "target": target or TARGET,
                        "lowerBound": LOWER,
                        "upperBound": UPPER,
                    }
                ]
            }
        }
    return parse_vpa(obj)


def container(
    *,
    requests: dict[str, str] | None = None,
    limits: dict[str, str] | None = None,
    command: list[str] | None = None,
    resize_policy: dict[str, str] | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "name": "app",
        "image": "registry.example/app:1",
        "resources": {
            "requests": requests or {"cpu": "100m", "memory": "128Mi"},
            "limits": limits if limits is not None else {"memory": "256Mi"},
        },
    }
    if command:
        result["command"] = command
    if resize_policy:
        result["resizePolicy"] = [
            {"resourceName": k, "restartPolicy": v} for k, v in resize_policy.items()
        ]
    return result


def pod(
    name: str = "web-1",
    namespace: str = "shop",
    *,
    app: str = "web",
    pending: str | None = None,
    since: dt.datetime | None = None,
    owner: tuple[str, str] | None = ("ReplicaSet", "web-5d4"),
    spec: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    terminating: bool = False,
) -> PodInfo:
    conditions = []
    if pending:
        conditions.append(
            {
                "type": "PodResizePending",
                "status": "True",
                "reason": pending,
                "lastTransitionTime": stamp(since or NOW),
            }
        )
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{name}",
        "labels": {"app": app},
        "annotations": annotations or {},
    }
    if owner:
        metadata["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    if terminating:
        metadata["deletionTimestamp"] = stamp(NOW)
    spec_container = spec or container()
    return parse_pod(
        {
            "metadata": metadata,
            "spec": {"containers": [spec_container]},
            "status": {
                "phase": "Running",
                "conditions": conditions,
                "containerStatuses": [
                    {"name": "app", "resources": spec_container["resources"]},
                ],
            },
        }
    )


def workload(
    name: str = "web",
    namespace: str = "shop",
    *,
    kind: str = "Deployment",
    spec: dict[str, Any] | None = None,
    strategy: str | None = None,
    annotations: dict[str, str] | None = None,
    rolling: bool = False,
) -> WorkloadInfo:
    body: dict[str, Any] = {
        "replicas": 1,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [spec or container()]},
        },
    }
    if strategy:
        body["strategy" if kind == "Deployment" else "updateStrategy"] = {"type": strategy}
    status: dict[str, Any] = {
        "observedGeneration": 1 if rolling else 2,
        "replicas": 1,
        "updatedReplicas": 1,
        "availableReplicas": 1,
        "currentRevision": "a",
        "updateRevision": "a",
    }
    return parse_workload(
        {
            "kind": kind,
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": f"uid-{kind}-{name}",
                "generation": 2,
                "annotations": annotations or {},
            },
            "spec": body,
            "status": status,
        }
    )


def budget(name: str = "web", app: str = "web", allowed: int = 0) -> Budget:
    return parse_budget(
        {
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": app}}},
            "status": {"disruptionsAllowed": allowed},
        }
    )
