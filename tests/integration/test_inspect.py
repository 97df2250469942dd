"""Acceptance of `vpa-fleet inspect`, `vpa-fleet explain` and the gRPC API on the real testbed:
the demo workloads with 8 days of history in a real Prometheus, one tick of the real loop
writing VPA statuses and RecommenderCheckpoints on a real API server, then

- `vpa-fleet inspect -A -o json` (and `kubectl vpa-fleet`) lists every VPA of ours with the
  values of its status, and the requests its pods run with;
- `vpa-fleet explain` shows numbers from which the status target is recomputed by hand:
  percentile of the histogram, margin, pod minimum, then the policy's caps;
- the API serves the same, reflection lists the service, a call without the token is
  refused, and TLS with client certificates works."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from analytics.histogram_layout import EPSILON
from analytics.quantity import format_memory_bytes, parse_cpu_millicores, parse_memory_bytes
from analytics.sources.prometheus import PrometheusHistory, load_config
from recommender.api.client import ClientError, ClientTls, InspectionClient
from recommender.api.generated.vpafleet.v1 import inspection_pb2 as pb
from recommender.api.generated.vpafleet.v1 import inspection_pb2_grpc as pb_grpc
from recommender.api.serve import start_api
from recommender.api.server import SERVICE_NAME, RunningServer, StatusBoard
from recommender.inspection.source import ClusterInspector
from recommender.kube.rest import KubeClient, load_api_client
from recommender.kube.status_writer import vpa_path
from recommender.loop.cluster import ClusterRecommender, LoopOptions
from recommender.policy.objects import API_PATH as POLICY_API
from recommender.settings import load_settings
from recommender.vpa.objects import InvalidVpaError, parse_vpa
from testbed import binaries
from testbed.cluster import ControlPlane
from testbed.demo import DEMO, start_demo
from testbed.pki import create_pki, issue_serving_cert

HISTORY = dt.timedelta(days=8)
TOKEN = "inspect-test-token"
BIN = Path(sys.executable).parent


@dataclass
class Scene:
    kube: KubeClient
    kubeconfig: Path
    prefix: str
    shop: str
    batch: str
    now: dt.datetime
    prometheus_url: str


def _patch(kube: KubeClient, namespace: str, name: str, body: dict[str, Any]) -> None:
    kube.request(
        "PATCH",
        vpa_path(namespace, name),
        body=body,
        content_type="application/merge-patch+json",
    )


@pytest.fixture(scope="module")
def scene(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    kube = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    prefix = f"i{uuid.uuid4().hex[:4]}-"
    shop, batch = f"{prefix}shop", f"{prefix}batch"
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    demo = start_demo(
        tmp_path_factory.mktemp("inspect-prometheus"),
        kube,
        DEMO,
        namespace_prefix=prefix,
        end=now - dt.timedelta(minutes=10),
    )
    try:
        # Caps that bite: web's CPU above 100m is cut; every other container of web gets at
        # least 1Gi of memory (envoy uses ~60Mi). A label to select reports by.
        policy = {
            "containerPolicies": [
                {"containerName": "web", "maxAllowed": {"cpu": "100m"}},
                {"containerName": "*", "minAllowed": {"memory": "1Gi"}},
            ]
        }
        _patch(kube, shop, "web", {"spec": {"resourcePolicy": policy}})
        _patch(kube, batch, "reports", {"metadata": {"labels": {"team": "data"}}})
        # The data team's VPAs get the percentile strategy and a memory cap of their own.
        kube.request(
            "POST",
            f"{POLICY_API}/namespaces/{batch}/recommenderpolicies",
            body={
                "apiVersion": "vpa-fleet.io/v1alpha1",
                "kind": "RecommenderPolicy",
                "metadata": {"name": "data-team", "namespace": batch},
                "spec": {
                    "vpaSelector": {"matchLabels": {"team": "data"}},
                    "strategy": "percentile",
                    "maxAllowed": {"memory": "512Mi"},
                },
            },
        )
        config = load_config({"connection": {"url": demo.prometheus.url}, "cluster": "testbed"})
        options = LoopOptions(cluster="testbed", namespaces=(shop, batch), history=HISTORY)
        recommender = ClusterRecommender(
            kube, PrometheusHistory(config), options, clock=lambda: now
        )
        recommender.start()
        try:
            report = recommender.tick()
            assert not report.errors, report.errors
            assert recommender.checkpoint() == 6
        finally:
            recommender.stop()
        yield Scene(kube, control_plane.kubeconfig, prefix, shop, batch, now, demo.prometheus.url)
    finally:
        demo.stop()


def _cli(*args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(  # noqa: PLW1510 - the exit code is asserted
        [str(BIN / "vpa-fleet"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _ours_in_status(kube: KubeClient) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    """Every VPA of ours in the cluster, as its status holds its recommendations (those that
    are not valid VPAs, which other tests leave behind, are no one's)."""
    items, _ = kube.list_all("/apis/autoscaling.k8s.io/v1/verticalpodautoscalers")
    found = {}
    for item in items:
        names = [r.get("name") for r in item["spec"].get("recommenders") or []]
        if "vpa-fleet" not in names:
            continue
        try:
            parse_vpa(item)
        except InvalidVpaError:
            continue
        entries = ((item.get("status") or {}).get("recommendation") or {}).get(
            "containerRecommendations"
        ) or []
        found[(item["metadata"]["namespace"], item["metadata"]["name"])] = {
            e["containerName"]: {
                "target": e["target"],
                "lower_bound": e["lowerBound"],
                "upper_bound": e["upperBound"],
                "uncapped_target": e["uncappedTarget"],
            }
            for e in entries
        }
    return found


def _listed(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    return {
        (r["namespace"], r["name"]): {
            c["container"]: {
                field: c[field]
                for field in ("target", "lower_bound", "upper_bound", "uncapped_target")
            }
            for c in r["containers"]
        }
        for r in rows
    }


# -- inspect -----------------------------------------------------------------------------------


def test_inspect_json_lists_every_vpa_of_ours_with_its_status(scene: Scene) -> None:
    rows = json.loads(_cli("inspect", "-A", "-o", "json", "--kubeconfig", str(scene.kubeconfig)))
    expected = _ours_in_status(scene.kube)
    assert _listed(rows) == expected
    mine = {k for k in expected if k[0] in (scene.shop, scene.batch)}
    assert mine == {(scene.shop, n) for n in ("web", "cart", "redis", "node-agent")} | {
        (scene.batch, n) for n in ("etl", "reports")
    }
    assert all(expected[k] for k in mine), "every VPA of ours has a recommendation"
    web = next(r for r in rows if (r["namespace"], r["name"]) == (scene.shop, "web"))
    assert (web["target_kind"], web["target_name"], web["pods"]) == ("Deployment", "web", 3)
    containers = {c["container"]: c for c in web["containers"]}
    # The demo's web container requests 0.5 CPU and 512 MiB (testbed/demo.py).
    assert containers["web"]["requests"] == {"cpu": "500m", "memory": "512Mi"}
    target = containers["web"]["target"]
    saved = (500 - parse_cpu_millicores(target["cpu"])) * 3
    assert containers["web"]["savings"]["cpu"] == saved


def test_inspect_narrows_by_namespace_and_label_and_prints_a_table(scene: Scene) -> None:
    rows = json.loads(
        _cli("inspect", "-n", scene.batch, "-o", "json", "--kubeconfig", str(scene.kubeconfig))
    )
    assert sorted(r["name"] for r in rows) == ["etl", "reports"]
    rows = json.loads(
        _cli(
            "inspect", "-A", "-l", "team=data", "-o", "json", "--kubeconfig", str(scene.kubeconfig)
        )
    )
    assert [(r["namespace"], r["name"]) for r in rows] == [(scene.batch, "reports")]
    table = _cli("inspect", "-n", scene.shop, "--kubeconfig", str(scene.kubeconfig))
    header, *lines = table.splitlines()
    assert header.split() == [
        "NAMESPACE", "VPA", "WORKLOAD", "CONTAINER", "PODS", "REQUESTS", "TARGET", "LOWER",
        "UPPER", "SAVINGS",
    ]  # fmt: skip
    assert len(lines) == 5  # web (2 containers), cart, redis, node-agent
    assert not any("legacy" in line or "payments" in line for line in lines)
    csv_text = _cli("inspect", "-n", scene.shop, "-o", "csv", "--kubeconfig", str(scene.kubeconfig))
    assert csv_text.splitlines()[0].startswith("cluster,namespace,vpa,workload,container")


def test_kubectl_runs_the_plugin(scene: Scene) -> None:
    kubectl = binaries.path("kube", "kubectl")
    result = subprocess.run(  # noqa: PLW1510 - the exit code is asserted
        [str(kubectl), "vpa-fleet", "inspect", "-n", scene.batch, "-o", "json",
         "--kubeconfig", str(scene.kubeconfig)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(r["name"] for r in json.loads(result.stdout)) == ["etl", "reports"]


# -- explain -----------------------------------------------------------------------------------


def _percentile_by_hand(resource: dict[str, Any], percentile: float) -> float:
    """Upstream's walk over the buckets shown: from the lowest bucket holding at least epsilon
    up to the highest, the end of the first where the running sum reaches p x total."""
    buckets = list(resource["buckets"])
    significant = [i for i, b in enumerate(buckets) if b["weight"] >= EPSILON]
    lowest, highest = significant[0], significant[-1]
    threshold = percentile * resource["total_weight"]
    partial = 0.0
    index = lowest
    while index < highest:
        partial += buckets[index]["weight"]
        if partial >= threshold:
            break
        index += 1
    return float(buckets[index]["end"])


def _explain(scene: Scene, vpa: str, container: str) -> dict[str, Any]:
    out = _cli(
        "explain", vpa, container, "-o", "json", "--kubeconfig", str(scene.kubeconfig),
        "--cluster", "testbed",
    )  # fmt: skip
    return dict(json.loads(out))


def _status_target(scene: Scene, namespace: str, name: str, container: str) -> dict[str, str]:
    vpa = scene.kube.get(vpa_path(namespace, name))
    entries = vpa["status"]["recommendation"]["containerRecommendations"]
    return dict(next(e for e in entries if e["containerName"] == container)["target"])


def test_explain_reproduces_the_target_by_hand_with_a_max_cap(scene: Scene) -> None:
    explanation = _explain(scene, f"{scene.shop}/web", "web")
    assert explanation["matches_status"] is True
    assert explanation["strategy"] == "vpa"
    assert int(explanation["sample_count"]) > 0 and 7.5 < explanation["history_days"] <= 8.0
    assert explanation["containers_in_pod"] == 2
    cpu, memory = explanation["resources"]
    n = explanation["containers_in_pod"]

    # CPU: p90 of the usage histogram (cores), in millicores, +15%, at least 25m split over
    # the pod's 2 containers, then web's maxAllowed 100m.
    millis = math.trunc(_percentile_by_hand(cpu, 0.9) * 1000.0)
    uncapped = max(millis + math.trunc(millis * 0.15), math.trunc(25 / n))
    assert cpu["target"]["uncapped"] == str(uncapped)  # int64 is a string in JSON
    assert uncapped > 100, "the cap must bite for this test to mean anything"
    assert [c["field"] for c in cpu["target"]["caps"]] == ["maxAllowed"]
    # Memory: p90 of the peaks' histogram (bytes), +15%, at least 250Mi / 2; no cap for web.
    peak = math.trunc(_percentile_by_hand(memory, 0.9))
    memory_target = max(peak + math.trunc(peak * 0.15), math.trunc(250 * 1024 * 1024 / n))
    assert memory["target"]["caps"] == []

    status = _status_target(scene, scene.shop, "web", "web")
    assert status == {"cpu": "100m", "memory": format_memory_bytes(memory_target)}
    vpa = scene.kube.get(vpa_path(scene.shop, "web"))
    uncapped_status = next(
        e for e in vpa["status"]["recommendation"]["containerRecommendations"]
        if e["containerName"] == "web"
    )["uncappedTarget"]  # fmt: skip
    assert parse_cpu_millicores(uncapped_status["cpu"]) == uncapped


def test_explain_shows_a_min_cap_of_the_star_policy(scene: Scene) -> None:
    explanation = _explain(scene, f"{scene.shop}/web", "envoy")
    memory = explanation["resources"][1]
    peak = math.trunc(_percentile_by_hand(memory, 0.9))
    uncapped = max(peak + math.trunc(peak * 0.15), math.trunc(250 * 1024 * 1024 / 2))
    assert uncapped < parse_memory_bytes("1Gi")
    assert [(c["field"], c["quantity"], c["source"]) for c in memory["target"]["caps"]] == [
        ("minAllowed", "1Gi", "containerPolicy *")
    ]
    assert _status_target(scene, scene.shop, "web", "envoy")["memory"] == "1Gi"
    assert explanation["matches_status"] is True


def test_explain_follows_the_recommender_policy_of_the_vpa(scene: Scene) -> None:
    explanation = _explain(scene, f"{scene.batch}/reports", "reports")
    assert explanation["policy"] == f"{scene.batch}/data-team"
    assert explanation["strategy"] == "percentile" and explanation["matches_status"] is True
    cpu, memory = explanation["resources"]
    # percentile: p95 of CPU usage + 15%, no confidence scaling; one container per pod.
    millis = math.trunc(_percentile_by_hand(cpu, 0.95) * 1000.0)
    assert cpu["target"]["uncapped"] == str(max(millis + math.trunc(millis * 0.15), 25))
    assert [s["kind"] for s in cpu["upper_bound"]["steps"]] == [
        "percentile",
        "margin",
        "pod-minimum",
    ]
    assert [(c["field"], c["quantity"], c["source"]) for c in memory["target"]["caps"]] == [
        ("maxAllowed", "512Mi", f"RecommenderPolicy {scene.batch}/data-team")
    ]
    assert _status_target(scene, scene.batch, "reports", "reports")["memory"] == "512Mi"


def test_explain_of_a_container_with_oom_kills_and_its_text(scene: Scene) -> None:
    out = _cli(
        "explain", f"{scene.shop}/cart", "-o", "json", "--kubeconfig", str(scene.kubeconfig),
        "--prometheus-url", scene.prometheus_url, "--cluster", "testbed",
    )  # fmt: skip
    explanation = json.loads(out)
    assert explanation["matches_status"] is True
    kills = explanation["oom_events"]
    # testbed/demo.py: cart (2 replicas) has 2 OOM kills in its history; request 256Mi.
    assert kills and all(k["pod"].startswith("cart-") for k in kills), kills
    assert {k["memory_request"] for k in kills} == {str(256 * 1024 * 1024)}
    text = _cli("explain", f"{scene.shop}/cart", "--kubeconfig", str(scene.kubeconfig))
    assert "histogram (bucket, weight, cumulative, bar):" in text
    assert "<target p90" in text and "#" in text
    assert "the written target is exactly the VPA's status target" in text


def test_explain_errors_name_what_is_wrong(scene: Scene) -> None:
    result = subprocess.run(  # noqa: PLW1510 - the exit code is asserted
        [str(BIN / "vpa-fleet"), "explain", f"{scene.shop}/web", "--kubeconfig",
         str(scene.kubeconfig)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"{scene.shop}/web: name a container" in result.stderr
    assert "envoy, web" in result.stderr
    result = subprocess.run(  # noqa: PLW1510 - the exit code is asserted
        [str(BIN / "vpa-fleet"), "explain", f"{scene.shop}/legacy", "--kubeconfig",
         str(scene.kubeconfig)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1 and "is not ours" in result.stderr


# -- the API -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(scene: Scene, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    token = tmp_path_factory.mktemp("api") / "token"
    token.write_text(TOKEN + "\n")
    settings = load_settings(
        None,
        {
            "cluster": "testbed",
            "kubeconfig": str(scene.kubeconfig),
            "api.enabled": True,
            "api.listen": "127.0.0.1:0",
            "api.token_file": str(token),
        },
    )
    server = start_api(settings, StatusBoard())
    try:
        yield server
    finally:
        server.stop(0)


def test_reflection_lists_the_service(api: RunningServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{api.port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        metadata = (("authorization", f"Bearer {TOKEN}"),)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = list(stub.ServerReflectionInfo(iter([request]), metadata=metadata))
        assert SERVICE_NAME in {s.name for s in answer.list_services_response.service}
        # The service's descriptor, as grpcurl reads it to call methods by name.
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAME)
        (answer,) = list(stub.ServerReflectionInfo(iter([request]), metadata=metadata))
        assert answer.file_descriptor_response.file_descriptor_proto


def test_a_request_without_the_token_is_refused(api: RunningServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{api.port}") as channel:
        stub = pb_grpc.InspectionStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListRecommendations(pb.ListRecommendationsRequest(), timeout=30)
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    wrong = subprocess.run(  # noqa: PLW1510 - the exit code is asserted
        [str(BIN / "vpa-fleet"), "inspect", "-A", "--server", f"127.0.0.1:{api.port}",
         "--token", "not-the-token"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert wrong.returncode == 1 and "UNAUTHENTICATED: wrong bearer token" in wrong.stderr
    right = _cli(
        "inspect", "-A", "-o", "json", "--server", f"127.0.0.1:{api.port}", "--token", TOKEN
    )
    assert json.loads(right)
    result = subprocess.run(  # noqa: PLW1510 - the exit code is asserted
        [str(BIN / "vpa-fleet"), "inspect", "-A", "--server", f"127.0.0.1:{api.port}"],
        capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if k != "VPA_FLEET_API_TOKEN"},
    )  # fmt: skip
    assert result.returncode == 1 and "UNAUTHENTICATED" in result.stderr


def test_the_api_serves_what_the_cluster_holds(scene: Scene, api: RunningServer) -> None:
    address = f"127.0.0.1:{api.port}"
    direct = json.loads(_cli("inspect", "-A", "-o", "json", "--kubeconfig", str(scene.kubeconfig)))
    served = json.loads(
        _cli("inspect", "-A", "-o", "json", "--server", address, env={"VPA_FLEET_API_TOKEN": TOKEN})
    )
    for rows in (direct, served):
        for row in rows:
            row["cluster"] = "-"  # direct mode names the cluster after the context
    assert served == direct
    assert _listed(served) == _ours_in_status(scene.kube)
    explained = json.loads(
        _cli(
            "explain", f"{scene.shop}/web", "web", "-o", "json", "--server", address,
            env={"VPA_FLEET_API_TOKEN": TOKEN},
        )
    )  # fmt: skip
    assert explained == _explain(scene, f"{scene.shop}/web", "web")
    with InspectionClient(address, token=TOKEN) as client:
        pages = list(client.recommendations(namespace=scene.shop))
        assert [r.name for r in pages] == ["cart", "node-agent", "redis", "web"]
        with pytest.raises(ClientError, match=r"NOT_FOUND: .*legacy is not ours"):
            client.recommendation(scene.shop, "legacy")
        with pytest.raises(ClientError, match="NOT_FOUND"):
            client.explain(scene.shop, "nothing-here", "app")
        assert client.recommendation(scene.batch, "etl").containers[0].container == "etl"
        assert list(client.actions()) == []
        assert [c.name for c in client.fleet_status().clusters] == ["testbed"]
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.InspectionStub(channel)
        metadata = (("authorization", f"Bearer {TOKEN}"),)
        first = stub.ListRecommendations(
            pb.ListRecommendationsRequest(namespace=scene.shop, page_size=3), metadata=metadata
        )
        assert len(first.recommendations) == 3 and first.next_page_token
        rest = stub.ListRecommendations(
            pb.ListRecommendationsRequest(
                namespace=scene.shop, page_size=3, page_token=first.next_page_token
            ),
            metadata=metadata,
        )
        assert [r.name for r in rest.recommendations] == ["web"] and not rest.next_page_token


def test_the_api_over_mutual_tls(scene: Scene, tmp_path: Path) -> None:
    pki = create_pki(tmp_path / "pki")
    cert, key = issue_serving_cert(tmp_path, "api", pki.ca_cert, pki.ca_key, ["127.0.0.1"])
    token = tmp_path / "token"
    token.write_text(TOKEN)
    settings = load_settings(
        None,
        {
            "cluster": "testbed",
            "kubeconfig": str(scene.kubeconfig),
            "api.enabled": True,
            "api.listen": "127.0.0.1:0",
            "api.token_file": str(token),
            "api.tls_cert_file": str(cert),
            "api.tls_key_file": str(key),
            "api.client_ca_file": str(pki.ca_cert),
        },
    )
    server = start_api(settings, StatusBoard())
    try:
        address = f"127.0.0.1:{server.port}"
        tls = ClientTls(pki.ca_cert, pki.admin_cert, pki.admin_key)
        with InspectionClient(address, token=TOKEN, tls=tls) as client:
            assert [r.name for r in client.recommendations(namespace=scene.batch)] == [
                "etl",
                "reports",
            ]
        no_certificate = InspectionClient(address, token=TOKEN, tls=ClientTls(pki.ca_cert))
        plaintext = InspectionClient(address, token=TOKEN)
        for client in (no_certificate, plaintext):
            with client, pytest.raises(ClientError, match="UNAVAILABLE"):
                client.fleet_status()
        out = _cli(
            "inspect", "-n", scene.batch, "-o", "json", "--server", address,
            "--ca-file", str(pki.ca_cert), "--cert-file", str(pki.admin_cert),
            "--key-file", str(pki.admin_key), env={"VPA_FLEET_API_TOKEN": TOKEN},
        )  # fmt: skip
        assert sorted(r["name"] for r in json.loads(out)) == ["etl", "reports"]
    finally:
        server.stop(0)


def test_a_long_scan_tells_its_progress(scene: Scene) -> None:
    lines: list[str] = []
    mine = {scene.shop, scene.batch}
    inspector = ClusterInspector("testbed", scene.kube, serves=mine.__contains__)
    inspector.progress = lines.append
    found = inspector.recommendations()
    assert len(found) == 6
    pods = {ns: len(scene.kube.list_all(f"/api/v1/namespaces/{ns}/pods")[0]) for ns in mine}
    assert lines == [
        f"[1/2] {scene.batch}: 2 VPA(s), {pods[scene.batch]} pod(s)",
        f"[2/2] {scene.shop}: 4 VPA(s), {pods[scene.shop]} pod(s)",
    ]
