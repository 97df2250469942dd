"""Pods and VPAs to frames, the text outputs, and the HTML page (pure parts)."""

from __future__ import annotations

import datetime as dt
import io
import json
import re

import polars as pl
import pytest

from recommender.report.compute import container_report, rollup, usage_rows
from recommender.report.inventory import (
    POD_SCHEMA,
    TARGET_SCHEMA,
    WORKLOAD_SCHEMA,
    InventoryError,
    frame,
    is_running,
    pod_rows,
    target_rows,
)
from recommender.report.output import render, table, write
from recommender.report.page import (
    REQUEST_COLOR,
    TARGET_COLOR,
    interval_s,
    render_page,
    usage_series,
)
from recommender.vpa.objects import parse_vpa

MI = 1024**2


def _pod(name: str, requests: dict[str, str], phase: str = "Running") -> dict[str, object]:
    return {
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "resources": {"requests": requests}}]},
        "status": {"phase": phase},
    }


def test_pod_rows_read_requests_in_cores_and_bytes() -> None:
    rows = pod_rows("c1", "web", _pod("web-1", {"cpu": "250m", "memory": "512Mi"}))
    assert rows == [("c1", "shop", "web", "web-1", "app", 0.25, 512.0 * MI)]
    assert pod_rows("c1", "web", _pod("web-2", {}))[0][5:] == (None, None)


def test_a_bad_quantity_names_the_pod_the_field_and_the_value() -> None:
    with pytest.raises(InventoryError) as error:
        pod_rows("c1", "web", _pod("web-1", {"cpu": "lots"}))
    message = str(error.value)
    assert "Pod shop/web-1: spec.containers[0].resources.requests.cpu" in message
    assert "'lots'" in message


def test_finished_and_deleted_pods_hold_no_requests() -> None:
    assert is_running(_pod("a", {}))
    assert is_running(_pod("a", {}, phase="Pending"))
    assert not is_running(_pod("a", {}, phase="Succeeded"))
    deleted = _pod("a", {})
    deleted["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"  # type: ignore[index]
    assert not is_running(deleted)


def test_target_rows_come_from_the_vpa_status() -> None:
    vpa = parse_vpa(
        {
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
            "status": {
                "recommendation": {
                    "containerRecommendations": [
                        {"containerName": "app", "target": {"cpu": "300m", "memory": "200Mi"}},
                        {"containerName": "log", "target": {"memory": "50Mi"}},
                    ]
                }
            },
        }
    )
    assert target_rows("c1", vpa) == [
        ("c1", "shop", "web", "app", 0.3, 200.0 * MI),
        ("c1", "shop", "web", "log", None, 50.0 * MI),
    ]
    no_status = parse_vpa({"metadata": {"name": "x", "namespace": "shop"}, "spec": {}})
    assert target_rows("c1", no_status) == []


T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _inputs() -> tuple[pl.DataFrame, ...]:
    pods = frame(
        [
            ("c1", "shop", "web", "web-1", "app", 1.0, 512.0 * MI),
            ("c1", "shop", "web", "web-2", "app", 1.0, 512.0 * MI),
        ],
        POD_SCHEMA,
    )
    targets = frame([("c1", "shop", "web", "app", 0.5, 256.0 * MI)], TARGET_SCHEMA)
    workloads = frame([("c1", "shop", "web", "Deployment", "web", "vpa-fleet")], WORKLOAD_SCHEMA)
    samples = pl.DataFrame(
        [
            (T0 + dt.timedelta(minutes=5 * i), "c1", "shop", pod, "app", 0.1 * (i % 7), 300.0 * MI)
            for i in range(288)
            for pod in ("web-1", "web-2")
        ],
        schema={
            "timestamp": pl.Datetime("ms", "UTC"),
            "cluster": pl.String,
            "namespace": pl.String,
            "pod": pl.String,
            "container": pl.String,
            "cpu": pl.Float64,
            "memory": pl.Float64,
        },
        orient="row",
    )
    kills = pl.DataFrame(
        schema={
            "cluster": pl.String,
            "namespace": pl.String,
            "pod": pl.String,
            "container": pl.String,
            "oom_kills": pl.Int64,
        }
    )
    return pods, targets, workloads, samples, kills


def _containers() -> pl.DataFrame:
    return container_report(*_inputs(), step_s=300)


def test_the_table_csv_and_json_carry_the_rows() -> None:
    containers = _containers()
    workloads = rollup(containers, "workload")
    text = table(workloads, "workload")
    header, row = text.splitlines()
    assert header.split()[:5] == ["CLUSTER", "NAMESPACE", "WORKLOAD", "PODS", "CPU_REQ"]
    assert row.split()[:6] == ["c1", "shop", "web", "2", "2.000", "1.000"]
    assert "1024Mi" in row and "512Mi" in row  # memory requested and target
    parsed = pl.read_csv(io.StringIO(render(workloads, "workload", "csv")))
    assert parsed["cpu_savings"].to_list() == [1.0]
    records = json.loads(render(workloads, "workload", "json"))
    assert records[0]["risk"] == "cpu_above_target,memory_above_target"  # 300Mi > 256Mi
    assert records[0]["containers_without_target"] == 0


def test_parquet_needs_a_file(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="--output-file"):
        write(_containers(), "container", "parquet", None)


def test_the_chart_interval_is_whole_steps_and_bounded() -> None:
    assert interval_s(86_400, 300) == 600  # 288 steps -> 144 intervals of two steps
    assert interval_s(3600, 300) == 300
    assert 7 * 86_400 / interval_s(7 * 86_400, 60) <= 240


def test_the_page_is_self_contained_with_two_charts_per_container() -> None:
    pods, targets, _, samples, _ = _inputs()
    containers = _containers()
    interval = interval_s(86_400, 300)
    series = usage_series(usage_rows(samples, pods, targets), T0, interval)
    assert series.height == 86_400 // interval
    page = render_page(
        containers,
        {level: rollup(containers, level) for level in ("cluster", "namespace", "workload")},
        series,
        start=T0,
        end=T0 + dt.timedelta(days=1),
        interval=interval,
        notes=["c1/batch: Prometheus down"],
    )
    assert page.count("<svg") == 2
    assert "<script" not in page
    assert not re.search(r"(?:src|href)=", page)
    assert f'stroke="{REQUEST_COLOR}"' in page and f'stroke="{TARGET_COLOR}"' in page
    assert "c1/batch: Prometheus down" in page
    # The usage area has one point per interval (plus its two corners at the bottom).
    area = re.search(r'<path d="(M[^"]+Z)" fill="#d9d9d9"', page)
    assert area is not None
    assert area[1].count("L") == 86_400 // interval + 1
