"""A real Prometheus with 8 days of backfilled history returns exactly what was generated.

Queries are the ones the recommender issues: one range query per namespace over the whole
history, filtered like the VPA recommender's (`container!="", container!="POD"`).

Without `prometheus`/`promtool` these tests fail (never skip) with the install hint.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from prometheus_api_client import PrometheusConnect

from testbed.process import TestbedError
from testbed.prometheus import (
    PrometheusInstance,
    prometheus_binaries,
    start_prometheus,
    start_prometheus_with_history,
)
from testbed.series import DEFAULT_SPEC, ContainerSeries, SyntheticHistory

pytestmark = pytest.mark.integration

DAYS = 8
STEP_S = 120  # 5,760 points per series over 8 days: under Prometheus' 11,000 per series
# Evaluate between samples (they are on whole minutes): a window boundary never coincides
# with a sample, so the [5m] window holds the same 5 samples whether the range is closed
# (Prometheus 2.x) or left-open (3.x) at its start.
OFFSET_S = 30
WINDOW_S = 300


def cadvisor(metric: str, namespace: str) -> str:
    """The VPA recommender's selector: containers only, not the pod cgroup or pause."""
    return (
        f'{metric}{{job="kubernetes-cadvisor",namespace="{namespace}",'
        'container!="",container!="POD"}'
    )


@dataclass
class Backfilled:
    instance: PrometheusInstance
    history: SyntheticHistory
    client: PrometheusConnect

    def at(self, seconds: int) -> datetime:
        return datetime.fromtimestamp(seconds, UTC)

    def grid(self, step_s: int = STEP_S) -> tuple[int, int]:
        """First and last evaluation time: OFFSET_S after a sample, the last one after the
        last sample, as many steps back as fit in the history."""
        time_range = self.history.time_range
        last = time_range.end_s + OFFSET_S
        return last - (time_range.end_s - time_range.start_s) // step_s * step_s, last

    def range_query(self, query: str, step_s: int = STEP_S) -> list[dict[str, Any]]:
        """`query` over the whole history, evaluated OFFSET_S after each sample time."""
        first, last = self.grid(step_s)
        result: list[dict[str, Any]] = self.client.custom_query_range(
            query,
            start_time=self.at(first),
            end_time=self.at(last),
            step=str(step_s),
        )
        return result

    def instant_query(self, query: str) -> dict[str, Any]:
        """The raw API answer (with resultType) at the end of the history."""
        response = requests.get(
            f"{self.instance.url}/api/v1/query",
            params={"query": query, "time": str(self.history.time_range.end_s + OFFSET_S)},
            timeout=30,
        )
        response.raise_for_status()
        data: dict[str, Any] = response.json()["data"]
        return data


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backfilled]:
    instance, history = start_prometheus_with_history(
        tmp_path_factory.mktemp("prometheus"), DEFAULT_SPEC, days=DAYS, step_s=60
    )
    try:
        timings = ", ".join(f"{k} {v:.2f}" for k, v in instance.timings.items())
        print(f"\nPrometheus testbed at {instance.url}: {timings}")
        yield Backfilled(instance, history, PrometheusConnect(url=instance.url, disable_ssl=True))
    finally:
        instance.stop()


def by_container(result: list[dict[str, Any]]) -> dict[tuple[str, str], list[list[Any]]]:
    return {(s["metric"]["pod"], s["metric"]["container"]): s["values"] for s in result}


def container(history: SyntheticHistory, pod: str, name: str) -> ContainerSeries:
    return next(c for c in history.containers if (c.pod, c.container) == (pod, name))


def test_prometheus_binaries_are_installed() -> None:
    prometheus, promtool = prometheus_binaries()  # fails with the install hint when missing
    assert prometheus.name == "prometheus"
    assert promtool.name == "promtool"


def test_missing_binary_names_it_and_the_install_script(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "testbed.prometheus.shutil.which",
        lambda name: None if name == "promtool" else f"/opt/bin/{name}",
    )
    monkeypatch.setattr("testbed.prometheus.os.access", lambda *_: False)
    with pytest.raises(TestbedError, match=r"install-prometheus\.sh") as error:
        prometheus_binaries()
    assert "promtool not found" in str(error.value)


def test_backfill_makes_few_blocks_and_reports_timings(backfilled: Backfilled) -> None:
    timings = backfilled.instance.timings
    assert set(timings) == {"generate_s", "backfill_s", "start_s"}
    blocks = [p for p in backfilled.instance.data_dir.iterdir() if (p / "meta.json").exists()]
    assert 1 <= len(blocks) <= 4, f"expected a few large blocks, got {len(blocks)}"


@pytest.mark.parametrize("namespace", sorted({w.namespace for w in DEFAULT_SPEC}))
def test_cpu_rate_per_namespace_matches_generated_usage(
    backfilled: Backfilled, namespace: str
) -> None:
    history = backfilled.history
    time_range = history.time_range
    series = by_container(
        backfilled.range_query(
            f"rate({cadvisor('container_cpu_usage_seconds_total', namespace)}[5m])"
        )
    )

    assert set(series) == history.container_keys(namespace)
    timestamps = time_range.timestamps()
    step = time_range.step_s
    for (pod, name), values in series.items():
        got_t = np.array([int(t) for t, _ in values])
        got = np.array([float(v) for _, v in values])
        # The whole 8 days: from the first window with two samples to the last sample.
        assert got_t[0] <= time_range.start_s + WINDOW_S
        assert got_t[-1] == time_range.end_s + OFFSET_S
        # Where the window lies inside the history, rate() is the counter's slope over the
        # 4 steps of its 5 samples: the mean generated usage of those steps, in cores.
        full = got_t - WINDOW_S >= time_range.start_s
        last = np.searchsorted(timestamps, got_t[full] - OFFSET_S)
        counter = container(history, pod, name).cpu_seconds_total
        expected = (counter[last] - counter[last - 4]) / (4 * step)
        assert full.sum() >= len(values) - 3
        np.testing.assert_allclose(got[full], expected, rtol=1e-6, err_msg=f"{pod}/{name}")


@pytest.mark.parametrize("namespace", sorted({w.namespace for w in DEFAULT_SPEC}))
def test_memory_per_namespace_matches_generated_working_set(
    backfilled: Backfilled, namespace: str
) -> None:
    history = backfilled.history
    time_range = history.time_range
    series = by_container(
        backfilled.range_query(cadvisor("container_memory_working_set_bytes", namespace))
    )

    assert set(series) == history.container_keys(namespace)
    timestamps = time_range.timestamps()
    for (pod, name), values in series.items():
        got_t = np.array([int(t) for t, _ in values])
        first, last = backfilled.grid()
        assert got_t[0] == first < time_range.start_s + STEP_S
        assert got_t[-1] == last
        assert len(values) == (last - first) // STEP_S + 1
        # A gauge reads the latest sample; bytes are whole numbers stored exactly.
        expected = container(history, pod, name).memory_bytes[
            np.searchsorted(timestamps, got_t - OFFSET_S)
        ]
        got = np.array([float(v) for _, v in values])
        np.testing.assert_array_equal(got, expected.astype(np.float64), err_msg=f"{pod}/{name}")


@pytest.mark.parametrize("namespace", sorted({w.namespace for w in DEFAULT_SPEC}))
def test_requests_per_namespace_match_the_spec(backfilled: Backfilled, namespace: str) -> None:
    result = backfilled.range_query(
        f'kube_pod_container_resource_requests{{job="kube-state-metrics",namespace="{namespace}"}}',
        step_s=3600,
    )
    truth = backfilled.history.requests().filter(namespace=namespace)
    expected = {
        (row["pod"], row["container"], row["resource"], row["unit"]): row["value"]
        for row in truth.iter_rows(named=True)
    }
    got: dict[tuple[str, str, str, str], set[float]] = {
        (m["pod"], m["container"], m["resource"], m["unit"]): {float(v) for _, v in s["values"]}
        for s in result
        for m in [s["metric"]]
    }
    assert set(got) == set(expected)
    for key, values in got.items():
        assert values == {expected[key]}, key
    assert all(len(s["values"]) == DAYS * 24 for s in result)


def test_pod_level_series_exist_and_the_selector_drops_them(backfilled: Backfilled) -> None:
    data = backfilled.instant_query(
        'container_cpu_usage_seconds_total{job="kubernetes-cadvisor",container=""}'
    )
    pods = {s["metric"]["pod"] for s in data["result"]}
    assert pods == {c.pod for c in backfilled.history.containers}


def test_oom_kills_are_visible(backfilled: Backfilled) -> None:
    history = backfilled.history
    killed = {(c.pod, c.container): len(c.oom_times_s) for c in history.containers}
    events = backfilled.instant_query('container_oom_events_total{job="kubernetes-cadvisor"}')
    got = {
        (s["metric"]["pod"], s["metric"]["container"]): int(s["value"][1]) for s in events["result"]
    }
    assert got == killed

    reasons = backfilled.instant_query(
        'kube_pod_container_status_last_terminated_reason{reason="OOMKilled"}'
    )
    assert {(s["metric"]["pod"], s["metric"]["container"]) for s in reasons["result"]} == {
        key for key, count in killed.items() if count
    }


def test_pod_labels_answer_the_vpa_recommender_as_a_matrix(backfilled: Backfilled) -> None:
    # The VPA recommender's --metric-for-pod-labels must return a matrix (autoscaler#3478).
    data = backfilled.instant_query(f'kube_pod_labels{{job="kube-state-metrics"}}[{DAYS}d]')
    assert data["resultType"] == "matrix"
    got = {
        (s["metric"]["namespace"], s["metric"]["pod"], s["metric"]["label_app"])
        for s in data["result"]
    }
    assert got == {(c.namespace, c.pod, c.workload) for c in backfilled.history.containers}


def test_prometheus_listens_on_loopback_only(backfilled: Backfilled) -> None:
    pid = backfilled.instance.process.popen.pid
    sockets = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    mine = [line.split()[3] for line in sockets.splitlines() if f"pid={pid}," in line]
    assert mine == [backfilled.instance.url.removeprefix("http://")]


def test_start_failure_raises_with_the_log_errors(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "wal").touch()  # a file where the TSDB needs its WAL directory
    try:
        instance = start_prometheus(tmp_path, timeout_s=20)
    except TestbedError as error:
        message = str(error)
    else:
        instance.stop()
        pytest.fail("Prometheus started on a broken data directory")
    assert message.startswith("errors in the Prometheus log:\n")
    assert "opening storage failed" in message
    assert "prometheus exited before" in message
    assert str(tmp_path / "logs" / "prometheus.log") in message


def test_bad_flag_error_comes_before_the_usage_text(tmp_path: Path) -> None:
    with pytest.raises(TestbedError) as error:
        start_prometheus(tmp_path, retention="thirty days")
    assert str(error.value).startswith(
        "errors in the Prometheus log:\nError parsing commandline arguments: not a valid duration"
    )


def test_backfill_failure_says_why(tmp_path: Path) -> None:
    openmetrics = tmp_path / "om.txt"
    openmetrics.write_text("# TYPE up gauge\nup 1 1700000000\n")  # no "# EOF"
    with pytest.raises(TestbedError, match="EOF"):
        start_prometheus(tmp_path, openmetrics=openmetrics)
