"""Pods as the loop reads them, and their history turned into the engine's usage frame."""

from __future__ import annotations

import datetime as dt

import polars as pl

from analytics.sources.prometheus import TIMESTAMP, USAGE_COLUMNS
from analytics.usage import prepare_samples
from recommender.loop.pods import assignment, matched_pods, pod_view, slim_pod
from recommender.loop.samples import USAGE_SCHEMA, oom_rows, pod_status_kills, usage_rows
from recommender.vpa.targets import parse_selector

T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


def pod(name: str, labels: dict[str, str], *, oom: str | None = None) -> dict[str, object]:
    statuses: list[dict[str, object]] = [{"name": "app", "ready": True, "restartCount": 1}]
    if oom is not None:
        statuses[0]["lastState"] = {
            "terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": oom}
        }
    return {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "labels": labels,
            "uid": f"uid-{name}",
            "resourceVersion": "7",
            "managedFields": [{"manager": "kubelet"}],
        },
        "spec": {
            "nodeName": "node-1",
            "containers": [
                {"name": "app", "image": "x", "resources": {"requests": {"memory": "256Mi"}}},
                {"name": "sidecar", "image": "y"},
            ],
        },
        "status": {"phase": "Running", "containerStatuses": statuses},
    }


def test_slim_pod_keeps_what_the_view_needs() -> None:
    full = pod("web-1", {"app": "web"}, oom="2026-11-01T11:00:00Z")
    slim = slim_pod(full)
    assert "managedFields" not in slim["metadata"]
    assert "nodeName" not in slim["spec"]
    assert pod_view(slim) == pod_view(full)


def test_pod_view() -> None:
    view = pod_view(pod("web-1", {"app": "web"}, oom="2026-11-01T11:00:00Z"))
    assert view.memory_requests == {"app": 256 * 1024**2, "sidecar": None}
    assert [(k.container, k.finished_at) for k in view.oom_kills] == [
        ("app", dt.datetime(2026, 11, 1, 11, tzinfo=dt.UTC))
    ]
    assert pod_view({"metadata": {"name": "bare"}}).memory_requests == {}


def test_only_oom_kills_count() -> None:
    other = pod("web-1", {"app": "web"})
    other["status"]["containerStatuses"][0]["lastState"] = {  # type: ignore[index]
        "terminated": {"reason": "Error", "finishedAt": "2026-11-01T11:00:00Z"}
    }
    assert pod_view(other).oom_kills == ()


def test_assignment_and_matching() -> None:
    pods = [pod_view(pod(f"web-{i}", {"app": "web"})) for i in range(2)]
    pods.append(pod_view(pod("db-0", {"app": "db"})))
    matches = {
        "web": matched_pods(parse_selector("app=web", "test"), pods),
        "everything": matched_pods(parse_selector("app", "test"), pods),
    }
    frame = assignment(matches)
    assert frame.filter(pl.col("workload") == "web")["pod"].unique().sort().to_list() == [
        "web-0",
        "web-1",
    ]
    assert frame.filter(pl.col("workload") == "everything").height == 6
    assert frame.filter(pl.col("container") == "sidecar")["memory_request"].null_count() == 5


def _samples() -> pl.DataFrame:
    rows = [
        (T0, "c", "shop", p, c, 0.25, 100.0 * 1024**2)
        for p in ("web-0", "web-1", "gone-0")
        for c in ("app", "sidecar", "istio-init")
    ]
    schema = dict(
        zip(
            USAGE_COLUMNS,
            (TIMESTAMP, pl.String, pl.String, pl.String, pl.String, pl.Float64, pl.Float64),
            strict=True,
        )
    )
    return pl.DataFrame(rows, schema=schema, orient="row")


def test_usage_rows_keep_only_assigned_containers() -> None:
    pods = [pod_view(pod(f"web-{i}", {"app": "web"})) for i in range(2)]
    assigned = assignment({"web": pods})
    usage = usage_rows(_samples(), assigned)
    assert dict(usage.schema) == USAGE_SCHEMA
    assert usage.height == 4  # two pods x (app, sidecar); unknown pods and containers dropped
    assert set(usage["workload"]) == {"web"}
    assert prepare_samples(usage).skipped == {}


def test_oom_rows_carry_the_memory_request() -> None:
    pods = [pod_view(pod("web-0", {"app": "web"}, oom="2026-11-01T11:00:00Z"))]
    kills = pod_status_kills("c", pods)
    rows = oom_rows(kills, assignment({"web": pods}))
    assert rows["memory_request"].to_list() == [256.0 * 1024**2]
    assert rows["oom"].to_list() == [True]
    prepared = prepare_samples(rows)
    assert prepared.oom.tolist() == [True]
    assert prepared.oom_memory_bytes.tolist() == [256 * 1024**2]
