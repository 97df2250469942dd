"""The synthetic history generator: OpenMetrics that promtool accepts, and its ground truth."""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from testbed.series import (
    CADVISOR_JOB,
    DEFAULT_SPEC,
    KSM_JOB,
    ContainerSpec,
    SyntheticHistory,
    TimeRange,
    WorkloadSpec,
    pod_names,
)

END = 1_800_000_000  # a fixed end keeps the tests independent of the clock
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+) (\d+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Labels = tuple[tuple[str, str], ...]


@dataclass
class Parsed:
    families: list[tuple[str, str]]  # (name, type) in file order
    samples: dict[tuple[str, Labels], list[tuple[int, float]]]  # (metric, labels) -> samples
    family_of_line: list[str]  # the family each sample line sits under
    names: list[str]  # the metric name of each sample line
    last_line: str


def parse(path: Path) -> Parsed:
    families: list[tuple[str, str]] = []
    samples: dict[tuple[str, Labels], list[tuple[int, float]]] = defaultdict(list)
    family_of_line: list[str] = []
    names: list[str] = []
    lines = path.read_text().splitlines()
    for line in lines:
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            families.append((name, kind))
        elif line.startswith("#"):
            continue
        else:
            match = _SAMPLE.match(line)
            assert match, f"not an OpenMetrics sample line: {line!r}"
            name, labels, value, ts = match.groups()
            key = (name, tuple(sorted(_LABEL.findall(labels))))
            samples[key].append((int(ts), float(value)))
            family_of_line.append(families[-1][0])
            names.append(name)
    return Parsed(families, samples, family_of_line, names, lines[-1])


@pytest.fixture(scope="module")
def history() -> SyntheticHistory:
    return SyntheticHistory.generate(DEFAULT_SPEC, days=0.5, step_s=60, end=END, seed=7)


@pytest.fixture(scope="module")
def openmetrics(history: SyntheticHistory, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("series") / "om.txt"
    history.write_openmetrics(path)
    return path


@pytest.fixture(scope="module")
def parsed(openmetrics: Path) -> Parsed:
    return parse(openmetrics)


def series_of(parsed: Parsed, metric: str) -> dict[Labels, list[tuple[int, float]]]:
    return {labels: s for (name, labels), s in parsed.samples.items() if name == metric}


def test_time_range_is_aligned_and_inclusive() -> None:
    time_range = TimeRange.ending(END + 59, days=8, step_s=60)
    assert time_range.end_s == END
    assert time_range.count == 8 * 24 * 60
    assert time_range.start_s == END - (8 * 24 * 60 - 1) * 60
    timestamps = time_range.timestamps()
    assert timestamps[0] == time_range.start_s
    assert timestamps[-1] == time_range.end_s
    assert np.all(np.diff(timestamps) == 60)


def test_file_ends_with_eof(parsed: Parsed) -> None:
    assert parsed.last_line == "# EOF"


def test_families_are_grouped_and_typed(parsed: Parsed) -> None:
    names = [name for name, _ in parsed.families]
    assert len(names) == len(set(names)), "a family appears twice"
    assert dict(parsed.families) == {
        "container_cpu_usage_seconds": "counter",
        "container_memory_working_set_bytes": "gauge",
        "container_oom_events": "counter",
        "kube_pod_container_resource_requests": "gauge",
        "kube_pod_container_status_last_terminated_reason": "gauge",
        "kube_pod_labels": "gauge",
    }
    kinds = dict(parsed.families)
    for family, name in zip(parsed.family_of_line, parsed.names, strict=True):
        expected = f"{family}_total" if kinds[family] == "counter" else family
        assert name == expected


def test_samples_are_time_ordered_in_seconds(parsed: Parsed, history: SyntheticHistory) -> None:
    time_range = history.time_range
    for key, samples in parsed.samples.items():
        timestamps = np.array([ts for ts, _ in samples])
        assert np.all(np.diff(timestamps) > 0), f"{key} is not strictly time-ordered"
        assert timestamps[0] >= time_range.start_s, key
        assert timestamps[-1] == time_range.end_s, key


def test_counters_never_decrease(parsed: Parsed) -> None:
    for metric in ("container_cpu_usage_seconds_total", "container_oom_events_total"):
        for labels, samples in series_of(parsed, metric).items():
            values = np.array([v for _, v in samples])
            assert np.all(np.diff(values) >= 0), (metric, labels)


def test_cadvisor_label_sets(parsed: Parsed, history: SyntheticHistory) -> None:
    containers = {(c.namespace, c.pod, c.container) for c in history.containers}
    pods = {(c.namespace, c.pod) for c in history.containers}
    for metric in ("container_cpu_usage_seconds_total", "container_memory_working_set_bytes"):
        with_container: set[tuple[str, str, str]] = set()
        pod_level: set[tuple[str, str]] = set()
        for labels in series_of(parsed, metric):
            found = dict(labels)
            assert found["job"] == CADVISOR_JOB
            if "container" in found:
                assert set(found) == {"job", "namespace", "pod", "container"}
                with_container.add((found["namespace"], found["pod"], found["container"]))
            else:  # the pod-level cgroup (container="" in cAdvisor)
                assert set(found) == {"job", "namespace", "pod"}
                pod_level.add((found["namespace"], found["pod"]))
        assert with_container == containers
        assert pod_level == pods
    ooms = {
        (dict(labels)["namespace"], dict(labels)["pod"], dict(labels)["container"])
        for labels in series_of(parsed, "container_oom_events_total")
    }
    assert ooms == containers


def test_kube_state_metrics_label_sets(parsed: Parsed, history: SyntheticHistory) -> None:
    requests = series_of(parsed, "kube_pod_container_resource_requests")
    assert len(requests) == 2 * len(history.containers)
    for labels in requests:
        found = dict(labels)
        assert set(found) == {"job", "namespace", "pod", "container", "resource", "unit"}
        assert found["job"] == KSM_JOB
        assert (found["resource"], found["unit"]) in {("cpu", "core"), ("memory", "byte")}

    terminated = series_of(parsed, "kube_pod_container_status_last_terminated_reason")
    killed = {c.pod: c for c in history.containers if c.oom_times_s}
    assert {dict(labels)["pod"] for labels in terminated} == set(killed)
    for labels, samples in terminated.items():
        found = dict(labels)
        assert found["reason"] == "OOMKilled"
        assert {v for _, v in samples} == {1.0}
        assert samples[0][0] == killed[found["pod"]].oom_times_s[0]  # present after the kill

    pod_labels = series_of(parsed, "kube_pod_labels")
    expected = {(c.namespace, c.pod, c.workload) for c in history.containers}
    assert {
        (dict(labels)["namespace"], dict(labels)["pod"], dict(labels)["label_app"])
        for labels in pod_labels
    } == expected
    for labels in pod_labels:
        assert set(dict(labels)) == {"job", "namespace", "pod", "label_app"}


def test_file_matches_ground_truth(parsed: Parsed, history: SyntheticHistory) -> None:
    usage = history.usage()
    assert usage.height == len(history.containers) * history.time_range.count
    for c in history.containers:
        key = (
            ("container", c.container),
            ("job", CADVISOR_JOB),
            ("namespace", c.namespace),
            ("pod", c.pod),
        )
        cpu = parsed.samples[("container_cpu_usage_seconds_total", key)]
        memory = parsed.samples[("container_memory_working_set_bytes", key)]
        truth = usage.filter(pl.col("pod") == c.pod, pl.col("container") == c.container)
        # Values round-trip exactly: Prometheus will store what the ground truth says.
        assert [v for _, v in cpu] == truth["cpu_seconds_total"].to_list()
        assert [int(v) for _, v in memory] == truth["memory_bytes"].to_list()
        assert [ts for ts, _ in cpu] == truth["timestamp_s"].to_list()
        increase = np.diff(truth["cpu_seconds_total"].to_numpy())
        step = history.time_range.step_s
        assert np.allclose(increase / step, truth["cpu_cores"].to_numpy()[1:], rtol=1e-9)


def test_requests_match_spec(parsed: Parsed, history: SyntheticHistory) -> None:
    requests = series_of(parsed, "kube_pod_container_resource_requests")
    frame = history.requests()
    assert frame.height == len(requests)
    for labels, samples in requests.items():
        found = dict(labels)
        row = frame.filter(
            pl.col("pod") == found["pod"],
            pl.col("container") == found["container"],
            pl.col("resource") == found["resource"],
        )
        assert {v for _, v in samples} == {row["value"].item()}


def test_oom_kills_follow_the_spec(history: SyntheticHistory) -> None:
    kills = history.oom_kills()
    for c in history.containers:
        mine = kills.filter(pl.col("pod") == c.pod, pl.col("container") == c.container)
        assert mine.height == c.spec.oom_kills
        assert c.oom_events_total[-1] == c.spec.oom_kills
        timestamps = history.time_range.timestamps()
        for ts in mine["timestamp_s"]:
            at = int(np.searchsorted(timestamps, ts))
            # the working set reaches the limit, above the request, when the kill happens
            assert c.memory_bytes[at] > c.spec.memory_request_bytes
            assert c.memory_bytes[at] > c.memory_bytes[at + 1]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    def digest(seed: int, name: str) -> str:
        path = tmp_path / name
        SyntheticHistory.generate(days=0.1, end=END, seed=seed).write_openmetrics(path)
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert digest(1, "a.txt") == digest(1, "b.txt")
    assert digest(1, "a.txt") != digest(2, "c.txt")


def test_adding_a_workload_keeps_the_others(history: SyntheticHistory) -> None:
    extra = WorkloadSpec("other", "api", 2, (ContainerSpec("api", 0.1, 10**8, 0.1, 10**8),))
    bigger = SyntheticHistory.generate((*DEFAULT_SPEC, extra), days=0.5, step_s=60, end=END, seed=7)
    for before, after in zip(history.containers, bigger.containers, strict=False):
        assert (before.pod, before.container) == (after.pod, after.container)
        assert np.array_equal(before.cpu_seconds_total, after.cpu_seconds_total)
        assert np.array_equal(before.memory_bytes, after.memory_bytes)
    assert bigger.container_keys("other") == {(p, "api") for p in pod_names(extra, 7)}


def test_shapes_keep_their_mean_and_character() -> None:
    spec = (
        WorkloadSpec(
            "ns",
            "w",
            1,
            (
                ContainerSpec("steady", 1.0, 10**9, 1.0, 10**9),
                ContainerSpec("diurnal", 1.0, 10**9, 1.0, 10**9, cpu_shape="diurnal"),
                ContainerSpec("spiky", 1.0, 10**9, 1.0, 10**9, cpu_shape="spiky"),
            ),
        ),
    )
    history = SyntheticHistory.generate(spec, days=4, step_s=60, end=END)
    cpu = {c.container: c.cpu_cores for c in history.containers}
    assert cpu["steady"].mean() == pytest.approx(1.0, rel=0.01)
    assert cpu["steady"].std() < 0.05
    assert cpu["diurnal"].mean() == pytest.approx(1.0, rel=0.02)
    assert cpu["diurnal"].max() > 1.5 and cpu["diurnal"].min() < 0.5  # a day/night cycle
    assert cpu["spiky"].max() > 1.5 and np.median(cpu["spiky"]) < 0.8  # rare high spikes
    assert all(v.min() > 0 for v in cpu.values())


def test_pod_names_look_like_replicaset_pods() -> None:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes uses for generated names
    names = pod_names(DEFAULT_SPEC[0], seed=0)
    assert len(names) == DEFAULT_SPEC[0].pods == len(set(names))
    for name in names:
        assert re.fullmatch(rf"web-[{alphabet}]{{10}}-[{alphabet}]{{5}}", name)


def test_given_pod_names_replace_generated_ones() -> None:
    container = ContainerSpec("api", 0.1, 10**8, 0.1, 10**8)
    generated = WorkloadSpec("ns", "api", 2, (container,))
    real = ["api-7d9c8b6f5d-x2kqz", "api-7d9c8b6f5d-m4wpl"]
    named = WorkloadSpec("ns", "api", 2, (container,), pod_names=tuple(real))
    assert pod_names(named, seed=0) == real
    history = SyntheticHistory.generate((generated, named), days=0.1, end=END, seed=7)
    pods = [c.pod for c in history.containers]
    assert pods == [*pod_names(generated, 7), *real]
    # A list is accepted and kept as a tuple, so that the spec stays hashable.
    as_list = WorkloadSpec("ns", "api", 2, (container,), pod_names=real)  # type: ignore[arg-type]
    assert as_list == named
    assert hash(as_list) == hash(named)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (("api-0",), "workload ns/api has 2 pods but 1 pod names"),
        (("api-0", "api-1", "api-2"), "workload ns/api has 2 pods but 3 pod names"),
        (("api-0", "api-0"), "workload ns/api has duplicate pod names"),
    ],
)
def test_pod_names_must_match_the_pods(names: tuple[str, ...], message: str) -> None:
    container = ContainerSpec("api", 0.1, 10**8, 0.1, 10**8)
    with pytest.raises(ValueError, match=re.escape(message)):
        WorkloadSpec("ns", "api", 2, (container,), pod_names=names)


def test_a_range_too_short_for_an_oom_ramp_has_no_kills() -> None:
    spec = (WorkloadSpec("ns", "w", 1, (ContainerSpec("c", 0.1, 10**8, 0.1, 10**8, oom_kills=2),)),)
    # 14 samples at 60 s: shorter than the 15-minute climb to the limit before a kill.
    history = SyntheticHistory.generate(spec, days=0.01, step_s=60, end=END)
    assert history.time_range.count == 14
    assert history.containers[0].oom_times_s == ()
    longer = SyntheticHistory.generate(spec, days=0.02, step_s=60, end=END)
    assert len(longer.containers[0].oom_times_s) == 2
