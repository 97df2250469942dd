"""`vpa-fleet run` on the testbed serves its own /metrics: after the first tick the counters
hold exactly the figures the tick report printed, /readyz and /healthz answer 200, and the
endpoint goes away on Ctrl-C."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from recommender.kube.rest import KubeClient, load_api_client
from testbed.cluster import ControlPlane
from testbed.demo import DEMO, Demo, start_demo
from tests.integration.runs import run_argv

TICK = re.compile(
    r"tick 1: (?P<vpas>\d+) VPA\(s\) in (?P<namespaces>\d+) namespace\(s\), (?P<queries>\d+) "
    r"Prometheus queries, (?P<samples>\d+) samples, (?P<writes>\d+) status write\(s\), "
    r"(?P<unchanged>\d+) unchanged, (?P<errors>\d+) error\(s\), (?P<seconds>[\d.]+) s"
)


@dataclass
class Cluster:
    kubeconfig: Path
    demo: Demo
    namespaces: list[str]


@pytest.fixture(scope="module")
def cluster(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    kube = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    demo = start_demo(
        tmp_path_factory.mktemp("metrics-endpoint"),
        kube,
        DEMO,
        days=2,
        namespace_prefix=f"m{uuid.uuid4().hex[:4]}-",
        end=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10),
    )
    try:
        yield Cluster(control_plane.kubeconfig, demo, sorted({w.namespace for w in demo.workloads}))
    finally:
        demo.stop()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _probes(metrics_url: str) -> dict[str, tuple[int, str]]:
    """The probes the chart points the kubelet at, beside /metrics: status and text."""
    base = metrics_url.removesuffix("/metrics")
    answers = {
        probe: requests.get(f"{base}/{probe}", timeout=10) for probe in ("readyz", "healthz")
    }
    return {probe: (answer.status_code, answer.text) for probe, answer in answers.items()}


def test_metrics_after_a_tick_match_its_report(cluster: Cluster) -> None:
    argv = run_argv(
        cluster.kubeconfig,
        cluster.demo.prometheus.url,
        cluster.namespaces,
        "--history-days",
        "1",
        "--tick-interval",
        "3600",  # one tick, then the process waits: /metrics is read meanwhile
        "--set",
        "metrics.port=0",
    )
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    lines: list[str] = []
    url = report = None
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and report is None:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if found := re.match(r"metrics:\s+(http://127\.0\.0\.1:\d+/metrics)$", line.strip()):
                url = found[1]
            report = TICK.match(line.strip())
        assert url is not None and report is not None, "".join(lines)
        # The counters are updated before the report is printed: nothing to wait for.
        answer = requests.get(url, timeout=10)
        assert answer.status_code == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        samples = _samples(answer.text)
        probes = _probes(url)
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=120)
    output = "".join(lines) + rest
    assert process.returncode == 0, output[-3000:]

    for probe, (status, text) in probes.items():
        assert status == 200 and text.startswith("ok: last progress"), (probe, text)

    labels = (("cluster", "testbed"),)
    figures = {name: int(value) for name, value in report.groupdict().items() if name != "seconds"}
    ours = [w for w in cluster.demo.workloads if w.vpa and w.vpa.recommender == "vpa-fleet"]
    assert figures["writes"] == len(ours) == figures["vpas"], output  # each written once
    assert figures["samples"] > 0 and figures["queries"] > 0
    assert samples["vpa_fleet_ticks_total", labels] == 1
    assert samples["vpa_fleet_status_writes_total", labels] == figures["writes"]
    assert samples["vpa_fleet_status_unchanged_total", labels] == figures["unchanged"]
    assert samples["vpa_fleet_errors_total", labels] == figures["errors"]
    assert samples["vpa_fleet_prometheus_queries_total", labels] == figures["queries"]
    assert samples["vpa_fleet_samples_ingested_total", labels] == figures["samples"]
    assert samples["vpa_fleet_vpas", labels] == figures["vpas"]
    assert samples["vpa_fleet_namespaces", labels] == figures["namespaces"]
    assert samples["vpa_fleet_leader", labels] == 1
    assert samples["vpa_fleet_tick_seconds_count", labels] == 1
    printed = float(report["seconds"])
    assert abs(samples["vpa_fleet_tick_seconds_sum", labels] - printed) < 0.01
    written = (("cluster", "testbed"), ("outcome", "written"))
    assert samples["vpa_fleet_vpa_results_total", written] == figures["writes"]
    assert (
        dt.datetime.now(dt.UTC).timestamp()
        - samples["vpa_fleet_last_tick_timestamp_seconds", labels]
        < 300
    )
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)
