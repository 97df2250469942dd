"""Malformed answers from a real Prometheus: NaN, +Inf and negative samples, a duplicate series
(the same container scraped twice) and series without a pod label, backfilled into one
Prometheus; a twin Prometheus holds the same history with those samples simply absent. The
loop drops and counts every bad sample, and recommends exactly what it recommends from the
clean twin."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path

import pytest

from analytics.sources.prometheus import PrometheusHistory, load_config
from recommender.kube.rest import KubeClient, load_api_client
from recommender.loop.cluster import ClusterRecommender, LoopOptions
from testbed.cluster import ControlPlane
from testbed.demo import DemoWorkload, deploy, history_spec
from testbed.prometheus import start_prometheus
from testbed.series import MI, ContainerSpec, SyntheticHistory

APP = ContainerSpec("app", 0.2, 200 * MI, 0.25, 256 * MI, memory_shape="diurnal")
MEMORY = "container_memory_working_set_bytes"


def _spoil(clean: str, namespace: str, pods: dict[str, str]) -> tuple[str, str, int]:
    """(the history with bad samples, the same history with those samples left out, how many
    bad values were put in). `pods`: workload name -> its pod."""
    bad_values = ["NaN", "+Inf", "-1"]
    spoiled_lines: list[str] = []
    absent_lines: list[str] = []
    seen_of_a = 0
    put = 0
    memory_of = {
        name: f'{MEMORY}{{job="kubernetes-cadvisor",namespace="{namespace}",pod="{pod}",'
        f'container="app"}} '
        for name, pod in pods.items()
    }
    duplicate: list[str] = []
    for line in clean.splitlines(keepends=True):
        if line.startswith(memory_of["a"]):
            # Every 20th sample of a's memory: NaN, +Inf, -1 in turn.
            seen_of_a += 1
            if seen_of_a % 20 == 0:
                _value, stamp = line[len(memory_of["a"]) :].split()
                spoiled_lines.append(f"{memory_of['a']}{bad_values[put % 3]} {stamp}\n")
                put += 1
                continue
        if line.startswith(memory_of["b"]):
            # b's memory again from a second scrape of the same job: a duplicate series.
            duplicate.append(line.replace("job=", 'instance="twin",job='))
        elif duplicate:
            spoiled_lines.extend(duplicate)
            duplicate = []
        if line.startswith(memory_of["c"]):
            # c's memory once more without a pod label.
            without_pod = re.sub(r',pod="[^"]*"', "", line)
            spoiled_lines.append(line)
            absent_lines.append(line)
            spoiled_lines.append(without_pod)
            continue
        spoiled_lines.append(line)
        absent_lines.append(line)
    return "".join(spoiled_lines), "".join(absent_lines), put


def test_bad_samples_are_dropped_counted_and_change_nothing_else(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> None:
    kube = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    namespace = f"badprom-{uuid.uuid4().hex[:5]}"
    workloads = tuple(DemoWorkload("Deployment", namespace, n, 1, (APP,)) for n in "abc")
    pods = deploy(kube, workloads)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    history = SyntheticHistory.generate(
        history_spec(workloads, pods), days=0.25, step_s=60, end=now - dt.timedelta(minutes=10)
    )
    work = Path(tmp_path_factory.mktemp("bad-prometheus"))
    history.write_openmetrics(work / "clean.om.txt")
    spoiled, absent, put = _spoil(
        (work / "clean.om.txt").read_text(),
        namespace,
        {name: pods[(namespace, name)][0] for name in "abc"},
    )
    assert put >= 3
    (work / "spoiled.om.txt").write_text(spoiled)
    (work / "absent.om.txt").write_text(absent)
    bad = start_prometheus(work / "spoiled", openmetrics=work / "spoiled.om.txt")
    twin = start_prometheus(work / "absent", openmetrics=work / "absent.om.txt")
    try:
        start, end = now - dt.timedelta(days=1), now
        dropped = (
            PrometheusHistory(load_config({"connection": {"url": bad.url}}))
            .fetch(namespace, start, end)
            .dropped
        )
        clean = (
            PrometheusHistory(load_config({"connection": {"url": twin.url}}))
            .fetch(namespace, start, end)
            .dropped
        )
        drops = {reason: n for reason, n in dropped.items() if n and clean[reason] != n}
        assert any("nan" in r for r in drops), dropped
        assert any("infinite" in r for r in drops), dropped
        assert any("negative" in r for r in drops), dropped
        assert any("duplicate" in r for r in drops), dropped
        assert any("missing_pod" in r for r in drops), dropped

        results = {}
        for name, url in (("spoiled", bad.url), ("absent", twin.url)):
            options = LoopOptions(namespaces=(namespace,), history=dt.timedelta(days=1))
            recommender = ClusterRecommender(
                kube,
                PrometheusHistory(load_config({"connection": {"url": url}})),
                options,
                checkpoints=False,
                clock=lambda: now,
            )
            recommender.start()
            try:
                report = recommender.tick()
            finally:
                recommender.stop()
            assert not report.errors
            results[name] = {r.key: r.recommendations for r in report.results}
        assert set(results["spoiled"]) == {f"{namespace}/{n}" for n in "abc"}
        assert all(results["spoiled"].values()), "every VPA got a recommendation"
        assert results["spoiled"] == results["absent"]
    finally:
        bad.stop()
        twin.stop()
