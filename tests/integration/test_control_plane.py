"""The real control plane: workloads become Running pods through KWOK, and VPA objects of
the upstream CRD accept our recommender name and a status written through the subresource."""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from testbed.cluster import ControlPlane
from tests.integration.kube_helpers import eventually, running_pods, unique_namespace, workload

VPA_GROUP, VPA_VERSION, VPA_PLURAL = "autoscaling.k8s.io", "v1", "verticalpodautoscalers"


def _vpa(name: str, target: str, update_mode: str = "InPlaceOrRecreate") -> dict[str, object]:
    return {
        "apiVersion": f"{VPA_GROUP}/{VPA_VERSION}",
        "kind": "VerticalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "recommenders": [{"name": "vpa-fleet"}],
            "updatePolicy": {"updateMode": update_mode},
        },
    }


def test_api_server_is_the_pinned_release(control_plane: ControlPlane) -> None:
    version = control_plane.kubectl("version", "-o", "json")
    assert '"gitVersion": "v1.35.4"' in version


def test_deployment_gets_three_running_pods(kube_api: client.ApiClient) -> None:
    namespace = unique_namespace(kube_api, "deploy")
    client.AppsV1Api(kube_api).create_namespaced_deployment(
        namespace, workload("Deployment", "web", replicas=3)
    )

    pods = eventually(
        lambda: p if len(p := running_pods(kube_api, namespace, "web")) == 3 else None,
        90,
        "3 Running pods of deployment web",
    )
    assert {p.spec.node_name for p in pods} <= {"kwok-node-0", "kwok-node-1"}
    assert all(p.metadata.owner_references[0].kind == "ReplicaSet" for p in pods)
    assert all(p.spec.containers[0].resources.requests["cpu"] == "100m" for p in pods)


def test_statefulset_and_daemonset_pods_run(kube_api: client.ApiClient) -> None:
    namespace = unique_namespace(kube_api, "sts")
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_stateful_set(namespace, workload("StatefulSet", "db", replicas=2))
    apps.create_namespaced_daemon_set(namespace, workload("DaemonSet", "agent"))
    eventually(
        lambda: len(running_pods(kube_api, namespace, "db")) == 2, 90, "2 Running StatefulSet pods"
    )
    agents = eventually(
        lambda: p if len(p := running_pods(kube_api, namespace, "agent")) == 2 else None,
        90,
        "one Running DaemonSet pod per node",
    )
    assert sorted(p.spec.node_name for p in agents) == ["kwok-node-0", "kwok-node-1"]


def test_vpa_naming_our_recommender_takes_a_status_patch(kube_api: client.ApiClient) -> None:
    namespace = unique_namespace(kube_api, "vpa")
    objects = client.CustomObjectsApi(kube_api)
    created = objects.create_namespaced_custom_object(
        VPA_GROUP, VPA_VERSION, namespace, VPA_PLURAL, _vpa("web", "web")
    )
    assert created["spec"]["recommenders"] == [{"name": "vpa-fleet"}]
    assert created["spec"]["updatePolicy"]["updateMode"] == "InPlaceOrRecreate"
    assert "status" not in created or not created["status"]

    status = {
        "recommendation": {
            "containerRecommendations": [
                {
                    "containerName": "app",
                    "target": {"cpu": "126m", "memory": "262144k"},
                    "lowerBound": {"cpu": "25m", "memory": "262144k"},
                    "upperBound": {"cpu": "1", "memory": "1Gi"},
                    "uncappedTarget": {"cpu": "126m", "memory": "262144k"},
                }
            ]
        },
        "conditions": [
            {
                "type": "RecommendationProvided",
                "status": "True",
                "lastTransitionTime": "2026-11-29T00:00:00Z",
            }
        ],
    }
    patched = objects.patch_namespaced_custom_object_status(
        VPA_GROUP, VPA_VERSION, namespace, VPA_PLURAL, "web", {"status": status}
    )
    assert patched["status"]["recommendation"] == status["recommendation"]
    assert patched["metadata"]["generation"] == created["metadata"]["generation"]

    # The main resource ignores status: only the subresource writes it.
    objects.patch_namespaced_custom_object(
        VPA_GROUP,
        VPA_VERSION,
        namespace,
        VPA_PLURAL,
        "web",
        {"status": {"recommendation": {"containerRecommendations": []}}},
    )
    fetched = objects.get_namespaced_custom_object(
        VPA_GROUP, VPA_VERSION, namespace, VPA_PLURAL, "web"
    )
    assert fetched["status"]["recommendation"] == status["recommendation"]
    assert fetched["status"]["conditions"][0]["type"] == "RecommendationProvided"


def test_upstream_crd_validates_update_mode(kube_api: client.ApiClient) -> None:
    namespace = unique_namespace(kube_api, "bad")
    objects = client.CustomObjectsApi(kube_api)
    with pytest.raises(ApiException) as raised:
        objects.create_namespaced_custom_object(
            VPA_GROUP, VPA_VERSION, namespace, VPA_PLURAL, _vpa("x", "x", update_mode="Sometimes")
        )
    assert raised.value.status == 422
    assert "updateMode" in raised.value.body
