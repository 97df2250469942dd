"""The one-cluster loop on the real testbed: the demo workloads (Deployments, a StatefulSet, a
DaemonSet) with 8 days of history in a real Prometheus, VPAs naming vpa-fleet, another
recommender, or none; one tick writes exactly the engine's recommendations to ours and touches
nothing else; a restart restores history from checkpoints instead of refetching it."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl
import pytest

from analytics.sources.prometheus import PrometheusHistory, PrometheusSourceConfig, load_config
from analytics.trace import recommend_trace
from recommender.kube.checkpoints import CheckpointStore
from recommender.kube.rest import JSON, KubeClient, load_api_client
from recommender.kube.status_writer import vpa_path
from recommender.loop.cluster import ClusterRecommender, LoopOptions, TickReport
from testbed.cluster import ControlPlane
from testbed.demo import DEMO, Demo, start_demo

HISTORY = dt.timedelta(days=8)


@dataclass
class Loop:
    kube: KubeClient
    demo: Demo
    config: PrometheusSourceConfig
    options: LoopOptions
    now: dt.datetime
    before: dict[tuple[str, str], JSON]
    first: TickReport

    def recommender(self, now: dt.datetime) -> ClusterRecommender:
        return _recommender(self.kube, self.config, self.options, now)

    def vpa(self, namespace: str, name: str) -> JSON:
        return self.kube.get(vpa_path(namespace, name))


def _recommender(
    kube: KubeClient, config: PrometheusSourceConfig, options: LoopOptions, now: dt.datetime
) -> ClusterRecommender:
    return ClusterRecommender(
        kube,
        PrometheusHistory(config),
        options,
        clock=lambda: now,
    )


@pytest.fixture(scope="module")
def loop(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    kube = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    prefix = f"l{uuid.uuid4().hex[:4]}-"
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    # History ends before "now" by more than Prometheus' 5-minute lookback, so that no point
    # of the window repeats the last sample (backfilled series have no staleness markers).
    demo = start_demo(
        tmp_path_factory.mktemp("loop-prometheus"),
        kube,
        DEMO,
        namespace_prefix=prefix,
        end=now - dt.timedelta(minutes=10),
    )
    try:
        config = load_config({"connection": {"url": demo.prometheus.url}, "cluster": "testbed"})
        namespaces = tuple(sorted({w.namespace for w in demo.workloads}))
        options = LoopOptions(cluster="testbed", namespaces=namespaces, history=HISTORY)
        before = {
            (w.namespace, w.name): kube.get(vpa_path(w.namespace, w.name))
            for w in demo.workloads
            if w.vpa is not None
        }
        recommender = _recommender(kube, config, options, now)
        recommender.start()
        try:
            first = recommender.tick()
            recommender.checkpoint()
        finally:
            recommender.stop()
        yield Loop(kube, demo, config, options, now, before, first)
    finally:
        demo.stop()


def _ours(loop: Loop) -> list[tuple[str, str]]:
    return sorted(
        (w.namespace, w.name)
        for w in loop.demo.workloads
        if w.vpa is not None and w.vpa.recommender == "vpa-fleet"
    )


def _expected(loop: Loop) -> dict[tuple[str, str], dict[str, dict[str, dict[str, str]]]]:
    """What the engine recommends from the same Prometheus samples, mapped to workloads here."""
    workload_of = {
        (namespace, pod): name
        for (namespace, name), pods in loop.demo.pods.items()
        for pod in pods
        if (namespace, name) in _ours(loop)
    }
    requests = {
        (w.namespace, w.name, c.name): float(c.memory_request_bytes)
        for w in loop.demo.workloads
        for c in w.containers
    }
    frames = []
    with PrometheusHistory(loop.config) as prometheus:
        for namespace in loop.options.namespaces:
            history = prometheus.fetch(namespace, loop.now - HISTORY, loop.now)
            for frame, oom in ((history.samples, False), (history.oom_kills, True)):
                rows = []
                for row in frame.iter_rows(named=True):
                    name = workload_of.get((namespace, row["pod"]))
                    if name is None:
                        continue
                    rows.append(
                        {
                            "timestamp": row["timestamp"],
                            "cluster": "testbed",
                            "namespace": namespace,
                            "workload": name,
                            "pod": row["pod"],
                            "container": row["container"],
                            "cpu": row.get("cpu"),
                            "memory": row.get("memory"),
                            "memory_request": requests[(namespace, name, row["container"])]
                            if oom
                            else None,
                            "oom": oom,
                        }
                    )
                frames.append(pl.DataFrame(rows, schema_overrides={"cpu": pl.Float64}))
    usage = pl.concat([f for f in frames if f.height], how="diagonal_relaxed")
    expected: dict[tuple[str, str], dict[str, dict[str, dict[str, str]]]] = {}
    for r in recommend_trace(usage):
        entry = r.to_status_entry()
        expected.setdefault((r.namespace, r.workload), {})[r.container_name] = {
            field: entry[field]  # type: ignore[misc]
            for field in ("target", "lowerBound", "upperBound", "uncappedTarget")
        }
    return expected


def _written(vpa: JSON) -> dict[str, dict[str, dict[str, str]]]:
    entries = vpa.get("status", {}).get("recommendation", {}).get("containerRecommendations", [])
    return {
        e["containerName"]: {
            field: e[field] for field in ("target", "lowerBound", "upperBound", "uncappedTarget")
        }
        for e in entries
    }


def test_one_tick_writes_what_the_engine_computes_from_the_same_samples(loop: Loop) -> None:
    expected = _expected(loop)
    assert sorted(expected) == _ours(loop)  # every VPA of ours had history
    for namespace, name in _ours(loop):
        vpa = loop.vpa(namespace, name)
        assert _written(vpa) == expected[(namespace, name)], f"{namespace}/{name}"
        conditions = {c["type"]: c["status"] for c in vpa["status"]["conditions"]}
        assert conditions == {"RecommendationProvided": "True"}
    # Containers of every pod count: the web Deployment has two containers, the DaemonSet one.
    web = next(k for k in _ours(loop) if k[1] == "web")
    assert sorted(_written(loop.vpa(*web))) == ["envoy", "web"]
    assert loop.first.writes == len(_ours(loop))
    assert loop.first.errors == []


def test_vpas_of_others_are_untouched(loop: Loop) -> None:
    others = [key for key in loop.before if key not in _ours(loop)]
    assert {name for _, name in others} == {"legacy", "payments"}
    for key in others:
        after = loop.vpa(*key)
        version = after["metadata"]["resourceVersion"]
        assert version == loop.before[key]["metadata"]["resourceVersion"], key
        assert "status" not in after or not after["status"]


def test_queries_are_per_namespace_not_per_pod(loop: Loop) -> None:
    with PrometheusHistory(loop.config) as prometheus:
        per_namespace = sum(len(c) for c in prometheus.plan(loop.now - HISTORY, loop.now).values())
    assert loop.first.namespaces == 2
    assert loop.first.queries == 2 * per_namespace


def test_a_restart_restores_history_from_checkpoints(loop: Loop) -> None:
    before = {key: loop.vpa(*key) for key in _ours(loop)}
    later = loop.now + dt.timedelta(minutes=2)
    recommender = loop.recommender(later)
    recommender.start()
    try:
        restored = set(recommender.history_end)
        report = recommender.tick()
    finally:
        recommender.stop()
    assert restored == set(_ours(loop))
    # Only the two minutes since the checkpoint were read: one chunk per metric and namespace.
    with PrometheusHistory(loop.config) as prometheus:
        incremental = sum(len(c) for c in prometheus.plan(loop.now, later).values())
    assert report.queries == 2 * incremental < loop.first.queries
    assert {r.outcome for r in report.results} == {"unchanged"}
    for key in _ours(loop):
        after = loop.vpa(*key)
        assert after["metadata"]["resourceVersion"] == before[key]["metadata"]["resourceVersion"]
        assert _written(after) == _written(before[key])


def test_checkpoints_exist_for_each_vpa_of_ours(loop: Loop) -> None:
    loaded, problems = CheckpointStore(loop.kube, "vpa-fleet").load(loop.options.namespaces)
    assert problems == []
    assert sorted((c.namespace, c.vpa_name) for c in loaded) == _ours(loop)


def test_namespaces_hand_over_between_recommenders_through_checkpoints(loop: Loop) -> None:
    shop, batch = (
        next(ns for ns in loop.options.namespaces if ns.endswith(suffix))
        for suffix in ("shop", "batch")
    )
    later = loop.now + dt.timedelta(minutes=3)
    first = ClusterRecommender(
        loop.kube, PrometheusHistory(loop.config), loop.options, clock=lambda: later, owned={shop}
    )
    second = ClusterRecommender(
        loop.kube, PrometheusHistory(loop.config), loop.options, clock=lambda: later, owned={batch}
    )
    for recommender in (first, second):
        recommender.start()
    try:
        assert {key[0] for key in first.history_end} == {shop}
        assert {key[0] for key in second.history_end} == {batch}
        assert {r.key.split("/")[0] for r in first.tick().results} == {shop}
        # The second gives batch up (checkpointing it), the first takes it on (restoring it).
        restored_none, handed = second.own(set())
        assert (restored_none, second.history_end, second.store.n_aggregates) == (0, {}, 0)
        restored, _ = first.own({shop, batch})
        assert restored == handed == sum(1 for ns, _ in _ours(loop) if ns == batch)
        before = {key: loop.vpa(*key) for key in _ours(loop)}
        report = first.tick()
    finally:
        for recommender in (first, second):
            recommender.stop()
    assert {r.outcome for r in report.results} == {"unchanged"}
    assert len(report.results) == len(_ours(loop))
    for key in _ours(loop):
        assert (
            loop.vpa(*key)["metadata"]["resourceVersion"]
            == (before[key]["metadata"]["resourceVersion"])
        )
