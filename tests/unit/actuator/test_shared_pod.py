"""The one pod watch the loop and the actuator share keeps what each of them reads."""

from __future__ import annotations

from recommender.actuator.inputs import parse_pod
from recommender.actuator.kube import slim_pod, slim_pod_shared
from recommender.loop.pods import pod_view
from recommender.loop.pods import slim_pod as loop_slim_pod

POD = {
    "metadata": {
        "name": "web-1",
        "namespace": "shop",
        "uid": "u1",
        "resourceVersion": "7",
        "labels": {"app": "web"},
        "annotations": {"a": "b"},
        "ownerReferences": [{"kind": "ReplicaSet", "name": "web-x", "controller": True}],
        "managedFields": [{"manager": "big"}],
    },
    "spec": {
        "nodeName": "n1",
        "containers": [
            {
                "name": "web",
                "image": "eclipse-temurin:21",
                "command": ["java", "-Xmx512m", "-jar", "app.jar"],
                "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}},
            },
            {"name": "envoy", "image": "envoy:1", "resources": {}},
        ],
    },
    "status": {
        "phase": "Running",
        "conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "PodResizePending", "status": "True", "reason": "Infeasible"},
        ],
        "containerStatuses": [
            {
                "name": "web",
                "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}},
                "lastState": {
                    "terminated": {"reason": "OOMKilled", "finishedAt": "2026-11-29T00:00:00Z"}
                },
            },
            {"name": "envoy", "resources": {}, "lastState": {}},
        ],
    },
}


def test_the_shared_slim_pod_reads_as_each_ones_own() -> None:
    shared = slim_pod_shared(POD)
    assert pod_view(shared) == pod_view(loop_slim_pod(POD))
    assert parse_pod(shared) == parse_pod(slim_pod(POD))
    assert "managedFields" not in shared["metadata"]
    assert "nodeName" not in shared["spec"]
