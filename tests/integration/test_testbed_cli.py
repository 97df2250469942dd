"""`python -m testbed up|status|down`: everything comes up on loopback, says where it is,
and goes away again without leaving a process behind. `up` deploys the demo workloads and
gives Prometheus history for exactly their pods; `up --no-demo` deploys nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from testbed import binaries
from testbed.demo import DEMO
from testbed.ray_local import ray_pids
from testbed.series import DEFAULT_SPEC, SyntheticHistory


def _testbed(command: str, state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "testbed", command, *args],
        env={**os.environ, "VPA_FLEET_TESTBED_DIR": str(state_dir)},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _kubectl_json(kubeconfig: str, *args: str) -> Any:
    kubectl = subprocess.run(
        [str(binaries.path("kube", "kubectl")), "--kubeconfig", kubeconfig, *args, "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert kubectl.returncode == 0, kubectl.stderr
    return json.loads(kubectl.stdout)


def _series_pods(prometheus_url: str) -> set[tuple[str, str]]:
    """(namespace, pod) of every container working-set series Prometheus holds."""
    query = 'count by (namespace, pod) (container_memory_working_set_bytes{container!=""})'
    url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as response:
        result = json.load(response)["data"]["result"]
    return {(r["metric"]["namespace"], r["metric"]["pod"]) for r in result}


@pytest.mark.parametrize("demo", [True, False], ids=["demo", "no-demo"])
def test_up_status_down(tmp_path: Path, demo: bool) -> None:
    state_dir = tmp_path / "tb"
    up = _testbed("up", state_dir, "--history-days", "1", *([] if demo else ["--no-demo"]))
    try:
        assert up.returncode == 0, up.stderr
        state = json.loads((state_dir / "state.json").read_text())
        for key in ("kubeconfig", "prometheus_url", "ray_dashboard_url"):
            assert str(state[key]) in up.stdout
        status = _testbed("status", state_dir)
        assert status.returncode == 0
        assert _testbed("up", state_dir).returncode == 1, "a second up must refuse"

        nodes = _kubectl_json(state["kubeconfig"], "get", "nodes")["items"]
        assert sorted(n["metadata"]["name"] for n in nodes) == [f"kwok-node-{i}" for i in range(3)]
        with urllib.request.urlopen(f"{state['prometheus_url']}/-/ready", timeout=5) as ready:
            assert ready.status == 200
        with urllib.request.urlopen(f"{state['ray_dashboard_url']}/", timeout=10) as dashboard:
            assert dashboard.status == 200

        pods = _kubectl_json(state["kubeconfig"], "get", "pods", "--all-namespaces")["items"]
        running = {
            (p["metadata"]["namespace"], p["metadata"]["name"])
            for p in pods
            if p["status"].get("phase") == "Running"
        }
        if demo:
            deployed = {(row["namespace"], pod) for row in state["demo"] for pod in row["pods"]}
            replicas = sum(w.replicas for w in DEMO if w.kind != "DaemonSet")
            assert len(deployed) == replicas + 3  # and one pod per node for the DaemonSet
            assert running == deployed
            assert _series_pods(state["prometheus_url"]) == deployed
            assert [(r["namespace"], r["name"]) for r in state["demo"]] == [w.key for w in DEMO]
            for output in (up.stdout, status.stdout):
                assert "demo workloads in namespaces batch, shop" in output
                assert "custom-recommender" in output
                assert "(no spec.recommenders)" in output
            vpas = _kubectl_json(state["kubeconfig"], "get", "vpa", "--all-namespaces")["items"]
            assert len(vpas) == len(DEMO)
        else:
            assert state["demo"] == []
            assert not running, "--no-demo deploys nothing"
            generated = SyntheticHistory.generate(DEFAULT_SPEC, days=0.01)
            assert _series_pods(state["prometheus_url"]) == {
                (c.namespace, c.pod) for c in generated.containers
            }
            assert "demo workloads" not in up.stdout
        got = _testbed("get", state_dir, "prometheus_url")
        assert got.stdout.strip() == state["prometheus_url"]
        assert _testbed("get", state_dir, "nothing").returncode == 1
        assert Path(state["etcd_data"]).is_dir()
    finally:
        down = _testbed("down", state_dir)
    assert down.returncode == 0, down.stderr
    for pgid in state["process_groups"]:
        assert not Path(f"/proc/{pgid}").exists(), f"process {pgid} outlived `down`"
    leftovers = [p for p in state["ray_pids"] if Path(f"/proc/{p}").exists()]
    leftovers += ray_pids(Path(state["ray_temp_dir"]), state["ray_address"])
    assert not leftovers, f"Ray processes outlived `down`: {leftovers}"
    assert not state_dir.exists()
    assert not Path(state["etcd_data"]).exists(), "etcd's data (in memory) outlived `down`"
