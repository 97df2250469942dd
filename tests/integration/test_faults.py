"""Faults on the real testbed: the API server stopped in the middle of a tick (after the VPAs
were read, before the status writes) and started again; the tick ends with the failures
reported, nothing half-written, and the next ticks write every VPA and see new ones (the
watches come back by themselves)."""

from __future__ import annotations

import datetime as dt
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from analytics.sources.prometheus import NamespaceHistory, PrometheusHistory, load_config
from recommender.kube.rest import JSON, KubeClient, load_api_client
from recommender.kube.status_writer import vpa_path
from recommender.loop.cluster import ClusterRecommender, LoopOptions
from recommender.vpa.objects import parse_vpa
from testbed.cluster import ControlPlane, start_control_plane
from testbed.demo import Demo, DemoWorkload, start_demo, vpa_manifest
from testbed.series import MI, ContainerSpec

APP = ContainerSpec("app", 0.2, 200 * MI, 0.25, 256 * MI)


class StopsTheApiServer(PrometheusHistory):
    """The real Prometheus source, which stops the API server once, after its first fetch:
    the tick has read its VPAs and pods and is about to write."""

    def __init__(self, url: str, plane: ControlPlane) -> None:
        super().__init__(load_config({"connection": {"url": url}}))
        self.plane: ControlPlane | None = plane

    def fetch(self, namespace: str, start: dt.datetime, end: dt.datetime) -> NamespaceHistory:
        history = super().fetch(namespace, start, end)
        if self.plane is not None:
            self.plane.stop_apiserver()
            self.plane = None
        return history


@dataclass
class Setup:
    plane: ControlPlane
    kube: KubeClient
    demo: Demo
    namespace: str
    now: dt.datetime

    @property
    def namespaces(self) -> list[str]:
        return sorted({w.namespace for w in self.demo.workloads})

    def vpa(self, name: str) -> JSON:
        return self.kube.get(vpa_path(self.namespace, name))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    # A control plane of its own: the others' tests must not see their API server go away.
    plane = start_control_plane(Path(tmp_path_factory.mktemp("faults-plane")), nodes=1)
    try:
        kube = KubeClient(load_api_client(str(plane.kubeconfig)))
        namespace = f"faults-{uuid.uuid4().hex[:4]}"
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        workloads = tuple(
            DemoWorkload("Deployment", namespace, name, 1, (APP,)) for name in ("a", "b", "c")
        ) + tuple(DemoWorkload("Deployment", f"{namespace}-{i}", "d", 1, (APP,)) for i in range(3))
        demo = start_demo(
            tmp_path_factory.mktemp("faults"),
            kube,
            workloads,
            days=0.5,
            end=now - dt.timedelta(minutes=10),
        )
        try:
            yield Setup(plane, kube, demo, namespace, now)
        finally:
            demo.stop()
    finally:
        plane.stop()


def test_the_api_server_stopped_mid_tick(setup: Setup) -> None:
    options = LoopOptions(namespaces=(setup.namespace,), history=dt.timedelta(days=1))
    prometheus = StopsTheApiServer(setup.demo.prometheus.url, setup.plane)
    clock = [setup.now]
    recommender = ClusterRecommender(
        setup.kube, prometheus, options, checkpoints=True, clock=lambda: clock[0]
    )
    recommender.start()
    try:
        broken = recommender.tick()
        assert prometheus.plane is None, "the API server was stopped during the tick"
        assert broken.writes == 0
        assert {r.outcome for r in broken.results} == {"error"}
        assert len(broken.results) == 3, "every VPA is reported"

        setup.plane.start_apiserver()
        for name in ("a", "b", "c"):  # nothing half-written: no status at all yet
            assert "recommendation" not in setup.vpa(name).get("status", {})
        setup.kube.request(
            "POST",
            f"/apis/autoscaling.k8s.io/v1/namespaces/{setup.namespace}/verticalpodautoscalers",
            body=vpa_manifest(setup.namespace, "late", "Deployment", target_name="a"),
        )
        clock[0] += dt.timedelta(minutes=1)
        report = recommender.tick()
        # The watches resume with backoff (up to 30 s): a later tick sees the new VPA.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if {r.key.split("/")[1] for r in report.results} >= {"a", "b", "c", "late"}:
                break
            time.sleep(1)
            clock[0] += dt.timedelta(minutes=1)
            report = recommender.tick()
        written = {r.key.split("/")[1]: r.outcome for r in report.results}
        assert set(written) == {"a", "b", "c", "late"}
        assert not report.errors
        for name in ("a", "b", "c", "late"):
            vpa = parse_vpa(setup.vpa(name))
            assert vpa.status.recommendation is not None
            assert vpa.status.recommendation.container_recommendations
        saved = recommender.checkpoint()
        assert saved == 4
    finally:
        recommender.stop()


def test_a_silent_prometheus_costs_a_tick_two_timeouts_not_one_per_namespace(setup: Setup) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts connections in the kernel, never answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        prometheus = PrometheusHistory(load_config({"connection": {"url": url, "timeout_s": 0.5}}))
        options = LoopOptions(namespaces=tuple(setup.namespaces), history=dt.timedelta(days=1))
        recommender = ClusterRecommender(
            setup.kube, prometheus, options, checkpoints=False, clock=lambda: setup.now
        )
        recommender.start()
        try:
            report = recommender.tick()
        finally:
            recommender.stop()
    assert len(setup.namespaces) == 4
    assert prometheus.query_count == 2, "two namespaces asked, then no more"
    by_namespace: dict[str, set[str]] = {}
    for result in report.results:
        by_namespace.setdefault(result.key.split("/")[0], set()).add(result.outcome)
    assert set(by_namespace) == set(setup.namespaces)
    assert all(outcomes == {"skipped"} for outcomes in by_namespace.values())
    messages = {r.key.split("/")[0]: r.message for r in report.results}
    first, second, *rest = setup.namespaces
    assert "(timeout)" in messages[first] and "(timeout)" in messages[second]
    assert all("did not answer for the 2 namespaces before" in messages[ns] for ns in rest)
    assert len(report.errors) == 4
