"""`vpa-fleet run --fleet` serves the gRPC API: FleetStatus is the Coordinator's (every shard
with its actor and lag), and inspect / explain answer for the fleet's cluster by name."""

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
import yaml

from recommender.api.client import InspectionClient
from recommender.kube.rest import KubeClient, load_api_client
from recommender.kube.status_writer import vpa_path
from testbed.cluster import ControlPlane
from testbed.demo import DEMO, Demo, start_demo
from testbed.process import free_port

BIN = Path(sys.executable).parent
TOKEN = "fleet-api-token"


@dataclass
class RunningFleet:
    kube: KubeClient
    demo: Demo
    prefix: str
    address: str


@pytest.fixture(scope="module")
def running(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningFleet]:
    kube = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    work = tmp_path_factory.mktemp("api-fleet")
    prefix = f"q{uuid.uuid4().hex[:4]}-"
    demo = start_demo(
        work,
        kube,
        DEMO,
        days=7,
        namespace_prefix=prefix,
        end=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10),
    )
    fleet_file = work / "fleet.yaml"
    fleet_file.write_text(
        yaml.safe_dump(
            {
                "actors": 2,
                "tick_budget_s": 120,
                "clusters": [
                    {
                        "name": "one",
                        "kubeconfig": str(control_plane.kubeconfig),
                        "prometheus": {"connection": {"url": demo.prometheus.url}},
                        "include": [f"{prefix}*"],
                    }
                ],
            }
        )
    )
    token = work / "token"
    token.write_text(TOKEN)
    address = f"127.0.0.1:{free_port()}"
    ray_temp = tempfile.mkdtemp(prefix="vfqapi-", dir="/tmp")
    argv = [
        str(BIN / "vpa-fleet"), "run", "--fleet", str(fleet_file),
        "--kubeconfig", str(control_plane.kubeconfig), "--tick-interval", "600",
        "--set", f"ray.dashboard_port={free_port()}", "--set", f"ray.temp_dir={ray_temp}",
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
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("checkpointed "):
                break
        output = "".join(lines)
        assert "fleet tick 1:" in output and f"gRPC API:       {address}" in output, output
        yield RunningFleet(kube, demo, prefix, address)
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=120)
        lines.append(rest)
        demo.stop()
    assert process.returncode == 0, "".join(lines)[-3000:]


def test_fleet_status_is_the_coordinator_s(running: RunningFleet) -> None:
    with InspectionClient(running.address, token=TOKEN) as client:
        status = client.fleet_status()
    assert status.mode == "fleet" and status.ticks >= 1
    shards = {(s.cluster, s.namespace) for s in status.shards}
    assert shards == {("one", f"{running.prefix}shop"), ("one", f"{running.prefix}batch")}
    assert all(s.actor.startswith("shard-") and s.lag_seconds >= 0 for s in status.shards)
    held = sorted(shard for actor in status.actors for shard in actor.shards)
    assert held == sorted(f"one/{ns}" for _, ns in shards)
    (cluster,) = status.clusters
    assert (cluster.name, cluster.shards, cluster.discovery_error) == ("one", 2, "")


def test_inspect_and_explain_name_the_fleet_s_cluster(running: RunningFleet) -> None:
    env = {**os.environ, "VPA_FLEET_API_TOKEN": TOKEN}
    base = [str(BIN / "vpa-fleet")]
    listed = subprocess.run(
        [*base, "inspect", "-A", "-o", "json", "--server", running.address, "--cluster", "one"],
        capture_output=True, text=True, timeout=120, check=True, env=env,
    )  # fmt: skip
    rows = json.loads(listed.stdout)
    assert {(r["cluster"], r["namespace"]) for r in rows} == {
        ("one", f"{running.prefix}shop"),
        ("one", f"{running.prefix}batch"),
    }
    for row in rows:
        entries = running.kube.get(vpa_path(row["namespace"], row["name"]))["status"][
            "recommendation"
        ]["containerRecommendations"]
        assert {c["container"]: c["target"] for c in row["containers"]} == {
            e["containerName"]: e["target"] for e in entries
        }
    explained = subprocess.run(
        [*base, "explain", f"{running.prefix}batch/etl", "-o", "json", "--server",
         running.address],
        capture_output=True, text=True, timeout=120, check=True, env=env,
    )  # fmt: skip
    explanation = json.loads(explained.stdout)
    assert explanation["cluster"] == "one" and explanation["matches_status"] is True
