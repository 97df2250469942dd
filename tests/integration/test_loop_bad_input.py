"""Bad input to the loop on the real testbed: each problem gets upstream's condition or a log
line that names it, the other VPAs are written, and nothing already written is lost."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from analytics.sources.prometheus import PrometheusHistory, load_config
from recommender.kube.rest import JSON, MERGE_PATCH, KubeClient, load_api_client
from recommender.kube.status_writer import vpa_path
from recommender.loop.cluster import ClusterRecommender, LoopOptions, TickReport
from recommender.vpa.safety import SafetyLimits
from testbed.cluster import ControlPlane
from testbed.demo import Demo, DemoWorkload, start_demo, vpa_manifest
from testbed.process import free_port
from testbed.series import MI, ContainerSpec
from tests.integration.kube_helpers import eventually

APP = ContainerSpec("app", 0.2, 200 * MI, 0.25, 256 * MI)


@dataclass
class Setup:
    kube: KubeClient
    demo: Demo
    namespace: str
    now: dt.datetime
    first: TickReport

    def recommender(self, prometheus_url: str, now: dt.datetime) -> ClusterRecommender:
        return _recommender(self.kube, self.namespace, prometheus_url, now)

    def vpa(self, name: str) -> JSON:
        return self.kube.get(vpa_path(self.namespace, name))


def _recommender(
    kube: KubeClient, namespace: str, prometheus_url: str, now: dt.datetime
) -> ClusterRecommender:
    config = load_config({"connection": {"url": prometheus_url, "timeout_s": 5}})
    options = LoopOptions(namespaces=(namespace,), history=dt.timedelta(days=1))
    return ClusterRecommender(
        kube, PrometheusHistory(config), options, checkpoints=False, clock=lambda: now
    )


def _conditions(vpa: JSON) -> dict[str, tuple[str, str]]:
    return {
        c["type"]: (c["status"], c.get("message", ""))
        for c in vpa.get("status", {}).get("conditions", [])
    }


def _create_vpa(kube: KubeClient, namespace: str, manifest: JSON) -> None:
    kube.request(
        "POST",
        f"/apis/autoscaling.k8s.io/v1/namespaces/{namespace}/verticalpodautoscalers",
        body=manifest,
    )


@pytest.fixture(scope="module")
def setup(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    kube = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    namespace = f"bad-{uuid.uuid4().hex[:5]}"
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    workloads = (
        DemoWorkload("Deployment", namespace, "good", 1, (APP,)),
        DemoWorkload("Deployment", namespace, "idle", 0, (APP,)),
    )
    demo = start_demo(
        tmp_path_factory.mktemp("bad-input"),
        kube,
        workloads,
        days=0.5,
        end=now - dt.timedelta(minutes=10),
    )
    try:
        unknown = vpa_manifest(namespace, "unknown-kind", "Deployment")
        unknown["spec"]["targetRef"] = {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "name": "w",
        }
        _create_vpa(kube, namespace, unknown)
        _create_vpa(kube, namespace, vpa_manifest(namespace, "missing", "Deployment"))
        recommender = _recommender(kube, namespace, demo.prometheus.url, now)
        recommender.start()
        try:
            first = recommender.tick()
        finally:
            recommender.stop()
        yield Setup(kube, demo, namespace, now, first)
    finally:
        demo.stop()


def test_the_good_vpa_is_written_whatever_the_others_do(setup: Setup) -> None:
    good = setup.vpa("good")
    assert _conditions(good) == {"RecommendationProvided": ("True", "")}
    assert good["status"]["recommendation"]["containerRecommendations"][0]["containerName"] == "app"
    assert setup.first.errors == []


def test_an_unknown_target_kind_is_config_unsupported(setup: Setup) -> None:
    conditions = _conditions(setup.vpa("unknown-kind"))
    status, message = conditions["ConfigUnsupported"]
    assert status == "True"
    assert message.startswith("Cannot read targetRef. Reason: unhandled targetRef example.com/v1")
    assert conditions["RecommendationProvided"][0] == "False"


def test_a_missing_target_is_config_unsupported(setup: Setup) -> None:
    conditions = _conditions(setup.vpa("missing"))
    assert conditions["ConfigUnsupported"] == (
        "True",
        f"Cannot read targetRef. Reason: Deployment {setup.namespace}/missing does not exist",
    )


def test_a_selector_matching_no_pod_says_so(setup: Setup) -> None:
    conditions = _conditions(setup.vpa("idle"))
    assert conditions["NoPodsMatched"] == ("True", "No pods match this VPA object")
    assert conditions["RecommendationProvided"] == ("False", "No pods match this VPA object")
    assert "ConfigUnsupported" not in conditions


def test_prometheus_down_keeps_what_was_written_says_history_is_stale_then_reads_the_gap(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    good = PrometheusHistory(load_config({"connection": {"url": setup.demo.prometheus.url}}))
    down = PrometheusHistory(load_config({"connection": {"url": dead, "timeout_s": 5}}))
    t1, t2, t3 = (setup.now + dt.timedelta(minutes=m) for m in (5, 10, 15))
    recommender = setup.recommender(setup.demo.prometheus.url, t1)
    recommender.start()
    try:
        recommender.tick()
        before = setup.vpa("good")
        assert "HistoryStale" not in _conditions(before)
        ends = dict(recommender.history_end)
        assert ends[(setup.namespace, "good")] == t1

        recommender.prometheus, recommender.clock = down, lambda: t2
        with caplog.at_level(logging.ERROR):
            report = recommender.tick()
            again = recommender.tick()
        assert {r.outcome for r in report.results} == {"skipped"}
        assert report.errors and dead in report.errors[0]
        assert any("cannot connect" in r.getMessage() for r in caplog.records)
        assert recommender.history_end == ends, "the gap is still to be read"
        stale = setup.vpa("good")
        assert stale["status"]["recommendation"] == before["status"]["recommendation"]
        status, message = _conditions(stale)["HistoryStale"]
        assert status == "True"
        assert dead in message
        conditions = {c["type"]: c for c in stale["status"]["conditions"]}
        assert conditions["HistoryStale"]["lastTransitionTime"] == t2.strftime("%Y-%m-%dT%H:%M:%SZ")
        # The same failure again writes nothing new: the condition already says it.
        assert {r.outcome for r in again.results} == {"skipped"}
        assert (
            setup.vpa("good")["metadata"]["resourceVersion"] == stale["metadata"]["resourceVersion"]
        )

        # Back: the gap [t1, t3) is read in one window, and the condition goes.
        recommender.prometheus, recommender.clock = good, lambda: t3
        queries = good.query_count
        back = recommender.tick()
        assert {r.outcome for r in back.results if r.key.endswith("/good")} <= {
            "written",
            "unchanged",
        }
        assert recommender.history_end[(setup.namespace, "good")] == t3
        assert good.query_count > queries
        assert "HistoryStale" not in _conditions(setup.vpa("good"))
    finally:
        recommender.stop()


def test_a_vpa_that_does_not_parse_is_reported_and_skipped(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # The CRD's schema lets a condition status through that the VPA API does not allow.
    broken = vpa_manifest(setup.namespace, "broken", "Deployment", target_name="good")
    _create_vpa(setup.kube, setup.namespace, broken)
    status = {
        "conditions": [
            {"type": "RecommendationProvided", "status": "Perhaps", "lastTransitionTime": None}
        ]
    }
    setup.kube.request(
        "PATCH",
        vpa_path(setup.namespace, "broken") + "/status",
        body={"status": status},
        content_type="application/merge-patch+json",
    )
    before = setup.vpa("good")
    recommender = setup.recommender(setup.demo.prometheus.url, setup.now + dt.timedelta(minutes=1))
    recommender.start()
    try:
        with caplog.at_level(logging.ERROR):
            report = recommender.tick()
    finally:
        recommender.stop()
    keys = {r.key for r in report.results}
    assert f"{setup.namespace}/broken" not in keys
    assert f"{setup.namespace}/good" in keys
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        f"{setup.namespace}/broken" in m and "status.conditions.0.status" in m for m in messages
    )
    after = setup.vpa("good")
    assert after["status"]["recommendation"] == before["status"]["recommendation"]
    # And a Warning Event on the VPA says the same, for `kubectl describe`.
    events = setup.kube.get(
        f"/api/v1/namespaces/{setup.namespace}/events",
        fieldSelector="involvedObject.name=broken",
    )["items"]
    (event,) = [e for e in events if e["reason"] == "InvalidVerticalPodAutoscaler"]
    assert event["type"] == "Warning"
    assert event["involvedObject"]["kind"] == "VerticalPodAutoscaler"
    assert "status.conditions.0.status" in event["message"]
    assert event["source"]["component"] == "vpa-fleet-recommender"


def test_a_fixed_target_is_resolved_again_at_once(setup: Setup) -> None:
    namespace = setup.namespace
    _create_vpa(
        setup.kube, namespace, vpa_manifest(namespace, "typo", "Deployment", target_name="goood")
    )
    recommender = setup.recommender(setup.demo.prometheus.url, setup.now + dt.timedelta(minutes=1))
    recommender.start()
    try:
        recommender.tick()
        assert "ConfigUnsupported" in _conditions(setup.vpa("typo"))
        setup.kube.request(
            "PATCH",
            vpa_path(namespace, "typo"),
            body={"spec": {"targetRef": {"name": "good"}}},
            content_type="application/merge-patch+json",
        )

        def seen_fixed() -> bool:
            return any(
                vpa.spec.target_ref is not None and vpa.spec.target_ref.name == "good"
                for key, vpa in recommender.our_vpas().items()
                if key == (namespace, "typo")
            )

        eventually(seen_fixed, 30, "the watch to deliver the fixed VPA")
        recommender.tick()  # same clock: only the new generation makes it resolve again
    finally:
        recommender.stop()
    conditions = _conditions(setup.vpa("typo"))
    assert "ConfigUnsupported" not in conditions
    assert conditions["RecommendationProvided"] == ("True", "")


def test_status_writes_refused_by_the_server_are_reported_and_retried_next_tick(
    setup: Setup,
) -> None:
    # A validating webhook that cannot be reached makes the real API server answer 500 to
    # every status write in this namespace.
    namespace = setup.namespace
    webhook_path = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
    name = f"refuse-{namespace}"
    setup.kube.request(
        "POST",
        webhook_path,
        body={
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [
                {
                    "name": "refuse.vpa-fleet.io",
                    "clientConfig": {"url": f"https://127.0.0.1:{free_port()}/refuse"},
                    "rules": [
                        {
                            "apiGroups": ["autoscaling.k8s.io"],
                            "apiVersions": ["v1"],
                            "operations": ["UPDATE"],
                            "resources": ["verticalpodautoscalers/status"],
                        }
                    ],
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": namespace}
                    },
                    "failurePolicy": "Fail",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 2,
                }
            ],
        },
    )
    late = vpa_manifest(namespace, "late", "Deployment", target_name="good")
    _create_vpa(setup.kube, namespace, late)
    recommender = setup.recommender(setup.demo.prometheus.url, setup.now + dt.timedelta(minutes=3))
    recommender.writer.backoff_s = 0.1
    recommender.start()
    try:
        refused = recommender.tick()
        setup.kube.request("DELETE", f"{webhook_path}/{name}")
        eventually(
            lambda: not [r for r in recommender.tick().results if r.outcome == "error"],
            60,
            "status writes to succeed once the webhook is gone",
        )
    finally:
        recommender.stop()
    outcome = {r.key: r for r in refused.results}[f"{namespace}/late"]
    assert outcome.outcome == "error"
    assert "500" in outcome.message
    assert _conditions(setup.vpa("late"))["RecommendationProvided"] == ("True", "")


def test_the_safety_guards_hold_a_falling_target_back_to_the_configured_step(
    setup: Setup,
) -> None:
    # A status written earlier with far larger targets; the engine now recommends much less.
    vpa = setup.vpa("good")
    status = vpa["status"]
    (entry,) = status["recommendation"]["containerRecommendations"]
    huge = {"cpu": "100", "memory": "100Gi"}
    entry.update(target=huge, upperBound=huge)
    setup.kube.request(
        "PATCH",
        vpa_path(setup.namespace, "good") + "/status",
        body={"status": status},
        content_type=MERGE_PATCH,
    )
    config = load_config({"connection": {"url": setup.demo.prometheus.url}})
    options = LoopOptions(
        namespaces=(setup.namespace,),
        history=dt.timedelta(days=1),
        safety=SafetyLimits(max_decrease=0.5),
    )
    now = setup.now + dt.timedelta(minutes=20)
    recommender = ClusterRecommender(
        setup.kube, PrometheusHistory(config), options, checkpoints=False, clock=lambda: now
    )
    recommender.start()
    try:
        report = recommender.tick()
    finally:
        recommender.stop()
    assert {r.key: r.outcome for r in report.results}[f"{setup.namespace}/good"] == "written"
    (written,) = setup.vpa("good")["status"]["recommendation"]["containerRecommendations"]
    assert written["target"] == {"cpu": "50", "memory": "50Gi"}
    assert written["uncappedTarget"]["memory"] != "50Gi", "the engine's own value is kept"
    assert written["upperBound"] == written["target"], "bounds widened around the held target"
