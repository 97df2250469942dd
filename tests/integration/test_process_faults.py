"""`vpa-fleet run` processes under faults, on the testbed with an embedded Ray: killed with
SIGKILL while it writes (as a node failure or an OOM kill of its pod would), it leaves no
partial or unreadable status or checkpoint, and the next process goes on from the checkpoints;
two replicas run at once with leader election, and only the Lease holder writes."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from analytics.model_params import ModelParams
from recommender.kube.checkpoints import CheckpointStore
from recommender.kube.rest import KubeClient, load_api_client
from recommender.kube.status_writer import vpa_path
from recommender.vpa.objects import parse_vpa
from testbed.cluster import ControlPlane
from testbed.demo import Demo, DemoWorkload, start_demo
from testbed.series import MI, ContainerSpec
from tests.integration.runs import run_argv

APP = ContainerSpec("app", 0.1, 100 * MI, 0.1, 128 * MI)
WORKLOADS = 30


@dataclass
class Cluster:
    kube: KubeClient
    kubeconfig: Path
    demo: Demo
    namespace: str

    def names(self) -> list[str]:
        return [w.name for w in self.demo.workloads]

    def argv(self, *extra: str) -> list[str]:
        return run_argv(
            self.kubeconfig,
            self.demo.prometheus.url,
            [self.namespace],
            "--set",
            "metrics.enabled=false",
            *extra,
        )


@pytest.fixture(scope="module")
def cluster(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    kube = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    namespace = f"pf-{uuid.uuid4().hex[:5]}"
    workloads = tuple(
        DemoWorkload("Deployment", namespace, f"w{i:02d}", 1, (APP,)) for i in range(WORKLOADS)
    )
    demo = start_demo(
        tmp_path_factory.mktemp("process-faults"),
        kube,
        workloads,
        days=0.5,
        step_s=300,
        end=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10),
    )
    try:
        yield Cluster(kube, control_plane.kubeconfig, demo, namespace)
    finally:
        demo.stop()


class Output:
    """A process' merged output, read in the background, with a wait for a line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def wait_for(self, text: str, timeout_s: float = 240) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return any(text in line for line in self.lines)
                self._changed.wait(min(left, 1.0))
            return True

    def text(self) -> str:
        with self._changed:
            return "".join(self.lines)


def _start(argv: list[str]) -> tuple[subprocess.Popen[str], Output]:
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,  # its own process group: the kill takes its Ray along, as a pod's
    )
    return process, Output(process)


def _kill(process: subprocess.Popen[str]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            _kill(process)


def test_sigkill_while_writing_leaves_nothing_partial_and_the_next_process_goes_on(
    cluster: Cluster,
) -> None:
    process, output = _start(cluster.argv("--tick-interval", "1"))
    try:
        assert output.wait_for("restored the history of"), output.text()[-3000:]
        # Somewhere in the first ticks: their status writes, checkpoints and the next reads.
        time.sleep(random.Random(7).uniform(0.0, 3.0))
    finally:
        _kill(process)
    # Every status is whole (it parses as a VPA, recommendation and conditions together) and
    # every checkpoint reads back.
    for name in cluster.names():
        vpa = parse_vpa(cluster.kube.get(vpa_path(cluster.namespace, name)))
        if vpa.status.recommendation is not None:
            assert vpa.status.recommendation.container_recommendations
            assert {c.type for c in vpa.status.conditions} >= {"RecommendationProvided"}
    store = CheckpointStore(cluster.kube, "vpa-fleet", params=ModelParams())
    checkpoints, problems = store.load([cluster.namespace])
    assert problems == []

    after = subprocess.run(
        cluster.argv("--once"), capture_output=True, text=True, timeout=300, check=False
    )
    assert after.returncode == 0, after.stdout[-3000:] + after.stderr[-3000:]
    assert f"restored the history of {len(checkpoints)} VPA(s)" in after.stdout
    for name in cluster.names():
        vpa = parse_vpa(cluster.kube.get(vpa_path(cluster.namespace, name)))
        assert vpa.status.recommendation is not None, name


def test_two_replicas_only_the_lease_holder_writes_and_the_other_takes_over(
    cluster: Cluster,
) -> None:
    lease = f"lease-{uuid.uuid4().hex[:5]}"
    election = [
        "--leader-elect",
        "--set",
        f"leader_election.lease_name={lease}",
        "--set",
        f"leader_election.lease_namespace={cluster.namespace}",
        "--tick-interval",
        "2",
    ]
    first, first_out = _start(cluster.argv(*election, "--set", "leader_election.identity=one"))
    second = None
    try:
        assert first_out.wait_for("tick 1:"), first_out.text()[-3000:]
        second, second_out = _start(
            cluster.argv(*election, "--set", "leader_election.identity=two")
        )
        assert second_out.wait_for("waiting for the lease"), second_out.text()[-3000:]
        assert first_out.wait_for("tick 3:"), first_out.text()[-3000:]
        assert "tick " not in second_out.text(), "the follower never ticks while the leader lives"
        holder = cluster.kube.get(
            f"/apis/coordination.k8s.io/v1/namespaces/{cluster.namespace}/leases/{lease}"
        )["spec"]["holderIdentity"]
        assert holder == "one"

        _stop(first)  # releases the Lease on the way out
        assert first.returncode == 0, first_out.text()[-3000:]
        assert second_out.wait_for("tick 1:", timeout_s=120), second_out.text()[-3000:]
        holder = cluster.kube.get(
            f"/apis/coordination.k8s.io/v1/namespaces/{cluster.namespace}/leases/{lease}"
        )["spec"]["holderIdentity"]
        assert holder == "two"
    finally:
        _stop(first)
        if second is not None:
            _stop(second)
