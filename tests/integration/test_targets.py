"""targetRef resolution on the real API server, with the stock recommender's messages."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from recommender.kube.rest import KubeClient
from recommender.kube.targets import TargetResolver
from recommender.vpa.objects import VerticalPodAutoscaler, parse_vpa
from testbed.cluster import ControlPlane
from tests.integration.kube_helpers import (
    eventually,
    pod_template,
    running_pods,
    unique_namespace,
    workload,
)

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
                "subresources": {
                    "status": {},
                    "scale": {
                        "specReplicasPath": ".spec.replicas",
                        "statusReplicasPath": ".status.replicas",
                        "labelSelectorPath": ".status.selector",
                    },
                },
            }
        ],
    },
}


def _vpa(
    namespace: str, kind: str, name: str, api_version: str = "apps/v1"
) -> VerticalPodAutoscaler:
    return parse_vpa(
        {
            "metadata": {"name": "v", "namespace": namespace},
            "spec": {"targetRef": {"apiVersion": api_version, "kind": kind, "name": name}},
        }
    )


@pytest.fixture(scope="module")
def setup(kube_api: client.ApiClient, control_plane: ControlPlane) -> tuple[KubeClient, str]:
    namespace = unique_namespace(kube_api, "targets")
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, workload("Deployment", "web", replicas=2))
    client.BatchV1Api(kube_api).create_namespaced_cron_job(
        namespace,
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "nightly"},
            "spec": {
                "schedule": "0 3 * * *",
                "jobTemplate": {
                    "spec": {
                        "template": {
                            **pod_template("nightly"),
                            "spec": {
                                **pod_template("nightly")["spec"],  # type: ignore[dict-item]
                                "restartPolicy": "Never",
                            },
                        }
                    }
                },
            },
        },
    )
    control_plane.kubectl("apply", "-f", "-", input_text=json.dumps(WIDGET_CRD))
    control_plane.kubectl("wait", "--for=condition=Established", "crd/widgets.example.com")
    kube = KubeClient(kube_api)
    kube.request(
        "POST",
        f"/apis/example.com/v1/namespaces/{namespace}/widgets",
        body={
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"replicas": 1},
        },
    )
    kube.request(
        "PATCH",
        f"/apis/example.com/v1/namespaces/{namespace}/widgets/w/status",
        body={"status": {"replicas": 1, "selector": "app=widget,tier in (a,b)"}},
        content_type="application/merge-patch+json",
    )
    eventually(lambda: len(running_pods(kube_api, namespace, "web")) == 2, 90, "web pods")
    return kube, namespace


def test_deployment_selects_its_pods(
    setup: tuple[KubeClient, str], kube_api: client.ApiClient
) -> None:
    kube, namespace = setup
    resolution = TargetResolver(kube).resolve(_vpa(namespace, "Deployment", "web"))
    assert resolution.config_unsupported is None
    pods = client.CoreV1Api(kube_api).list_namespaced_pod(namespace).items
    selected = [p for p in pods if resolution.selector.matches(p.metadata.labels or {})]
    assert len(selected) == 2


def test_replicaset_under_a_deployment_is_unsupported(
    setup: tuple[KubeClient, str], kube_api: client.ApiClient
) -> None:
    kube, namespace = setup
    replica_set = client.AppsV1Api(kube_api).list_namespaced_replica_set(namespace).items[0]
    name = replica_set.metadata.name
    resolution = TargetResolver(kube).resolve(_vpa(namespace, "ReplicaSet", name))
    assert resolution.config_unsupported == (
        f"The target apps/v1.ReplicaSet/{name} has a parent controller but it should point "
        "to a topmost well-known or scalable controller"
    )
    assert not resolution.selector.matches({"app": "web"})


def test_missing_target(setup: tuple[KubeClient, str]) -> None:
    kube, namespace = setup
    resolution = TargetResolver(kube).resolve(_vpa(namespace, "Deployment", "ghost"))
    assert resolution.config_unsupported == (
        f"Cannot read targetRef. Reason: Deployment {namespace}/ghost does not exist"
    )


def test_cronjob_selects_by_template_labels(setup: tuple[KubeClient, str]) -> None:
    kube, namespace = setup
    resolution = TargetResolver(kube).resolve(_vpa(namespace, "CronJob", "nightly", "batch/v1"))
    assert resolution.config_unsupported is None
    assert resolution.selector.matches({"app": "nightly"})


def test_custom_resource_with_scale(setup: tuple[KubeClient, str]) -> None:
    kube, namespace = setup
    resolution = TargetResolver(kube).resolve(_vpa(namespace, "Widget", "w", "example.com/v1"))
    assert resolution.config_unsupported is None
    assert resolution.selector.matches({"app": "widget", "tier": "a"})
    assert not resolution.selector.matches({"app": "widget", "tier": "c"})


def test_kind_without_scale(setup: tuple[KubeClient, str]) -> None:
    kube, namespace = setup
    resolution = TargetResolver(kube).resolve(_vpa(namespace, "ConfigMap", "x", "v1"))
    assert resolution.config_unsupported is not None
    assert resolution.config_unsupported.startswith(
        "Cannot read targetRef. Reason: unhandled targetRef v1 / ConfigMap / x, last error"
    )


def test_prefetch_lists_once_and_resolves_the_same(
    setup: tuple[KubeClient, str], kube_api: client.ApiClient
) -> None:
    kube, namespace = setup
    apps = client.AppsV1Api(kube_api)
    for name in ("api", "worker"):
        apps.create_namespaced_deployment(namespace, workload("Deployment", name, replicas=0))
    vpas = [_vpa(namespace, "Deployment", name) for name in ("web", "api", "worker", "gone")]
    plain = [TargetResolver(kube).resolve(vpa) for vpa in vpas]

    calls: list[str] = []
    get = kube.get

    def counting_get(path: str, **query: object) -> dict[str, object]:
        calls.append(path)
        return get(path, **query)

    resolver = TargetResolver(kube)
    kube.get = counting_get  # type: ignore[method-assign]
    try:
        resolver.prefetch(namespace, vpas)
        listed = len(calls)
        prefetched = [resolver.resolve(vpa) for vpa in vpas]
    finally:
        del kube.get
    assert prefetched == plain
    assert plain[3].config_unsupported == (
        f"Cannot read targetRef. Reason: Deployment {namespace}/gone does not exist"
    )
    assert listed == 1  # one page of Deployments
    assert not [path for path in calls[listed:] if "/deployments/" in path]


def test_a_controller_owned_by_a_scalable_resource_is_not_top_most(
    setup: tuple[KubeClient, str], kube_api: client.ApiClient
) -> None:
    kube, namespace = setup
    widget = kube.get(f"/apis/example.com/v1/namespaces/{namespace}/widgets/w")
    owned = workload("Deployment", "owned", replicas=0)
    owned["metadata"]["ownerReferences"] = [  # type: ignore[index]
        {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "name": "w",
            "uid": widget["metadata"]["uid"],
            "controller": True,
        }
    ]
    client.AppsV1Api(kube_api).create_namespaced_deployment(namespace, owned)
    # The owner is read through its /scale subresource, as upstream reads it.
    resolution = TargetResolver(kube).resolve(_vpa(namespace, "Deployment", "owned"))
    assert resolution.config_unsupported == (
        "The target apps/v1.Deployment/owned has a parent controller but it should point to a "
        "topmost well-known or scalable controller"
    )
