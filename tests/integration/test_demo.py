"""The demo workloads on the real testbed: pods Running, VPAs for the right recommenders, and
Prometheus history for exactly the pods the controllers created."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from recommender.kube.rest import KubeClient, load_api_client
from recommender.vpa.objects import parse_vpa
from recommender.vpa.selection import is_selected
from testbed.cluster import ControlPlane
from testbed.demo import (
    DEMO,
    Demo,
    DemoWorkload,
    deploy,
    scaled_demo,
    start_demo,
    with_namespace_prefix,
)
from testbed.process import TestbedError
from testbed.series import ContainerSpec


@pytest.fixture(scope="module")
def kube(control_plane: ControlPlane) -> Iterator[KubeClient]:
    api = load_api_client(str(control_plane.kubeconfig))
    try:
        yield KubeClient(api)
    finally:
        api.close()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def prefix() -> str:
    """Namespaces of their own: other tests share the API server."""
    return f"demo-{uuid.uuid4().hex[:6]}-"


@pytest.fixture(scope="module")
def demo(kube: KubeClient, prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    started = start_demo(
        tmp_path_factory.mktemp("demo"), kube, DEMO, days=0.5, namespace_prefix=prefix
    )
    with started:
        yield started


def _query(prometheus_url: str, promql: str) -> list[dict[str, Any]]:
    url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_every_pod_runs(
    demo: Demo, prefix: str, kube: KubeClient, control_plane: ControlPlane
) -> None:
    assert demo.workloads == with_namespace_prefix(DEMO, prefix)
    assert list(demo.pods) == [w.key for w in demo.workloads]
    for w in demo.workloads:
        expected = len(control_plane.nodes) if w.kind == "DaemonSet" else w.replicas
        assert len(demo.pods[w.key]) == expected, w.key
        assert demo.pods[w.key] == sorted(demo.pods[w.key])

    for namespace in sorted({w.namespace for w in demo.workloads}):
        pods, _ = kube.list_all(f"/api/v1/namespaces/{namespace}/pods")
        running: dict[str, list[str]] = {}
        for pod in pods:
            assert pod["status"]["phase"] == "Running", pod["metadata"]["name"]
            app = pod["metadata"]["labels"]["app"]
            running.setdefault(app, []).append(pod["metadata"]["name"])
        mine = {w.name: demo.pods[w.key] for w in demo.workloads if w.namespace == namespace}
        assert {app: sorted(names) for app, names in running.items()} == mine


def test_pods_are_what_the_workloads_say(demo: Demo, kube: KubeClient) -> None:
    owners = {"Deployment": "ReplicaSet", "StatefulSet": "StatefulSet", "DaemonSet": "DaemonSet"}
    for w in demo.workloads:
        pods, _ = kube.list_all(
            f"/api/v1/namespaces/{w.namespace}/pods", labelSelector=f"app={w.name}"
        )
        nodes = [p["spec"]["nodeName"] for p in pods]
        if w.kind == "DaemonSet":
            assert len(set(nodes)) == len(nodes), "one DaemonSet pod per node"
        for pod in pods:
            assert pod["metadata"]["ownerReferences"][0]["kind"] == owners[w.kind]
            containers = {c["name"]: c["resources"] for c in pod["spec"]["containers"]}
            assert list(containers) == [c.name for c in w.containers]
    web = next(w for w in demo.workloads if w.name == "web")
    pod, *_ = kube.list_all(f"/api/v1/namespaces/{web.namespace}/pods", labelSelector="app=web")[0]
    resources = {c["name"]: c["resources"] for c in pod["spec"]["containers"]}
    assert resources["web"] == {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"memory": "1Gi"},
    }
    assert resources["envoy"]["requests"] == {"cpu": "100m", "memory": "128Mi"}


def test_vpas_name_their_recommenders(demo: Demo, kube: KubeClient) -> None:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for namespace in sorted({w.namespace for w in demo.workloads}):
        items, _ = kube.list_all(
            f"/apis/autoscaling.k8s.io/v1/namespaces/{namespace}/verticalpodautoscalers"
        )
        found.update({(namespace, item["metadata"]["name"]): item for item in items})
    assert sorted(found) == sorted(w.key for w in demo.workloads)
    recommenders = {
        name: [r["name"] for r in vpa["spec"].get("recommenders", [])]
        for (_, name), vpa in found.items()
    }
    assert recommenders == {
        "web": ["vpa-fleet"],
        "cart": ["vpa-fleet"],
        "redis": ["vpa-fleet"],
        "node-agent": ["vpa-fleet"],
        "legacy": ["custom-recommender"],
        "payments": [],
        "etl": ["vpa-fleet"],
        "reports": ["vpa-fleet"],
    }
    for w in demo.workloads:
        vpa = parse_vpa(found[w.key])
        assert vpa.spec.target_ref is not None
        assert vpa.spec.target_ref.kind == w.kind
        assert vpa.spec.target_ref.name == w.name
        assert vpa.spec.update_policy is not None
        assert vpa.spec.update_policy.update_mode == "InPlaceOrRecreate"
        assert is_selected(vpa, "vpa-fleet") == (w.name not in {"legacy", "payments"})
        assert is_selected(vpa, "default") == (w.name == "payments")


def test_history_is_for_exactly_the_real_pods(demo: Demo) -> None:
    for namespace in sorted({w.namespace for w in demo.workloads}):
        series = _query(
            demo.prometheus.url, f'container_memory_working_set_bytes{{namespace="{namespace}"}}'
        )
        labels = [s["metric"] for s in series]
        containers = {(m["pod"], m["container"]) for m in labels if "container" in m}
        pods = {m["pod"] for m in labels if "container" not in m}  # the pod-level series
        workloads = [w for w in demo.workloads if w.namespace == namespace]
        assert containers == {
            (pod, c.name) for w in workloads for pod in demo.pods[w.key] for c in w.containers
        }
        assert pods == {pod for w in workloads for pod in demo.pods[w.key]}
        assert demo.history.container_keys(namespace) == containers

    cart = next(w for w in demo.workloads if w.name == "cart")
    killed = _query(
        demo.prometheus.url,
        f'max_over_time(container_oom_events_total{{namespace="{cart.namespace}",container="cart"}}[1d])',
    )
    per_pod = {s["metric"]["pod"]: s["value"][1] for s in killed}
    assert per_pod == dict.fromkeys(demo.pods[cart.key], "2")  # cart has 2 OOM kills per pod
    assert {"deploy_s", "generate_s", "backfill_s", "start_s"} <= set(demo.timings)


def test_scaled_demo_deploys_one_pod_per_workload(kube: KubeClient) -> None:
    prefix = f"scaled-{uuid.uuid4().hex[:6]}-"
    workloads = scaled_demo(namespaces=3, workloads=7, seed=1)
    pods = deploy(kube, workloads, namespace_prefix=prefix)
    assert list(pods) == [(prefix + w.namespace, w.name) for w in workloads]
    assert sorted({ns for ns, _ in pods}) == [f"{prefix}ns-0{i}" for i in range(3)]
    for (namespace, name), names in pods.items():
        assert len(names) == 1
        assert names[0].startswith(f"{name}-")
        vpa = kube.get(
            f"/apis/autoscaling.k8s.io/v1/namespaces/{namespace}/verticalpodautoscalers/{name}"
        )
        assert vpa["spec"]["recommenders"] == [{"name": "vpa-fleet"}]


def test_an_existing_workload_is_an_error(demo: Demo, kube: KubeClient) -> None:
    web = next(w for w in demo.workloads if w.name == "web")
    with pytest.raises(TestbedError, match=f"creating Deployment {web.namespace}/web failed"):
        deploy(kube, [web])


def test_pods_that_cannot_run_time_out_naming_the_workload(kube: KubeClient) -> None:
    huge = ContainerSpec("huge", 1.0, 2**30, cpu_request_cores=10_000.0, memory_request_bytes=2**30)
    workload = DemoWorkload("Deployment", "huge", "huge", 1, (huge,), vpa=None)
    namespace = f"huge-{uuid.uuid4().hex[:6]}-huge"
    with pytest.raises(TestbedError) as raised:
        deploy(kube, [workload], namespace_prefix=namespace[:-4], timeout_s=3)
    message = str(raised.value)
    assert f"Deployment {namespace}/huge: 0 of 1 Running" in message
    assert "Insufficient cpu" in message


def test_workloads_named_twice_are_refused(kube: KubeClient) -> None:
    with pytest.raises(ValueError, match="shop/web"):
        deploy(kube, [DEMO[0], DEMO[0]])
