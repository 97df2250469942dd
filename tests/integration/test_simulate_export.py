"""`vpa-fleet simulate --export-from-prometheus` against a real Prometheus with backfilled
history: the exported trace holds every generated container with its workload, usage and
requests, and replays."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from analytics.sources.export import TRACE_COLUMNS, workload_of_pod
from recommender.cli import main
from testbed.prometheus import PrometheusInstance, start_prometheus_with_history
from testbed.series import DEFAULT_SPEC, SyntheticHistory

pytestmark = pytest.mark.integration

DAYS = 2
STEP_S = 60
NAMESPACES = sorted({w.namespace for w in DEFAULT_SPEC})


@dataclass
class Exported:
    instance: PrometheusInstance
    history: SyntheticHistory
    until: str
    path: Path
    trace: pl.DataFrame
    stderr: str


def export(instance: PrometheusInstance, until: str, out: Path, *extra: str) -> int:
    return main(
        [
            "simulate",
            "--export-from-prometheus",
            instance.url,
            "--namespace",
            ",".join(NAMESPACES),
            "--since",
            f"{DAYS}d",
            "--until",
            until,
            "--cluster",
            "testbed",
            *extra,
            str(out),
        ]
    )


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Exported]:
    workdir = tmp_path_factory.mktemp("simulate-export")
    instance, history = start_prometheus_with_history(
        workdir, DEFAULT_SPEC, days=DAYS, step_s=STEP_S
    )
    try:
        end_s = history.time_range.end_s + STEP_S
        until = datetime.fromtimestamp(end_s, UTC).isoformat()
        path = workdir / "trace.parquet"
        assert export(instance, until, path) == 0
        yield Exported(instance, history, until, path, pl.read_parquet(path), "")
    finally:
        instance.stop()


def test_every_container_comes_back_with_its_workload_and_requests(exported: Exported) -> None:
    trace, history = exported.trace, exported.history
    assert tuple(trace.columns) == TRACE_COLUMNS
    truth = history.usage()
    keys = ["namespace", "workload", "pod", "container"]
    assert set(trace.select(keys).unique().rows()) == set(truth.select(keys).unique().rows())
    assert set(trace["cluster"]) == {"testbed"}
    # Memory: the generated working set at every generated time, exactly.
    both = trace.with_columns(pl.col("timestamp").dt.epoch("s").alias("timestamp_s")).join(
        truth, on=["namespace", "pod", "container", "timestamp_s"], how="full", coalesce=True
    )
    assert both["memory"].null_count() == 0
    np.testing.assert_array_equal(both["memory"].to_numpy(), both["memory_bytes"].to_numpy())
    # Requests: kube-state-metrics' values, on every row; no limits in the testbed.
    requests = history.requests().pivot(
        "resource", index=["namespace", "pod", "container"], values="value"
    )
    spec = trace.group_by("namespace", "pod", "container").agg(
        pl.col("cpu_request").unique(), pl.col("memory_request").unique()
    )
    joined = spec.join(requests, on=["namespace", "pod", "container"])
    assert joined.height == spec.height
    for row in joined.iter_rows(named=True):
        assert row["cpu_request"] == [row["cpu"]], row
        assert row["memory_request"] == [row["memory"]], row
    assert trace["memory_limit"].null_count() == trace.height
    # OOM kills: every generated kill is on a sample of its container.
    kills = history.oom_kills()
    marked = trace.filter("oom").select("namespace", "pod", "container")
    assert sorted(marked.rows()) == sorted(kills.select("namespace", "pod", "container").rows())


def test_the_exported_trace_replays(exported: Exported, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    code = main(
        [
            "simulate",
            str(exported.path),
            "--strategy",
            "vpa,default",
            "-o",
            "json",
            "-q",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    results = json.loads(out)
    assert [r["strategy"] for r in results] == ["vpa", "default"]
    workloads = {(w.namespace, w.name) for w in DEFAULT_SPEC}
    for result in results:
        assert {(w["namespace"], w["workload"]) for w in result["workloads"]} == workloads
        assert result["cpu_request_core_hours"] > 0
        assert result["resizes"] > 0  # the generated requests are not what usage needs


def test_workloads_from_a_pod_label(exported: Exported, tmp_path: Path) -> None:
    path = tmp_path / "by-label.parquet"
    assert export(exported.instance, exported.until, path, "--workload-label", "app") == 0
    by_label = pl.read_parquet(path)
    keys = ["pod", "workload"]
    assert set(by_label.select(keys).unique().rows()) == set(
        exported.trace.select(keys).unique().rows()
    )


def test_pod_names_give_their_workloads() -> None:
    assert workload_of_pod("web-7c9f6d5b8d-x2x4z") == "web"
    assert workload_of_pod("node-exporter-bq5tw") == "node-exporter"
    assert workload_of_pod("postgres-0") == "postgres"
    assert workload_of_pod("standalone") == "standalone"


def test_errors_exit_2_naming_the_problem(
    exported: Exported, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    out = tmp_path / "never.parquet"
    assert main(["simulate", "--export-from-prometheus", exported.instance.url, str(out)]) == 2
    assert "needs at least one --namespace" in capsys.readouterr().err
    dead = "http://127.0.0.1:9"
    code = main(["simulate", "--export-from-prometheus", dead, "--namespace", "shop", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert dead in err and "'shop'" in err and "unreachable" in err
    assert not out.exists()
