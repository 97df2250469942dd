"""The JSON client and the list-then-watch cache against the real API server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from kubernetes import client

from recommender.kube.cache import ListWatchCache
from recommender.kube.rest import JSON_PATCH, KubeApiError, KubeClient
from tests.integration.kube_helpers import unique_namespace

VPAS = "/apis/autoscaling.k8s.io/v1/namespaces/{ns}/verticalpodautoscalers"


def _vpa(name: str) -> dict[str, object]:
    return {
        "apiVersion": "autoscaling.k8s.io/v1",
        "kind": "VerticalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "recommenders": [{"name": "vpa-fleet"}],
        },
    }


def _eventually(predicate: Callable[[], bool], timeout_s: float = 20) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_requests_pages_and_errors(kube_api: client.ApiClient) -> None:
    kube = KubeClient(kube_api)
    namespace = unique_namespace(kube_api, "rest")
    path = VPAS.format(ns=namespace)
    for i in range(7):
        kube.request("POST", path, body=_vpa(f"w{i}"))
    items, resource_version = kube.list_all(path, page_size=3)
    assert sorted(item["metadata"]["name"] for item in items) == [f"w{i}" for i in range(7)]
    assert int(resource_version) > 0

    status = {
        "recommendation": {
            "containerRecommendations": [{"containerName": "app", "target": {"cpu": "100m"}}]
        }
    }
    patched = kube.request(
        "PATCH",
        f"{path}/w0/status",
        body=[{"op": "add", "path": "/status", "value": status}],
        content_type=JSON_PATCH,
    )
    assert patched["status"]["recommendation"] == status["recommendation"]

    with pytest.raises(KubeApiError) as missing:
        kube.get(f"{path}/nope")
    assert missing.value.not_found
    assert "nope" in missing.value.message
    with pytest.raises(KubeApiError) as exists:
        kube.request("POST", path, body=_vpa("w1"))
    assert exists.value.conflict


def test_cache_follows_adds_updates_and_deletes(kube_api: client.ApiClient) -> None:
    kube = KubeClient(kube_api)
    namespace = unique_namespace(kube_api, "watch")
    path = VPAS.format(ns=namespace)
    kube.request("POST", path, body=_vpa("before"))
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    def record(kind: str, obj: dict[str, object]) -> None:
        with lock:
            seen.append((kind, obj["metadata"]["name"]))  # type: ignore[index]

    cache = ListWatchCache(kube, path, watch_timeout_s=2, handlers=[record])
    cache.start()
    try:
        assert cache.wait_synced(20)
        assert [o["metadata"]["name"] for o in cache.items()] == ["before"]
        kube.request("POST", path, body=_vpa("after"))
        kube.request(
            "PATCH",
            f"{path}/before",
            body=[{"op": "add", "path": "/metadata/labels", "value": {"team": "a"}}],
            content_type=JSON_PATCH,
        )
        kube.request("DELETE", f"{path}/after")
        assert _eventually(lambda: ("DELETED", "after") in seen)
        before = cache.get(namespace, "before")
        assert before is not None
        assert before["metadata"]["labels"] == {"team": "a"}
        assert cache.get(namespace, "after") is None
        assert ("ADDED", "after") in seen
        assert ("MODIFIED", "before") in seen

        # The server ends each watch after 2 s; the cache resumes from its last version
        # without listing again and without missing what happened in between.
        time.sleep(3)
        kube.request("POST", path, body=_vpa("later"))
        assert _eventually(lambda: cache.get(namespace, "later") is not None)
        assert cache.relists == 1
    finally:
        cache.stop()
