"""`vpa-fleet run` with the actuator on, as users run it (embedded Ray, the testbed's API
server and Prometheus with backfilled history): after the tick that writes the
recommendation, the actuator of the Ray actor acts on it. A single-replica Deployment (which
the stock updater never touches) whose requests are far above its usage is first planned in
dry-run, changing nothing, then rolled out with the recommendation."""

from __future__ import annotations

import datetime as dt
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from recommender.kube.rest import JSON, KubeClient, load_api_client
from recommender.kube.status_writer import vpa_path
from testbed.cluster import ControlPlane
from testbed.demo import Demo, DemoWorkload, start_demo
from testbed.series import container
from tests.integration.runs import run_argv

# Uses 50m and 64Mi, asks for 1 CPU and 1Gi: outside any bound the engine gives it.
SOLO = DemoWorkload("Deployment", "act", "solo", 1, (container("solo", 0.05, 64, 1.0, 1024),))


@pytest.fixture(scope="module")
def demo(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    kube = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    running = start_demo(
        tmp_path_factory.mktemp("actuator-run"),
        kube,
        (SOLO,),
        days=2,
        namespace_prefix=f"a{uuid.uuid4().hex[:4]}-",
        end=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10),
    )
    try:
        yield running
    finally:
        running.stop()


def _run(plane: ControlPlane, demo: Demo, namespace: str, *settings: str) -> str:
    sets = [arg for item in settings for arg in ("--set", item)]
    argv = run_argv(
        plane.kubeconfig,
        demo.prometheus.url,
        [namespace],
        "--once",
        "--set",
        "history_days=2",
        "--set",
        "metrics.enabled=false",
        *sets,
    )
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _events(kube: KubeClient, namespace: str, reason: str, uid: str) -> list[JSON]:
    items, _ = kube.list_all(
        f"/api/v1/namespaces/{namespace}/events",
        fieldSelector=f"reason={reason},involvedObject.uid={uid}",
    )
    return items


def test_run_plans_then_rolls_out(control_plane: ControlPlane, demo: Demo) -> None:
    kube = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    [workload] = demo.workloads
    namespace = workload.namespace
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/solo"
    before = kube.get(path)

    planned = _run(control_plane, demo, namespace, "actuator.enabled=true", "actuator.dry_run=true")
    assert f"{namespace}/solo written: " in planned
    assert f"actuator planned: Deployment {namespace}/solo would be rolled out (dry run)" in (
        planned
    ), planned
    assert "actuator: 1 decision(s), 0 rollout(s), 0 error(s)" in planned
    after = kube.get(path)
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert _events(kube, namespace, "RolloutPlannedByVpaFleet", after["metadata"]["uid"])

    rolled = _run(control_plane, demo, namespace, "actuator.enabled=true")
    assert f"actuator rollout: Deployment {namespace}/solo rolled out" in rolled, rolled
    recommendation = kube.get(vpa_path(namespace, "solo"))["status"]["recommendation"]
    [entry] = recommendation["containerRecommendations"]
    template = kube.get(path)["spec"]["template"]["spec"]["containers"][0]
    assert template["resources"]["requests"]["cpu"] == entry["target"]["cpu"]
    assert kube.get(path)["metadata"]["generation"] == before["metadata"]["generation"] + 1
    vpa_uid = kube.get(vpa_path(namespace, "solo"))["metadata"]["uid"]
    [event] = _events(kube, namespace, "RolledOutByVpaFleet", vpa_uid)
    assert "fewer than the updater's min-replicas 2" in event["message"]
