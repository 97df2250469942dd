"""Savings, slack and risk of containers from hand-made frames, checked by hand."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from recommender.report.compute import (
    CONTAINER_COLUMNS,
    KILL_SCHEMA,
    container_report,
    level_columns,
    rollup,
)
from recommender.report.inventory import POD_SCHEMA, TARGET_SCHEMA, WORKLOAD_SCHEMA, frame

MI = 1024.0**2
GIB = 1024.0**3
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
STEP_S = 300.0

SAMPLE_SCHEMA = {
    "timestamp": pl.Datetime("ms", "UTC"),
    "cluster": pl.String,
    "namespace": pl.String,
    "pod": pl.String,
    "container": pl.String,
    "cpu": pl.Float64,
    "memory": pl.Float64,
}


def _samples(rows: list[tuple[str, str, list[float], list[float]]]) -> pl.DataFrame:
    out = []
    for pod, container, cpu, memory in rows:
        for i, (c, m) in enumerate(zip(cpu, memory, strict=True)):
            out.append((T0 + dt.timedelta(seconds=STEP_S * i), "c1", "shop", pod, container, c, m))
    return pl.DataFrame(out, schema=SAMPLE_SCHEMA, orient="row")


@pytest.fixture
def report() -> pl.DataFrame:
    pods = frame(
        [
            ("c1", "shop", "web", "web-1", "app", 1.0, 512 * MI),
            ("c1", "shop", "web", "web-2", "app", 1.0, 512 * MI),
            ("c1", "shop", "web", "web-1", "sidecar", 0.1, None),
            ("c1", "shop", "cart", "cart-1", "cart", 0.2, 256 * MI),
        ],
        POD_SCHEMA,
    )
    targets = frame(
        [
            ("c1", "shop", "web", "app", 0.25, 300 * MI),
            ("c1", "shop", "cart", "cart", 0.5, 200 * MI),
            ("c1", "shop", "idle", "idle", 0.1, 100 * MI),  # a VPA whose pods are gone
        ],
        TARGET_SCHEMA,
    )
    workloads = frame(
        [
            ("c1", "shop", "web", "Deployment", "web", "vpa-fleet"),
            ("c1", "shop", "cart", "Deployment", "cart", "vpa-fleet"),
            ("c1", "shop", "idle", "Deployment", "idle", "vpa-fleet"),
        ],
        WORKLOAD_SCHEMA,
    )
    samples = _samples(
        [
            ("web-1", "app", [0.2, 0.3, 0.4, 0.3], [200 * MI, 250 * MI, 300 * MI, 280 * MI]),
            ("web-2", "app", [0.1, 0.2, 0.2, 0.1], [210 * MI, 220 * MI, 230 * MI, 240 * MI]),
            ("web-1", "sidecar", [0.05, 0.05, 0.2, 0.05], [10 * MI, 10 * MI, 10 * MI, 10 * MI]),
            ("cart-1", "cart", [0.3, 0.1, 0.25, 0.1], [100 * MI, 150 * MI, 260 * MI, 180 * MI]),
            ("gone-1", "app", [9.0], [9 * GIB]),  # a pod no VPA matches: left out
        ]
    )
    kills = pl.DataFrame(
        [("c1", "shop", "cart-1", "cart", 2), ("c1", "shop", "gone-1", "app", 5)],
        schema=KILL_SCHEMA,
        orient="row",
    )
    return container_report(pods, targets, workloads, samples, kills, step_s=STEP_S)


def _row(report: pl.DataFrame, workload: str, container: str) -> dict[str, object]:
    rows = report.filter((pl.col("workload") == workload) & (pl.col("container") == container))
    assert rows.height == 1
    return rows.row(0, named=True)


def test_requests_targets_and_savings_are_summed_over_pods(report: pl.DataFrame) -> None:
    assert report.columns == list(CONTAINER_COLUMNS)
    web = _row(report, "web", "app")
    assert web["pods"] == 2
    assert web["cpu_request"] == pytest.approx(2.0)
    assert web["cpu_target"] == pytest.approx(0.5)
    assert web["cpu_savings"] == pytest.approx(1.5)
    assert web["memory_savings"] == pytest.approx(2 * (512 - 300) * MI)
    assert web["target_kind"] == "Deployment"
    cart = _row(report, "cart", "cart")
    assert cart["cpu_savings"] == pytest.approx(-0.3)  # the VPA wants more than requested


def test_usage_and_slack_count_every_sample_of_every_pod(report: pl.DataFrame) -> None:
    web = _row(report, "web", "app")
    cpu = [0.2, 0.3, 0.4, 0.3, 0.1, 0.2, 0.2, 0.1]
    assert web["samples"] == 8
    assert web["cpu_usage_mean"] == pytest.approx(sum(cpu) / 8)
    assert web["cpu_usage_max"] == pytest.approx(0.4)
    # 95th percentile, linear: sorted[6] + 0.65 * (sorted[7] - sorted[6])
    assert web["cpu_usage_p95"] == pytest.approx(0.3 + 0.65 * 0.1)
    hours = STEP_S / 3600
    assert web["cpu_slack_core_hours"] == pytest.approx(sum(1.0 - c for c in cpu) * hours)
    assert web["cpu_request_core_hours"] == pytest.approx(8 * 1.0 * hours)
    assert web["cpu_slack_pct"] == pytest.approx(100 * (8 - sum(cpu)) / 8)
    memory = [200, 250, 300, 280, 210, 220, 230, 240]
    expected = sum(512 - m for m in memory) * MI * hours / GIB
    assert web["memory_slack_gib_hours"] == pytest.approx(expected)


def test_a_container_without_a_memory_request_has_no_memory_slack(report: pl.DataFrame) -> None:
    sidecar = _row(report, "web", "sidecar")
    assert sidecar["memory_request"] == 0.0
    assert sidecar["memory_slack_gib_hours"] == 0.0
    assert sidecar["memory_slack_pct"] is None
    assert sidecar["cpu_target"] is None  # the VPA recommends nothing for it
    assert sidecar["cpu_savings"] is None
    assert sidecar["cpu_over_request_pct"] == pytest.approx(25.0)
    assert sidecar["risk"] == "cpu_above_request"


def test_risk_names_oom_kills_and_usage_above_target_and_request(report: pl.DataFrame) -> None:
    cart = _row(report, "cart", "cart")
    assert cart["oom_kills"] == 2
    assert cart["memory_over_request_samples"] == 1  # 260Mi > 256Mi
    assert cart["memory_over_target_samples"] == 1  # 260Mi > 200Mi
    assert cart["cpu_over_request_pct"] == pytest.approx(50.0)
    assert cart["cpu_over_target_pct"] == pytest.approx(0.0)
    assert cart["risk"] == "oom_kills,memory_above_request,memory_above_target,cpu_above_request"
    assert cart["at_risk"] is True
    web = _row(report, "web", "app")
    assert web["cpu_over_target_pct"] == pytest.approx(100 * 3 / 8)  # above 0.25 cores
    assert web["risk"] == "cpu_above_target"


def test_a_vpa_without_pods_is_listed_with_nothing_requested(report: pl.DataFrame) -> None:
    idle = _row(report, "idle", "idle")
    assert idle["pods"] == 0
    assert idle["cpu_request"] == 0.0
    assert idle["cpu_target"] == 0.0
    assert idle["samples"] == 0
    assert idle["at_risk"] is False


def test_rollups_sum_containers_and_recompute_shares(report: pl.DataFrame) -> None:
    workloads = rollup(report, "workload")
    assert workloads.columns == list(level_columns("workload"))
    web = workloads.filter(pl.col("workload") == "web").row(0, named=True)
    assert web["containers"] == 2
    assert web["pods"] == 2  # the pods its containers share
    assert web["cpu_request"] == pytest.approx(2.1)
    assert web["containers_without_target"] == 1
    assert web["containers_at_risk"] == 2
    assert web["risk"] == "cpu_above_request,cpu_above_target"
    namespace = rollup(report, "namespace").row(0, named=True)
    assert namespace["containers"] == 4
    assert namespace["pods"] == 2 + 1 + 0
    assert namespace["oom_kills"] == 2
    assert namespace["cpu_savings"] == pytest.approx(1.5 - 0.3 - 0.0)
    slack = report["cpu_slack_core_hours"].sum()
    assert namespace["cpu_slack_pct"] == pytest.approx(
        100 * slack / report["cpu_request_core_hours"].sum()
    )
    cluster = rollup(report, "cluster")
    assert cluster.height == 1
    assert cluster["cluster"].to_list() == ["c1"]
    assert cluster["risk"].to_list() == [
        "cpu_above_request,cpu_above_target,memory_above_request,memory_above_target,oom_kills"
    ]
