"""Status writes on the real API server: through the subresource, only when changed."""

from __future__ import annotations

from kubernetes import client

from recommender.kube.rest import KubeClient
from recommender.kube.status_writer import StatusWriter, WriteResult, vpa_path
from recommender.vpa.objects import RecommendedContainerResources, parse_vpa
from recommender.vpa.status import desired_status
from tests.integration.kube_helpers import unique_namespace


def _entry(cpu: str) -> RecommendedContainerResources:
    values = {"cpu": cpu, "memory": "600Mi"}
    return RecommendedContainerResources(
        containerName="app",
        target=values,
        lowerBound=values,
        upperBound=values,
        uncappedTarget=values,
    )


def test_write_then_skip_then_write_again(kube_api: client.ApiClient) -> None:
    kube = KubeClient(kube_api)
    namespace = unique_namespace(kube_api, "status")
    created = kube.request(
        "POST",
        f"/apis/autoscaling.k8s.io/v1/namespaces/{namespace}/verticalpodautoscalers",
        body={
            "apiVersion": "autoscaling.k8s.io/v1",
            "kind": "VerticalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "recommenders": [{"name": "vpa-fleet"}],
            },
        },
    )
    writer = StatusWriter(kube, threshold=0.05)
    vpa = parse_vpa(created)
    first = desired_status(vpa, [_entry("100m")], pods_matched=True, now="2026-11-29T00:00:00Z")
    assert writer.write(vpa, first) is WriteResult.WRITTEN

    stored = parse_vpa(kube.get(vpa_path(namespace, "web")))
    assert stored.status == first
    assert stored.metadata.generation == vpa.metadata.generation, "status writes keep generation"

    nudged = desired_status(stored, [_entry("103m")], pods_matched=True, now="2026-11-29T00:01:00Z")
    assert writer.write(stored, nudged) is WriteResult.UNCHANGED
    assert (
        kube.get(vpa_path(namespace, "web"))["metadata"]["resourceVersion"]
        == stored.metadata.resource_version
    )

    moved = desired_status(stored, [_entry("150m")], pods_matched=True, now="2026-11-29T00:02:00Z")
    assert writer.write(stored, moved) is WriteResult.WRITTEN
    final = parse_vpa(kube.get(vpa_path(namespace, "web")))
    assert final.status.recommendation is not None
    assert final.status.recommendation.container_recommendations[0].target["cpu"] == "150m"

    kube.request("DELETE", vpa_path(namespace, "web"))
    lost = desired_status(final, [], pods_matched=False, now="2026-11-29T00:03:00Z")
    assert writer.write(final, lost) is WriteResult.GONE
