"""`vpa-fleet run` as users run it, on the testbed with an embedded Ray: one tick writes the
recommendations, a restarted process restores them from checkpoints instead of refetching the
history, and Ctrl-C stops it cleanly, leaving no Ray process behind."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from recommender.kube.rest import JSON, KubeClient, load_api_client
from recommender.kube.status_writer import vpa_path
from testbed.cluster import ControlPlane
from testbed.demo import DEMO, Demo, start_demo
from testbed.ray_local import ray_pids
from tests.integration.runs import ray_temp_dir, run_argv


@dataclass
class Cluster:
    kube: KubeClient
    kubeconfig: Path
    demo: Demo
    namespaces: list[str]

    def ours(self) -> list[tuple[str, str]]:
        return sorted(
            (w.namespace, w.name)
            for w in self.demo.workloads
            if w.vpa is not None and w.vpa.recommender == "vpa-fleet"
        )

    def vpas(self) -> dict[tuple[str, str], JSON]:
        return {key: self.kube.get(vpa_path(*key)) for key in self.ours()}

    def argv(self, ray_temp: Path, *extra: str) -> list[str]:
        return run_argv(
            self.kubeconfig, self.demo.prometheus.url, self.namespaces, *extra, ray_temp=ray_temp
        )


@pytest.fixture(scope="module")
def cluster(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    kube = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    demo = start_demo(
        tmp_path_factory.mktemp("run-command"),
        kube,
        DEMO,
        namespace_prefix=f"r{uuid.uuid4().hex[:4]}-",
        end=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10),
    )
    try:
        namespaces = sorted({w.namespace for w in demo.workloads})
        yield Cluster(kube, control_plane.kubeconfig, demo, namespaces)
    finally:
        demo.stop()


def _queries(output: str) -> int:
    found = re.search(
        r"tick 1: \d+ VPA\(s\) in \d+ namespace\(s\), (\d+) Prometheus queries", output
    )
    assert found, output
    return int(found[1])


def test_a_restarted_process_restores_instead_of_refetching(cluster: Cluster) -> None:
    first = subprocess.run(
        cluster.argv(ray_temp_dir(), "--once"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert "restored the history of 0 VPA(s)" in first.stdout
    assert re.search(r"Ray dashboard:\s+http://127\.0\.0\.1:\d+", first.stdout)
    for namespace, name in cluster.ours():
        assert f"{namespace}/{name} written: " in first.stdout
    written = cluster.vpas()

    second = subprocess.run(
        cluster.argv(ray_temp_dir(), "--once"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"restored the history of {len(cluster.ours())} VPA(s)" in second.stdout
    # The bootstrap read 8 days (two chunks per metric); the restart only the minutes since.
    assert _queries(second.stdout) < _queries(first.stdout)
    assert " written: " not in second.stdout
    after = cluster.vpas()
    for key, vpa in written.items():
        assert after[key]["metadata"]["resourceVersion"] == vpa["metadata"]["resourceVersion"]
        assert after[key]["status"]["recommendation"] == vpa["status"]["recommendation"]


def test_ctrl_c_stops_cleanly(cluster: Cluster) -> None:
    ray_temp = ray_temp_dir()
    process = subprocess.Popen(
        cluster.argv(ray_temp, "--tick-interval", "2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("tick 2:"):
            break
    assert any(line.startswith("tick 2:") for line in lines), "".join(lines)
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=120)
    output = "".join(lines) + rest
    assert process.returncode == 0, output[-3000:]
    assert "SIGINT: finishing the current tick and stopping" in output
    assert "on the way out" in output
    time.sleep(1)
    assert ray_pids(ray_temp) == [], "Ray processes outlived vpa-fleet run"
