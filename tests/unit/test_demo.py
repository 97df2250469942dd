"""The demo workloads and their manifests, without a cluster."""

from __future__ import annotations

from collections import Counter

import pytest

from testbed.demo import (
    DEMO,
    DemoVpa,
    DemoWorkload,
    container_from_spec,
    cpu_quantity,
    format_inventory,
    history_spec,
    inventory,
    memory_quantity,
    scaled_demo,
    vpa_manifest,
    with_namespace_prefix,
)
from testbed.series import MI, ContainerSpec, SyntheticHistory

SMALL = ContainerSpec("app", 0.1, 100 * MI, 0.1, 128 * MI)


def test_demo_workloads() -> None:
    assert [(w.namespace, w.kind, w.name, w.replicas) for w in DEMO if w.kind != "DaemonSet"] == [
        ("shop", "Deployment", "web", 3),
        ("shop", "Deployment", "cart", 2),
        ("shop", "StatefulSet", "redis", 1),
        ("shop", "Deployment", "legacy", 1),
        ("shop", "Deployment", "payments", 2),
        ("batch", "Deployment", "etl", 2),
        ("batch", "Deployment", "reports", 2),
    ]
    by_name = {w.name: w for w in DEMO}
    assert by_name["node-agent"].kind == "DaemonSet"
    assert [c.name for c in by_name["web"].containers] == ["web", "envoy"]
    assert by_name["cart"].containers[0].oom_kills > 0
    assert {w.name: w.vpa_label() for w in DEMO} == {
        "web": "vpa-fleet",
        "cart": "vpa-fleet",
        "redis": "vpa-fleet",
        "node-agent": "vpa-fleet",
        "legacy": "custom-recommender",
        "payments": "(no spec.recommenders)",
        "etl": "vpa-fleet",
        "reports": "vpa-fleet",
    }
    assert {w.vpa.update_mode for w in DEMO if w.vpa} == {"InPlaceOrRecreate"}


def test_manifests_per_kind() -> None:
    web, redis, agent = (
        next(w for w in DEMO if w.name == n) for n in ("web", "redis", "node-agent")
    )
    deployment = web.manifest()
    assert deployment["kind"] == "Deployment"
    assert deployment["metadata"] == {"name": "web", "namespace": "shop"}
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"] == {"app": "web"}
    assert template["spec"]["nodeSelector"] == {"type": "kwok"}
    assert [c["name"] for c in template["spec"]["containers"]] == ["web", "envoy"]
    assert redis.manifest()["spec"]["serviceName"] == "redis"
    assert "replicas" not in agent.manifest()["spec"]


def test_container_resources_come_from_the_spec() -> None:
    spec = ContainerSpec("c", 0.3, 300 * MI, cpu_request_cores=0.25, memory_request_bytes=768 * MI)
    assert container_from_spec(spec)["resources"] == {
        "requests": {"cpu": "250m", "memory": "768Mi"},
        "limits": {"memory": "1536Mi"},
    }


@pytest.mark.parametrize(
    ("cores", "quantity"), [(0.25, "250m"), (1.0, "1"), (2.5, "2500m"), (0.001, "1m")]
)
def test_cpu_quantity(cores: float, quantity: str) -> None:
    assert cpu_quantity(cores) == quantity


@pytest.mark.parametrize(
    ("value", "quantity"),
    [(2 * 1024**3, "2Gi"), (1536 * MI, "1536Mi"), (4096, "4Ki"), (1000, "1000"), (0, "0")],
)
def test_memory_quantity(value: int, quantity: str) -> None:
    assert memory_quantity(value) == quantity


def test_vpa_manifests() -> None:
    ours = DemoWorkload("StatefulSet", "ns", "db", 1, (SMALL,)).vpa_manifest()
    assert ours == {
        "apiVersion": "autoscaling.k8s.io/v1",
        "kind": "VerticalPodAutoscaler",
        "metadata": {"name": "db", "namespace": "ns"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"},
            "updatePolicy": {"updateMode": "InPlaceOrRecreate"},
            "recommenders": [{"name": "vpa-fleet"}],
        },
    }
    default = vpa_manifest("ns", "v", "Deployment", target_name="w", recommender=None)
    assert "recommenders" not in default["spec"]
    assert default["spec"]["targetRef"]["name"] == "w"
    other = DemoWorkload("Deployment", "ns", "w", 1, (SMALL,), vpa=DemoVpa("other", "Off"))
    other_vpa = other.vpa_manifest()
    assert other_vpa is not None
    assert other_vpa["spec"]["recommenders"] == [{"name": "other"}]
    assert other_vpa["spec"]["updatePolicy"] == {"updateMode": "Off"}
    none = DemoWorkload("Deployment", "ns", "w", 1, (SMALL,), vpa=None)
    assert none.vpa_manifest() is None
    assert none.vpa_label() == "(no VPA)"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "Job"}, "kind must be one of Deployment, StatefulSet, DaemonSet"),
        ({"replicas": -1}, "replicas must not be negative"),
        ({"containers": ()}, "needs containers with distinct names"),
        ({"containers": (SMALL, SMALL)}, "needs containers with distinct names"),
    ],
)
def test_invalid_workloads(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "kind": "Deployment",
        "namespace": "ns",
        "name": "w",
        "replicas": 1,
        "containers": (SMALL,),
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        DemoWorkload(**fields)  # type: ignore[arg-type]


def test_scaled_demo_spreads_evenly_and_is_deterministic() -> None:
    workloads = scaled_demo(namespaces=20, workloads=1_000, seed=0)
    assert len(workloads) == 1_000
    assert len({w.name for w in workloads}) == 1_000
    assert workloads[0].name == "app-0000"
    assert workloads[-1].name == "app-0999"
    per_namespace = Counter(w.namespace for w in workloads)
    assert sorted(per_namespace) == [f"ns-{i:02d}" for i in range(20)]
    assert set(per_namespace.values()) == {50}
    for w in workloads:
        assert (w.kind, w.replicas, len(w.containers)) == ("Deployment", 1, 1)
        assert w.vpa == DemoVpa("vpa-fleet")
        container_from_spec(w.containers[0])  # valid quantities
    containers = [w.containers[0] for w in workloads]
    assert {c.cpu_shape for c in containers} == {"steady", "diurnal", "spiky"}
    assert {c.memory_shape for c in containers} == {"steady", "diurnal", "spiky"}
    assert len({c.cpu_cores for c in containers}) > 900
    assert 0 < sum(c.oom_kills > 0 for c in containers) < 100
    # Requests fit the testbed's nodes (64 cores, 256 GiB, 250 pods each) with 5 nodes.
    assert sum(c.cpu_request_cores for c in containers) < 4 * 64
    assert sum(c.memory_request_bytes for c in containers) < 4 * 256 * 1024 * MI

    assert scaled_demo(20, 1_000, seed=0) == workloads
    assert scaled_demo(20, 1_000, seed=1) != workloads
    # A workload's usage depends on its index and the seed, not on the totals.
    fewer = scaled_demo(namespaces=3, workloads=10, seed=0)
    assert [w.containers for w in fewer] == [w.containers for w in workloads[:10]]
    assert Counter(w.namespace for w in fewer) == {"ns-00": 4, "ns-01": 3, "ns-02": 3}


def test_scaled_demo_names_widen_with_the_counts() -> None:
    workloads = scaled_demo(namespaces=150, workloads=12_000)
    assert workloads[-1].name == "app-11999"
    assert workloads[-1].namespace == "ns-149"
    assert workloads[0].namespace == "ns-000"
    with pytest.raises(ValueError, match="namespaces must be at least 1"):
        scaled_demo(0, 10)


def test_history_spec_uses_the_real_pod_names() -> None:
    workloads = with_namespace_prefix(DEMO, "t-")
    assert {w.namespace for w in workloads} == {"t-shop", "t-batch"}
    pods = {
        w.key: [f"{w.name}-{i}" for i in range(2 if w.kind == "DaemonSet" else w.replicas)]
        for w in workloads
    }
    spec = history_spec(workloads, pods)
    agent = next(s for s in spec if s.name == "node-agent")
    assert (agent.pods, agent.pod_names) == (2, ("node-agent-0", "node-agent-1"))
    history = SyntheticHistory.generate(spec, days=0.05, step_s=60, end=1_800_000_000)
    assert {(c.namespace, c.pod) for c in history.containers} == {
        (ns, pod) for (ns, _), names in pods.items() for pod in names
    }


def test_inventory_table() -> None:
    workloads = DEMO[3:5]
    pods = {w.key: [f"{w.name}-{i}" for i in range(3)] for w in workloads}
    rows = inventory(workloads, pods)
    assert rows[1] == {
        "namespace": "shop",
        "kind": "Deployment",
        "name": "legacy",
        "pods": ["legacy-0", "legacy-1", "legacy-2"],
        "vpa": "custom-recommender",
    }
    assert format_inventory(rows).splitlines() == [
        "NAMESPACE  KIND        NAME        PODS  VPA RECOMMENDER",
        "shop       DaemonSet   node-agent  3     vpa-fleet",
        "shop       Deployment  legacy      3     custom-recommender",
    ]
