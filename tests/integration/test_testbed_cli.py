"""`python -m testbed up|status|down`: everything comes up on loopback, says where it is,
and goes away again without leaving a process behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from testbed import binaries
from testbed.ray_local import ray_pids


def _testbed(command: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "testbed", command, "--history-days", "1"]
        if command == "up"
        else [sys.executable, "-m", "testbed", command],
        env={**os.environ, "VPA_FLEET_TESTBED_DIR": str(state_dir)},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_up_status_down(tmp_path: Path) -> None:
    state_dir = tmp_path / "tb"
    up = _testbed("up", state_dir)
    try:
        assert up.returncode == 0, up.stderr
        state = json.loads((state_dir / "state.json").read_text())
        for key in ("kubeconfig", "prometheus_url", "ray_dashboard_url"):
            assert str(state[key]) in up.stdout
        assert _testbed("status", state_dir).returncode == 0
        assert _testbed("up", state_dir).returncode == 1, "a second up must refuse"

        kubectl_bin = str(binaries.path("kube", "kubectl"))
        kubectl = subprocess.run(
            [kubectl_bin, "--kubeconfig", state["kubeconfig"], "get", "nodes", "-o", "name"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert kubectl.stdout.count("node/kwok-node-") == 3, kubectl.stderr
        with urllib.request.urlopen(f"{state['prometheus_url']}/-/ready", timeout=5) as ready:
            assert ready.status == 200
        with urllib.request.urlopen(f"{state['ray_dashboard_url']}/", timeout=10) as dashboard:
            assert dashboard.status == 200
    finally:
        down = _testbed("down", state_dir)
    assert down.returncode == 0, down.stderr
    for pgid in state["process_groups"]:
        assert not Path(f"/proc/{pgid}").exists(), f"process {pgid} outlived `down`"
    leftovers = [p for p in state["ray_pids"] if Path(f"/proc/{p}").exists()]
    leftovers += ray_pids(Path(state["ray_temp_dir"]), state["ray_address"])
    assert not leftovers, f"Ray processes outlived `down`: {leftovers}"
    assert not state_dir.exists()
