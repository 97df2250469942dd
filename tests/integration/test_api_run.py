"""`vpa-fleet run` serves the gRPC API while it runs: after its first tick, FleetStatus reports
the tick, `inspect --server` lists what it wrote, and `explain --server` reproduces the
status from the checkpoint it saved; Ctrl-C stops the API with the loop."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from recommender.api.client import ClientError, InspectionClient
from recommender.kube.rest import KubeClient, load_api_client
from recommender.kube.status_writer import vpa_path
from testbed.cluster import ControlPlane
from testbed.demo import DEMO, Demo, start_demo
from testbed.process import free_port

BIN = Path(sys.executable).parent
TOKEN = "run-api-token"


@dataclass
class Running:
    kube: KubeClient
    demo: Demo
    address: str
    output: list[str]


def _cli(*args: str) -> str:
    result = subprocess.run(
        [str(BIN / "vpa-fleet"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "VPA_FLEET_API_TOKEN": TOKEN},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def running(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    kube = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    work = tmp_path_factory.mktemp("api-run")
    demo = start_demo(
        work,
        kube,
        DEMO,
        namespace_prefix=f"a{uuid.uuid4().hex[:4]}-",
        end=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10),
    )
    token = work / "token"
    token.write_text(TOKEN)
    address = f"127.0.0.1:{free_port()}"
    ray_temp = Path(tempfile.mkdtemp(prefix="vfapi-", dir="/tmp"))  # Ray's sockets: short
    namespaces = [a for ns in sorted({w.namespace for w in demo.workloads}) for a in ("-n", ns)]
    argv = [
        str(BIN / "vpa-fleet"), "run", "--kubeconfig", str(control_plane.kubeconfig),
        "--prometheus-url", demo.prometheus.url, "--cluster", "testbed", *namespaces,
        "--tick-interval", "600", "--set", f"ray.dashboard_port={free_port()}",
        "--set", "ray.num_cpus=1", "--set", f"ray.temp_dir={ray_temp}",
        "--set", "api.enabled=true", "--set", f"api.listen={address}",
        "--set", f"api.token_file={token}",
    ]  # fmt: skip
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("checkpointed "):
                break
        assert any(line.startswith("tick 1:") for line in lines), "".join(lines)
        yield Running(kube, demo, address, lines)
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=120)
        lines.append(rest)
        demo.stop()
    assert process.returncode == 0, "".join(lines)[-3000:]


def test_run_prints_where_the_api_listens(running: Running) -> None:
    assert f"gRPC API:       {running.address}" in "".join(running.output)


def test_fleet_status_reports_the_tick(running: Running) -> None:
    with InspectionClient(running.address, token=TOKEN) as client:
        status = client.fleet_status()
    (cluster,) = status.clusters
    assert status.mode == "cluster" and cluster.name == "testbed"
    assert cluster.vpas == 6 and cluster.errors == 0
    assert 0 <= cluster.lag_seconds < 600 and cluster.last_tick
    with InspectionClient(running.address) as client, pytest.raises(ClientError):
        client.fleet_status()


def test_inspect_and_explain_through_the_running_recommender(running: Running) -> None:
    rows = json.loads(_cli("inspect", "-A", "-o", "json", "--server", running.address))
    ours = sorted(
        (w.namespace, w.name)
        for w in running.demo.workloads
        if w.vpa is not None and w.vpa.recommender == "vpa-fleet"
    )
    assert sorted((r["namespace"], r["name"]) for r in rows) == ours
    for row in rows:
        assert row["cluster"] == "testbed"
        status = running.kube.get(vpa_path(row["namespace"], row["name"]))["status"]
        entries = status["recommendation"]["containerRecommendations"]
        assert {c["container"]: c["target"] for c in row["containers"]} == {
            e["containerName"]: e["target"] for e in entries
        }
    namespace = next(ns for ns, name in ours if name == "cart")
    explained = json.loads(
        _cli("explain", f"{namespace}/cart", "-o", "json", "--server", running.address)
    )
    assert explained["matches_status"] is True
    assert explained["cluster"] == "testbed" and explained["container"] == "cart"
    # The running recommender has Prometheus: the demo's OOM kills of cart are there.
    assert explained["oom_events"]


def test_only_the_namespaces_it_serves_are_shown(running: Running) -> None:
    namespace = f"other-{uuid.uuid4().hex[:6]}"
    running.kube.request(
        "POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                            "metadata": {"name": namespace}},
    )  # fmt: skip
    running.kube.request(
        "POST",
        f"/apis/autoscaling.k8s.io/v1/namespaces/{namespace}/verticalpodautoscalers",
        body={
            "apiVersion": "autoscaling.k8s.io/v1",
            "kind": "VerticalPodAutoscaler",
            "metadata": {"name": "elsewhere"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                "recommenders": [{"name": "vpa-fleet"}],
            },
        },
    )
    with InspectionClient(running.address, token=TOKEN) as client:
        assert namespace not in {r.namespace for r in client.recommendations()}
        with pytest.raises(ClientError, match=f"namespace {namespace} is not served"):
            client.recommendation(namespace, "elsewhere")
