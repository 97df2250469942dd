"""Recommender checkpoints on the real API server: the CRD validates them, they round-trip
exactly, corrupt ones are reported, stale ones are collected and the VPA owns its checkpoint."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import uuid
from typing import Any

import numpy as np
import pytest
from kubernetes import client

from analytics.ingest import ingest_samples
from analytics.model_params import ModelParams
from analytics.snapshot import AggregateSnapshot, RunningSnapshot, export_workload, import_workload
from analytics.store import AggregateStore
from analytics.strategies import build_estimators
from analytics.usage import prepare_samples
from recommender.kube.checkpoints import (
    API_VERSION,
    KIND,
    RECOMMENDER_LABEL,
    Checkpoint,
    CheckpointStore,
    checkpoint_path,
)
from recommender.kube.rest import JSON, KubeApiError, KubeClient
from recommender.kube.status_writer import vpa_path
from testbed.cluster import ControlPlane
from tests.integration.kube_helpers import eventually, unique_namespace
from tests.unit.analytics.traces import mixed_trace

CRD_NAME = "recommendercheckpoints.vpa-fleet.io"
HISTORY_END = dt.datetime(2026, 11, 29, 12, 30, 15, 123456, tzinfo=dt.UTC)
UNSET = int(np.iinfo(np.int64).min)


# -- helpers ---------------------------------------------------------------------------------


def _create_vpa(kube: KubeClient, namespace: str, name: str) -> str:
    """A VPA naming our recommender; returns its uid."""
    created = kube.request(
        "POST",
        f"/apis/autoscaling.k8s.io/v1/namespaces/{namespace}/verticalpodautoscalers",
        body={
            "apiVersion": "autoscaling.k8s.io/v1",
            "kind": "VerticalPodAutoscaler",
            "metadata": {"name": name},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "recommenders": [{"name": "vpa-fleet"}],
            },
        },
    )
    return str(created["metadata"]["uid"])


def _history(seed: int) -> tuple[AggregateStore, tuple[AggregateSnapshot, ...]]:
    """A store with two days of workload prod/shop/api, and its snapshots with one more pod
    that has sent nothing yet (its times unset: the smallest int64)."""
    store = AggregateStore.empty()
    ingest_samples(store, prepare_samples(mixed_trace(seed, days=2)))
    exported = export_workload(store, "prod", "shop", "api")
    fresh = RunningSnapshot("api-new", UNSET, UNSET, UNSET, 0, 0)
    first = exported[0]
    return store, (
        AggregateSnapshot(first.container, first.state, (*first.running, fresh)),
        *exported[1:],
    )


def _checkpoint(
    namespace: str, name: str, uid: str, seed: int = 1, recommender: str = "vpa-fleet"
) -> Checkpoint:
    _, aggregates = _history(seed)
    return Checkpoint(namespace, name, uid, recommender, HISTORY_END, aggregates)


def _raw(kube: KubeClient, namespace: str, name: str) -> JSON:
    return kube.get(checkpoint_path(namespace, name))


def _object(
    namespace: str, name: str, spec: dict[str, Any], recommender: str = "vpa-fleet"
) -> JSON:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {RECOMMENDER_LABEL: recommender},
        },
        "spec": spec,
    }


def _valid_spec(name: str) -> dict[str, Any]:
    return {
        "vpaName": name,
        "vpaUID": "1234",
        "recommender": "vpa-fleet",
        "historyEnd": "2026-11-29T12:00:00Z",
        "formatVersion": 1,
        "containers": [
            {
                "name": "app",
                "formatVersion": 1,
                "state": base64.b64encode(b"state").decode(),
                "running": [
                    {
                        "pod": "web-1",
                        "lastCpuSampleStartNs": UNSET,
                        "windowEndNs": 1,
                        "lastMemorySampleStartNs": 2,
                        "memoryPeakBytes": 3,
                        "oomPeakBytes": 4,
                    }
                ],
            }
        ],
    }


# -- the CRD ---------------------------------------------------------------------------------


def test_crd_is_installed_and_prints_its_columns(
    kube_api: client.ApiClient, control_plane: ControlPlane
) -> None:
    kube = KubeClient(kube_api)
    crd = kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}")
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    assert crd["spec"]["names"]["shortNames"] == ["vfcp"]
    assert crd["spec"]["scope"] == "Namespaced"

    namespace = unique_namespace(kube_api, "cp-crd")
    uid = _create_vpa(kube, namespace, "web")
    CheckpointStore(kube, "vpa-fleet").save(_checkpoint(namespace, "web", uid))
    table = control_plane.kubectl("get", "vfcp", "-n", namespace).splitlines()
    assert table[0].split() == ["NAME", "VPA", "HISTORY", "END", "AGE"]
    assert table[1].split()[:2] == ["web", "web"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: s.update(formatVersion=0), "spec.formatVersion"),
        (lambda s: s.pop("vpaName"), "spec.vpaName"),
        (lambda s: s.pop("recommender"), "spec.recommender"),
        (lambda s: s.update(historyEnd="yesterday"), "spec.historyEnd"),
        (lambda s: s.update(historyEnd=None), "spec.historyEnd"),
        (lambda s: s["containers"][0].update(state="not base64!"), "spec.containers[0].state"),
        (lambda s: s["containers"][0].pop("name"), "spec.containers[0].name"),
        (lambda s: s["containers"][0].update(formatVersion=0), "spec.containers[0].formatVersion"),
        (
            lambda s: s["containers"][0]["running"][0].update(windowEndNs="1"),
            "spec.containers[0].running[0].windowEndNs",
        ),
        (
            lambda s: s["containers"][0]["running"][0].pop("oomPeakBytes"),
            "spec.containers[0].running[0].oomPeakBytes",
        ),
        (
            lambda s: s["containers"].append(copy.deepcopy(s["containers"][0])),
            "spec.containers[1]",
        ),
    ],
)
def test_api_server_rejects_invalid_checkpoints_naming_the_field(
    kube_api: client.ApiClient, change: Any, field: str
) -> None:
    kube = KubeClient(kube_api)
    namespace = unique_namespace(kube_api, "cp-invalid")
    kube.request(
        "POST", checkpoint_path(namespace), body=_object(namespace, "ok", _valid_spec("ok"))
    )
    spec = _valid_spec("bad")
    change(spec)
    with pytest.raises(KubeApiError) as raised:
        kube.request("POST", checkpoint_path(namespace), body=_object(namespace, "bad", spec))
    assert raised.value.status == 422
    assert field in raised.value.message, raised.value.message


# -- save and load ---------------------------------------------------------------------------


def test_save_then_load_gives_the_same_checkpoint_and_the_same_store(
    kube_api: client.ApiClient,
) -> None:
    kube = KubeClient(kube_api)
    namespace = unique_namespace(kube_api, "cp-save")
    store = CheckpointStore(kube, "vpa-fleet")
    uid = _create_vpa(kube, namespace, "web")
    saved = _checkpoint(namespace, "web", uid)
    store.save(saved)

    raw = _raw(kube, namespace, "web")
    assert raw["metadata"]["labels"] == {RECOMMENDER_LABEL: "vpa-fleet"}
    assert raw["spec"]["historyEnd"] == "2026-11-29T12:30:15.123456Z"
    assert raw["spec"]["containers"][0]["running"][-1]["windowEndNs"] == UNSET

    # A fresh store (a restarted recommender) reads it back exactly.
    loaded, problems = CheckpointStore(KubeClient(kube_api), "vpa-fleet").load([namespace])
    assert problems == []
    assert loaded == [saved]
    assert loaded[0].history_end.tzinfo == dt.UTC

    # Imported, it is the store it came from, bit for bit (the unset pod aside).
    original, _ = _history(1)
    restored = AggregateStore.empty()
    import_workload(restored, "prod", "shop", "api", loaded[0].aggregates)
    assert export_workload(restored, "prod", "shop", "api") == saved.aggregates
    _, estimators = build_estimators("vpa")
    mine = original.estimation_input(original.workload_rows("prod", "shop", "api"))
    theirs = restored.estimation_input()
    for resource in ("cpu", "memory"):
        assert (
            getattr(mine, resource).weights.tobytes() == getattr(theirs, resource).weights.tobytes()
        )
    expected, actual = estimators.estimate(mine), estimators.estimate(theirs)
    for name in ("target_cpu", "target_memory", "lower_cpu", "lower_memory", "upper_cpu"):
        assert np.array_equal(getattr(expected, name), getattr(actual, name)), name


def test_load_finds_only_this_recommenders_checkpoints_in_the_given_namespaces(
    kube_api: client.ApiClient,
) -> None:
    kube = KubeClient(kube_api)
    recommender = f"rec-{uuid.uuid4().hex[:6]}"
    ours = CheckpointStore(kube, recommender)
    theirs = CheckpointStore(kube, "someone-else")
    first, second, third = (unique_namespace(kube_api, "cp-list") for _ in range(3))
    for namespace in (first, second, third):
        uid = _create_vpa(kube, namespace, "web")
        ours.save(_checkpoint(namespace, "web", uid, recommender=recommender))
    uid = _create_vpa(kube, first, "db")
    theirs.save(_checkpoint(first, "db", uid, recommender="someone-else"))

    everywhere, problems = ours.load()
    assert problems == []
    assert [c.key for c in everywhere] == sorted((n, "web") for n in (first, second, third))
    some, _ = ours.load([third, first, "no-such-namespace"])
    assert [c.key for c in some] == sorted([(first, "web"), (third, "web")])
    assert [c.key for c in theirs.load([first])[0]] == [(first, "db")]


def test_replace_keeps_others_metadata_and_survives_a_concurrent_change(
    kube_api: client.ApiClient,
) -> None:
    kube = KubeClient(kube_api)
    namespace = unique_namespace(kube_api, "cp-replace")
    store = CheckpointStore(kube, "vpa-fleet")
    uid = _create_vpa(kube, namespace, "web")
    store.save(_checkpoint(namespace, "web", uid, seed=1))
    first_version = _raw(kube, namespace, "web")["metadata"]["resourceVersion"]

    # Someone else labels the object: our cached resourceVersion is now stale (409, re-read).
    kube.request(
        "PATCH",
        checkpoint_path(namespace, "web"),
        body={"metadata": {"labels": {"team": "shop"}, "annotations": {"note": "keep me"}}},
        content_type="application/merge-patch+json",
    )
    later = Checkpoint(
        namespace, "web", uid, "vpa-fleet", HISTORY_END + dt.timedelta(hours=1), _history(2)[1]
    )
    store.save(later)
    raw = _raw(kube, namespace, "web")
    assert raw["metadata"]["resourceVersion"] != first_version
    assert raw["metadata"]["labels"] == {"team": "shop", RECOMMENDER_LABEL: "vpa-fleet"}
    assert raw["metadata"]["annotations"] == {"note": "keep me"}
    assert store.load([namespace]) == ([later], [])

    # Replaced again straight from the cached version; then by a second (restarted) store.
    store.save(_checkpoint(namespace, "web", uid, seed=3))
    fresh = CheckpointStore(KubeClient(kube_api), "vpa-fleet")
    final = _checkpoint(namespace, "web", uid, seed=4)
    fresh.save(final)
    assert store.load([namespace]) == ([final], [])

    # Deleted behind the store's back: the next save creates it again.
    kube.request("DELETE", checkpoint_path(namespace, "web"))
    fresh.save(later)
    assert store.load([namespace]) == ([later], [])


def test_a_vpa_recreated_under_the_same_name_becomes_the_owner(kube_api: client.ApiClient) -> None:
    kube = KubeClient(kube_api)
    namespace = unique_namespace(kube_api, "cp-recreate")
    store = CheckpointStore(kube, "vpa-fleet")
    old_uid = _create_vpa(kube, namespace, "web")
    store.save(_checkpoint(namespace, "web", old_uid))
    kube.request("DELETE", vpa_path(namespace, "web"))
    new_uid = _create_vpa(kube, namespace, "web")
    store.save(_checkpoint(namespace, "web", new_uid))
    owners = _raw(kube, namespace, "web")["metadata"]["ownerReferences"]
    assert [o["uid"] for o in owners] == [new_uid]


class _FlakyKube(KubeClient):
    """The real API server behind a client whose first attempt at each request fails."""

    def __init__(self, api: client.ApiClient, status: int) -> None:
        super().__init__(api)
        self.status = status
        self.failed: list[tuple[str, str]] = []

    def request(self, method: str, path: str, **kwargs: Any) -> JSON:
        if (method, path) not in self.failed:
            self.failed.append((method, path))
            raise KubeApiError(method, path, self.status, "Flaky", "try again")
        return super().request(method, path, **kwargs)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttling_and_server_errors_are_retried(kube_api: client.ApiClient, status: int) -> None:
    namespace = unique_namespace(kube_api, "cp-retry")
    flaky = _FlakyKube(kube_api, status)
    store = CheckpointStore(flaky, "vpa-fleet", backoff_s=0.01)
    uid = _create_vpa(KubeClient(kube_api), namespace, "web")
    saved = _checkpoint(namespace, "web", uid)
    store.save(saved)
    store.save(saved)  # the replace fails once too
    assert store.load([namespace]) == ([saved], [])
    assert store.collect_garbage({}, [namespace]) == 1
    assert {method for method, _ in flaky.failed} == {"GET", "POST", "PUT", "DELETE"}


def test_a_refusal_that_is_not_worth_retrying_is_raised(kube_api: client.ApiClient) -> None:
    namespace = unique_namespace(kube_api, "cp-refused")
    flaky = _FlakyKube(kube_api, 403)
    store = CheckpointStore(flaky, "vpa-fleet", backoff_s=0.01)
    with pytest.raises(KubeApiError) as raised:
        store.save(_checkpoint(namespace, "web", "some-uid"))
    assert raised.value.status == 403
    assert len(flaky.failed) == 1


def test_checkpoints_the_store_cannot_save() -> None:
    store = CheckpointStore(KubeClient(client.ApiClient()), "vpa-fleet")
    with pytest.raises(ValueError, match="names recommender 'other'"):
        store.save(_checkpoint("shop", "web", "uid", recommender="other"))
    with pytest.raises(ValueError, match="has no VPA uid"):
        store.save(_checkpoint("shop", "web", ""))
    with pytest.raises(ValueError, match="timezone-aware"):
        Checkpoint("shop", "web", "uid", "vpa-fleet", dt.datetime(2026, 1, 1), ())
    with pytest.raises(ValueError, match="not a valid label value"):
        CheckpointStore(KubeClient(client.ApiClient()), "vpa fleet")
    local = Checkpoint(
        "shop",
        "web",
        "uid",
        "vpa-fleet",
        dt.datetime(2026, 1, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        (),
    )
    assert local.history_end == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


# -- corrupt objects -------------------------------------------------------------------------


def test_corrupt_checkpoints_are_reported_and_the_others_load(kube_api: client.ApiClient) -> None:
    kube = KubeClient(kube_api)
    namespace = unique_namespace(kube_api, "cp-corrupt")
    store = CheckpointStore(kube, "vpa-fleet")
    good = []
    for name in ("api", "web"):
        uid = _create_vpa(kube, namespace, name)
        good.append(_checkpoint(namespace, name, uid))
        store.save(good[-1])

    def corrupt(name: str, change: Any) -> None:
        body = _object(namespace, name, _valid_spec(name))
        body["spec"]["containers"][0]["state"] = base64.b64encode(_history(1)[1][0].state).decode()
        change(body["spec"])
        kube.request("POST", checkpoint_path(namespace), body=body)

    garbage = base64.b64encode(uuid.uuid4().bytes * 8).decode()
    corrupt("garbage", lambda s: s["containers"][0].update(state=garbage))
    corrupt(
        "truncated", lambda s: s["containers"][0].update(state=s["containers"][0]["state"][:-8])
    )
    corrupt("version", lambda s: s.update(formatVersion=2))
    corrupt("renamed", lambda s: s.update(vpaName="other"))
    corrupt("stranger", lambda s: s.update(recommender="someone-else"))
    half_life = ModelParams(cpu_histogram_decay_half_life_s=3600.0)
    other = AggregateStore.empty(half_life)
    ingest_samples(other, prepare_samples(mixed_trace(1, days=1)))
    other_state = base64.b64encode(export_workload(other, "prod", "shop", "api")[0].state).decode()
    corrupt("halflife", lambda s: s["containers"][0].update(state=other_state))

    loaded, problems = store.load([namespace])
    assert loaded == good
    assert len(problems) == 6
    by_name = {p.split(":")[0].split("/")[-1]: p for p in problems}
    assert sorted(by_name) == ["garbage", "halflife", "renamed", "stranger", "truncated", "version"]
    prefix = f"RecommenderCheckpoint {namespace}/"
    assert all(p.startswith(prefix) for p in problems), problems
    assert (
        "spec.containers: container 'app' (containers[0]): state: not a serialized"
        in (by_name["garbage"])
    )
    assert "container 'app' (containers[0]): state: " in by_name["truncated"]
    assert "spec.formatVersion: 2 is not supported" in by_name["version"]
    assert "spec.vpaName: 'other' is not the object's name 'renamed'" in by_name["renamed"]
    assert "spec.recommender: 'someone-else'" in by_name["stranger"]
    assert "state: histogram half-life mismatch: 3600s" in by_name["halflife"]
    # The same states are fine for a recommender running with those half-lives.
    loaded_there, _ = CheckpointStore(kube, "vpa-fleet", params=half_life).load([namespace])
    assert "halflife" in {c.vpa_name for c in loaded_there}


# -- garbage collection and ownership --------------------------------------------------------


def test_collect_garbage_deletes_exactly_the_stale_checkpoints(kube_api: client.ApiClient) -> None:
    kube = KubeClient(kube_api)
    recommender = f"gc-{uuid.uuid4().hex[:6]}"
    store = CheckpointStore(kube, recommender)
    here, there = unique_namespace(kube_api, "cp-gc"), unique_namespace(kube_api, "cp-gc")
    uids = {}
    for namespace, name in ((here, "live"), (here, "recreated"), (here, "gone"), (there, "live")):
        uids[namespace, name] = _create_vpa(kube, namespace, name)
        store.save(_checkpoint(namespace, name, uids[namespace, name], recommender=recommender))
    # Another recommender's checkpoint is never touched.
    other = CheckpointStore(kube, "someone-else")
    uids[here, "theirs"] = _create_vpa(kube, here, "theirs")
    other.save(_checkpoint(here, "theirs", uids[here, "theirs"], recommender="someone-else"))

    live = {
        (here, "live"): uids[here, "live"],
        (here, "recreated"): "a-new-uid",
        (there, "live"): uids[there, "live"],
    }
    assert store.collect_garbage(live) == 2
    remaining = {c.key for c in store.load()[0]}
    assert remaining == {(here, "live"), (there, "live")}
    assert [c.key for c in other.load([here])[0]] == [(here, "theirs")]
    assert store.collect_garbage(live) == 0

    # Scoped to namespaces: a checkpoint outside them stays even when its VPA is not live.
    assert store.collect_garbage({}, [there]) == 1
    assert {c.key for c in store.load()[0]} == {(here, "live")}


def test_the_checkpoint_is_owned_by_its_vpa_and_deleted_with_it(
    kube_api: client.ApiClient,
) -> None:
    kube = KubeClient(kube_api)
    namespace = unique_namespace(kube_api, "cp-owner")
    store = CheckpointStore(kube, "vpa-fleet")
    uid = _create_vpa(kube, namespace, "web")
    store.save(_checkpoint(namespace, "web", uid))
    owners = _raw(kube, namespace, "web")["metadata"]["ownerReferences"]
    assert owners == [
        {
            "apiVersion": "autoscaling.k8s.io/v1",
            "kind": "VerticalPodAutoscaler",
            "name": "web",
            "uid": uid,
        }
    ]

    kube.request("DELETE", vpa_path(namespace, "web"))

    def gone() -> bool:
        try:
            _raw(kube, namespace, "web")
        except KubeApiError as error:
            return error.not_found
        return False

    eventually(gone, 60, "the garbage collector to delete the checkpoint of a deleted VPA")
    assert store.load([namespace]) == ([], [])
