"""The loop with strategy `default` on the real testbed (kube-apiserver, Prometheus with
backfilled history): its store keeps the hourly profile, the recommendations written are what
`vpa-fleet recommend` computes from the same samples (profile included), the checkpoints hold
the profile, and a restart restores it: the recommendations after the restart are those of a
recommender that never stopped."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl
import pytest

from analytics.estimation import recommend_rows
from analytics.ingest import ingest_samples
from analytics.snapshot import decode_profile
from analytics.sources.prometheus import PrometheusHistory, PrometheusSourceConfig, load_config
from analytics.store import AggregateStore
from analytics.strategies import build_estimators
from analytics.strategy_profile import HourlyProfile
from analytics.trace import recommend_trace
from analytics.usage import prepare_samples
from recommender.kube.checkpoints import CheckpointStore, checkpoint_path
from recommender.kube.rest import JSON, KubeClient, load_api_client
from recommender.kube.status_writer import vpa_path
from recommender.loop.cluster import ClusterRecommender, LoopOptions, TickReport
from recommender.policy.objects import API_PATH
from testbed.cluster import ControlPlane
from testbed.demo import DEMO, Demo, start_demo
from tests.integration.kube_helpers import eventually

HISTORY = dt.timedelta(days=3)
# A daily cycle (two containers) and spiky usage with OOM kills: the profile's hours matter.
WORKLOADS = tuple(w for w in DEMO if w.namespace == "shop" and w.name in {"web", "cart"})


@dataclass
class Bed:
    kube: KubeClient
    demo: Demo
    config: PrometheusSourceConfig
    options: LoopOptions
    now: dt.datetime
    first: TickReport
    first_written: dict[str, dict[str, dict[str, dict[str, str]]]]  # by VPA name
    first_profile: dict[str, HourlyProfile]  # by workload/container, after the first tick
    later: dt.datetime
    continued: TickReport  # the same recommender, one tick later
    continued_profile: dict[str, HourlyProfile]

    @property
    def namespace(self) -> str:
        return self.options.namespaces[0]

    def recommender(self, now: dt.datetime) -> ClusterRecommender:
        return ClusterRecommender(
            self.kube, PrometheusHistory(self.config), self.options, clock=lambda: now
        )


@pytest.fixture(scope="module")
def bed(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    kube = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    # History ends more than Prometheus' 5-minute lookback before now (see test_loop.py).
    demo = start_demo(
        tmp_path_factory.mktemp("loop-profile-prometheus"),
        kube,
        WORKLOADS,
        days=HISTORY.days,
        step_s=120,
        namespace_prefix=f"p{uuid.uuid4().hex[:4]}-",
        end=now - dt.timedelta(minutes=10),
    )
    try:
        config = load_config({"connection": {"url": demo.prometheus.url}, "cluster": "testbed"})
        namespace = demo.workloads[0].namespace
        options = LoopOptions(
            cluster="testbed", namespaces=(namespace,), history=HISTORY, strategy="default"
        )
        moments = [now]
        recommender = ClusterRecommender(
            kube, PrometheusHistory(config), options, clock=lambda: moments[-1]
        )
        recommender.start()
        try:
            first = recommender.tick()
            first_written = {
                w.name: _written(kube.get(vpa_path(namespace, w.name))) for w in demo.workloads
            }
            first_profile = _profile_rows(recommender)
            recommender.checkpoint()
            # Three minutes later, without a restart: what a restart must reproduce.
            later = now + dt.timedelta(minutes=3)
            moments.append(later)
            continued = recommender.tick()
            continued_profile = _profile_rows(recommender)
        finally:
            recommender.stop()
        yield Bed(
            kube,
            demo,
            config,
            options,
            now,
            first,
            first_written,
            first_profile,
            later,
            continued,
            continued_profile,
        )
    finally:
        demo.stop()


def _usage(bed: Bed) -> pl.DataFrame:
    """The namespace's history as the loop reads it, as a usage frame of our workloads."""
    workload_of = {pod: name for (_, name), pods in bed.demo.pods.items() for pod in pods}
    requests = {
        (w.name, c.name): float(c.memory_request_bytes)
        for w in bed.demo.workloads
        for c in w.containers
    }
    frames = []
    with PrometheusHistory(bed.config) as prometheus:
        history = prometheus.fetch(bed.namespace, bed.now - HISTORY, bed.now)
    for frame, oom in ((history.samples, False), (history.oom_kills, True)):
        rows = [
            {
                "timestamp": row["timestamp"],
                "cluster": "testbed",
                "namespace": bed.namespace,
                "workload": workload_of[row["pod"]],
                "pod": row["pod"],
                "container": row["container"],
                "cpu": row.get("cpu"),
                "memory": row.get("memory"),
                "memory_request": requests[(workload_of[row["pod"]], row["container"])]
                if oom
                else None,
                "oom": oom,
            }
            for row in frame.iter_rows(named=True)
            if row["pod"] in workload_of
        ]
        frames.append(pl.DataFrame(rows, schema_overrides={"cpu": pl.Float64}))
    return pl.concat([f for f in frames if f.height], how="diagonal_relaxed")


def _written(vpa: JSON) -> dict[str, dict[str, dict[str, str]]]:
    entries = vpa.get("status", {}).get("recommendation", {}).get("containerRecommendations", [])
    return {
        e["containerName"]: {f: e[f] for f in ("target", "lowerBound", "upperBound")}
        for e in entries
    }


def _profile_rows(recommender: ClusterRecommender) -> dict[str, HourlyProfile]:
    """The store's profile as one-row profiles (copies) by 'workload/container'."""
    profile, keys = recommender.store.profile, recommender.store.aggregate_keys
    assert profile is not None and len(profile) == keys.height
    return {
        f"{workload}/{container}": profile.take(np.array([row], dtype=np.int64))
        for row, (workload, container) in enumerate(
            keys.select("workload", "container").iter_rows()
        )
    }


def _bits_equal(a: HourlyProfile, b: HourlyProfile) -> bool:
    left, right = a.to_arrays(), b.to_arrays()
    return left.keys() == right.keys() and all(
        left[k].dtype == right[k].dtype and left[k].tobytes() == right[k].tobytes() for k in left
    )


def test_the_loop_writes_what_recommend_computes_with_the_profile(bed: Bed) -> None:
    assert bed.first.errors == []
    assert bed.first.writes == len(WORKLOADS)
    usage = _usage(bed)
    assert usage["oom"].any()  # kills reach the profile too
    expected: dict[str, dict[str, dict[str, dict[str, str]]]] = {}
    for r in recommend_trace(usage, "default"):
        entry = r.to_status_entry()
        expected.setdefault(r.workload, {})[r.container_name] = {
            f: entry[f]  # type: ignore[misc]
            for f in ("target", "lowerBound", "upperBound")
        }
    assert bed.first_written == expected
    # The same samples without the profile (histograms only) give other recommendations:
    # the profile is read, the comparison above is not vacuous.
    params, estimators = build_estimators("default")
    histograms = AggregateStore.empty(params.model_fields_only())
    samples = prepare_samples(usage)
    ingest_samples(histograms, samples)
    assert samples.end_ns is not None
    plain = recommend_rows(histograms, histograms.all_rows(), estimators, samples.end_ns)
    assert [r.to_status_entry() for r in plain.recommendations] != [
        r.to_status_entry() for r in recommend_trace(usage, "default")
    ]


def test_a_parity_loop_keeps_no_profile(bed: Bed) -> None:
    options = LoopOptions(cluster="testbed", namespaces=bed.options.namespaces, history=HISTORY)
    recommender = ClusterRecommender(
        bed.kube, PrometheusHistory(bed.config), options, checkpoints=False
    )
    assert recommender.store.profile is None


def test_checkpoints_hold_the_profile_of_each_container(bed: Bed) -> None:
    params, _ = build_estimators("default")
    loaded, problems = CheckpointStore(bed.kube, "vpa-fleet", params.model_fields_only()).load(
        [bed.namespace]
    )
    assert problems == []
    assert sorted(c.vpa_name for c in loaded) == sorted(w.name for w in WORKLOADS)
    containers = [s for c in loaded for s in c.aggregates]
    assert len(containers) == sum(len(w.containers) for w in WORKLOADS)
    for snapshot in containers:
        assert snapshot.profile is not None, snapshot.container
        profile = decode_profile(snapshot.profile, snapshot.container)
        assert int((profile.hour[0] >= 0).sum()) >= 24 * HISTORY.days - 1
        assert profile.cpu_count.sum() > 0


def test_a_restart_restores_the_profile_and_recommends_as_without_one(bed: Bed) -> None:
    restarted = bed.recommender(bed.later)
    restarted.start()
    try:
        restored = _profile_rows(restarted)
        report = restarted.tick()
        after = _profile_rows(restarted)
        store = restarted.store
    finally:
        restarted.stop()
    assert report.errors == []
    # What the checkpoint held is what the first tick had built ...
    assert sorted(restored) == sorted(bed.first_profile)
    for key, profile in restored.items():
        assert _bits_equal(profile, bed.first_profile[key]), key
    # ... and after the same three minutes, the restarted recommender holds exactly what the
    # one that never stopped holds, and recommends the same.
    assert sorted(after) == sorted(bed.continued_profile)
    for key, profile in after.items():
        assert _bits_equal(profile, bed.continued_profile[key]), key
    by_key = {r.key: r.recommendations for r in bed.continued.results}
    assert {r.key: r.recommendations for r in report.results} == by_key
    assert all(by_key.values())
    assert {r.outcome for r in report.results} == {"unchanged"}
    # Without the restored profile (an empty one) the same histograms give other numbers.
    _, estimators = build_estimators("default")
    now_ns = int(bed.later.timestamp()) * 1_000_000_000
    rows = store.all_rows()
    with_profile = recommend_rows(store, rows, estimators, now_ns).recommendations
    assert store.profile is not None
    store.profile = HourlyProfile.empty(store.n_aggregates, store.profile.slots)
    assert recommend_rows(store, rows, estimators, now_ns).recommendations != with_profile


def test_a_corrupt_profile_is_reported_and_the_checkpoint_still_loads(bed: Bed) -> None:
    params, _ = build_estimators("default")
    store = CheckpointStore(bed.kube, "vpa-fleet", params.model_fields_only())
    web = next(w for w in WORKLOADS if w.name == "web")
    original = bed.kube.get(checkpoint_path(bed.namespace, web.name))
    body = copy.deepcopy(original)
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
        body["metadata"].pop(key, None)
    body["metadata"]["name"] = "web-copy"
    body["spec"]["vpaName"] = "web-copy"
    containers = body["spec"]["containers"]
    assert all("profile" in c for c in containers)  # the API server kept the field
    containers[0]["profile"] = base64.b64encode(b"not a profile").decode()
    bed.kube.request("POST", checkpoint_path(bed.namespace), body=body)
    try:
        loaded, problems = store.load([bed.namespace])
    finally:
        bed.kube.request("DELETE", checkpoint_path(bed.namespace, "web-copy"))
    assert len(problems) == 1, problems
    name = containers[0]["name"]
    assert problems[0].startswith(
        f"RecommenderCheckpoint {bed.namespace}/web-copy: spec.containers: "
        f"container '{name}' (containers[0]): profile: "
    )
    assert problems[0].endswith("restored with an empty profile")
    copied = next(c for c in loaded if c.vpa_name == "web-copy")
    kept = next(c for c in loaded if c.vpa_name == "web")
    assert copied.aggregates[0].profile is None
    assert copied.aggregates[0].state == kept.aggregates[0].state
    assert copied.aggregates[1:] == kept.aggregates[1:]
    assert kept.aggregates[0].profile is not None


def test_a_policy_choosing_default_makes_a_parity_loop_keep_a_profile(bed: Bed) -> None:
    """Last in this module: the statuses it writes are those of the policy's settings."""
    options = LoopOptions(cluster="testbed", namespaces=bed.options.namespaces, history=HISTORY)
    recommender = ClusterRecommender(
        bed.kube,
        PrometheusHistory(bed.config),
        options,
        checkpoints=False,
        clock=lambda: bed.later,
    )
    recommender.start()
    policies = f"{API_PATH}/namespaces/{bed.namespace}/recommenderpolicies"
    try:
        assert recommender.store.profile is None
        bed.kube.request(
            "POST",
            policies,
            body={
                "apiVersion": "vpa-fleet.io/v1alpha1",
                "kind": "RecommenderPolicy",
                "metadata": {"name": "hourly", "namespace": bed.namespace},
                "spec": {"strategy": "default"},
            },
        )
        eventually(recommender.policies.policies, 30, "the policy in the recommender's cache")
        report = recommender.tick()
    finally:
        recommender.stop()
        bed.kube.request("DELETE", f"{policies}/hourly")
    assert report.errors == []
    profile = recommender.store.profile
    assert profile is not None and len(profile) == recommender.store.n_aggregates > 0
    # Kept before the tick ingested the VPAs' history: every container's hours are in it.
    assert (profile.cpu_count.sum(axis=1) > 0).all()
