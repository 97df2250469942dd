"""Seeded synthetic history for Prometheus: cAdvisor- and kube-state-metrics-style series.

A spec (namespaces, workloads, pods, containers with usage shapes and requests) and a time
range become per-container usage arrays (numpy), which are written as OpenMetrics text for
`promtool tsdb create-blocks-from openmetrics` and kept as ground truth (polars) so that tests
can compare what Prometheus returns with what was generated.

Units: CPU in cores (usage) and core-seconds (counter), memory in bytes, timestamps in Unix
SECONDS (promtool silently accepts milliseconds and puts them ~56,000 years in the future).

The same spec, range and seed always give the same bytes. Each container draws from its own
random stream, keyed by its names, so adding a workload does not change the others.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

Shape = Literal["steady", "diurnal", "spiky"]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

CADVISOR_JOB = "kubernetes-cadvisor"
KSM_JOB = "kube-state-metrics"
DAY_S = 86_400
MI = 1024**2
GI = 1024**3


@dataclass(frozen=True)
class ContainerSpec:
    """One container of a workload; every pod of the workload runs it.

    `cpu_cores` and `memory_bytes` are the mean usage of the shape; requests are what
    kube-state-metrics reports. `oom_kills` is the number of OOM kills per pod over the range.
    """

    name: str
    cpu_cores: float
    memory_bytes: int
    cpu_request_cores: float
    memory_request_bytes: int
    cpu_shape: Shape = "steady"
    memory_shape: Shape = "steady"
    oom_kills: int = 0


@dataclass(frozen=True)
class WorkloadSpec:
    """A workload of `pods` pods. Without `pod_names` they get generated ReplicaSet-style names,
    `<name>-<hash>-<suffix>`; with them (one distinct name per pod) the history uses those
    names, e.g. those of the pods that a cluster's controllers actually created."""

    namespace: str
    name: str
    pods: int
    containers: tuple[ContainerSpec, ...]
    pod_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.pod_names is None:
            return
        names = tuple(self.pod_names)  # a list would make the spec unhashable
        object.__setattr__(self, "pod_names", names)
        where = f"workload {self.namespace}/{self.name}"
        if len(names) != self.pods:
            raise ValueError(f"{where} has {self.pods} pods but {len(names)} pod names")
        if len(set(names)) != len(names):
            raise ValueError(f"{where} has duplicate pod names: {sorted(names)}")


def container(
    name: str,
    cpu: float,
    mem_mi: int,
    req_cpu: float,
    req_mem_mi: int,
    *,
    cpu_shape: Shape = "steady",
    mem_shape: Shape = "steady",
    ooms: int = 0,
) -> ContainerSpec:
    """A ContainerSpec from cores and MiB, as the specs here and in testbed.demo write them."""
    return ContainerSpec(
        name,
        cpu_cores=cpu,
        memory_bytes=mem_mi * MI,
        cpu_request_cores=req_cpu,
        memory_request_bytes=req_mem_mi * MI,
        cpu_shape=cpu_shape,
        memory_shape=mem_shape,
        oom_kills=ooms,
    )


# Two namespaces, six workloads, eleven pods, fourteen containers: every shape, sidecars,
# single- and multi-replica workloads, and containers with OOM kills.
DEFAULT_SPEC: tuple[WorkloadSpec, ...] = (
    WorkloadSpec(
        "shop",
        "web",
        3,
        (
            container("web", 0.40, 300, 0.5, 512, cpu_shape="diurnal"),
            container("envoy", 0.05, 60, 0.1, 128, cpu_shape="diurnal"),
        ),
    ),
    WorkloadSpec(
        "shop",
        "cart",
        2,
        (container("cart", 0.20, 200, 0.25, 256, cpu_shape="spiky", mem_shape="diurnal", ooms=2),),
    ),
    WorkloadSpec("shop", "redis", 1, (container("redis", 0.10, 1024, 0.2, 1536),)),
    WorkloadSpec(
        "batch",
        "etl",
        2,
        (container("etl", 1.50, 2048, 1.0, 2048, cpu_shape="spiky", mem_shape="spiky", ooms=1),),
    ),
    WorkloadSpec("batch", "scheduler", 1, (container("scheduler", 0.02, 64, 0.05, 64),)),
    WorkloadSpec(
        "batch",
        "reports",
        2,
        (container("reports", 0.30, 512, 0.5, 768, cpu_shape="diurnal", mem_shape="diurnal"),),
    ),
)


@dataclass(frozen=True)
class TimeRange:
    """Sample timestamps `start_s, start_s + step_s, ..., end_s` (Unix seconds, inclusive)."""

    start_s: int
    end_s: int
    step_s: int

    @classmethod
    def ending(cls, end: datetime | float | None, days: float = 8, step_s: int = 60) -> TimeRange:
        """`days` of samples ending at `end` (default now), aligned down to a multiple of step."""
        if step_s <= 0:
            raise ValueError(f"step_s must be positive, got {step_s}")
        if end is None:
            end = datetime.now().timestamp()
        elif isinstance(end, datetime):
            end = end.timestamp()
        end_s = int(end) // step_s * step_s
        count = int(days * DAY_S) // step_s
        if count < 1:
            raise ValueError(f"{days} days at {step_s} s is not even one sample")
        return cls(start_s=end_s - (count - 1) * step_s, end_s=end_s, step_s=step_s)

    @property
    def count(self) -> int:
        return (self.end_s - self.start_s) // self.step_s + 1

    def timestamps(self) -> IntArray:
        return np.arange(self.start_s, self.end_s + 1, self.step_s, dtype=np.int64)


@dataclass(frozen=True, eq=False)  # arrays have no single truth value; compare fields
class ContainerSeries:
    """The generated history of one container in one pod, one value per timestamp."""

    namespace: str
    workload: str
    pod: str
    spec: ContainerSpec
    cpu_cores: FloatArray  # mean usage over the step ending at each timestamp, cores
    cpu_seconds_total: FloatArray  # the cAdvisor counter, core-seconds, monotonic
    memory_bytes: IntArray  # working set, bytes
    oom_events_total: IntArray  # cumulative OOM kills
    oom_times_s: tuple[int, ...]  # timestamps at which the container was OOM-killed

    @property
    def container(self) -> str:
        return self.spec.name


def _rng(seed: int, *keys: str) -> np.random.Generator:
    # crc32 of the names, not hash(): Python salts str hashes per process.
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


_POD_ALPHABET = np.array(list("bcdfghjklmnpqrstvwxz2456789"))


def pod_names(workload: WorkloadSpec, seed: int) -> list[str]:
    """The workload's `pod_names` when it has them; else ReplicaSet-style names,
    `<workload>-<10 chars>-<5 chars>`, stable for a seed."""
    if workload.pod_names is not None:
        return list(workload.pod_names)
    rng = _rng(seed, workload.namespace, workload.name, "pods")
    template = "".join(rng.choice(_POD_ALPHABET, 10))
    return [
        f"{workload.name}-{template}-{''.join(rng.choice(_POD_ALPHABET, 5))}"
        for _ in range(workload.pods)
    ]


def _shape(
    kind: Shape, mean: float, t: IntArray, rng: np.random.Generator, spike_gain: float
) -> FloatArray:
    """Usage with the given mean; diurnal peaks mid-afternoon UTC, spikes last 5-20 min."""
    n = t.size
    noise = 1.0 + 0.03 * rng.standard_normal(n)
    if kind == "steady":
        out = mean * noise
    elif kind == "diurnal":
        phase = rng.uniform(-0.05, 0.05)  # replicas do not peak at exactly the same minute
        day = (t % DAY_S) / DAY_S
        out = mean * (1.0 + 0.6 * np.sin(2 * math.pi * (day - 0.375 + phase))) * noise
    elif kind == "spiky":
        out = 0.7 * mean * noise
        step_s = int(t[1] - t[0]) if n > 1 else 60
        # About one spike every two hours, 5-20 minutes long, spike_gain x the mean at most.
        for _ in range(rng.poisson(n * step_s / 7_200)):
            first = int(rng.integers(0, n))
            length = max(1, int(rng.integers(300, 1_200)) // step_s)
            out[first : first + length] = mean * rng.uniform(1.5, spike_gain)
    else:
        raise ValueError(f"unknown usage shape {kind!r}")
    return np.maximum(out, 0.001 * mean)


def _oom_kills(
    memory: FloatArray, count: int, request: int, rng: np.random.Generator, step_s: int
) -> tuple[FloatArray, list[int]]:
    """Indexes of `count` OOM kills; memory climbs to the (unexported) limit before each one.

    The limit is 1.5x the larger of the request and the usual peak; the 15 minutes before a
    kill ramp up to it, and the restarted container starts again at its normal level. A range
    too short for a ramp and a restart has no kills.
    """
    n = memory.size
    ramp = max(2, 900 // step_s)
    if count == 0 or n < ramp + 2:
        return memory, []
    limit = 1.5 * max(float(request), float(np.percentile(memory, 99)))
    # Kills spread over the range, away from its edges, at least a ramp apart.
    slots = np.linspace(ramp + 1, n - 2, count + 2)[1:-1]
    jitter = rng.uniform(-0.3, 0.3, count) * (n / (count + 1))
    kills = sorted(
        {int(np.clip(s + j, ramp + 1, n - 2)) for s, j in zip(slots, jitter, strict=True)}
    )
    out = memory.copy()
    for kill in kills:
        start = kill - ramp
        out[start : kill + 1] = np.linspace(out[start], limit, ramp + 1)
    return out, kills


def simulate(
    spec: Sequence[WorkloadSpec], time_range: TimeRange, seed: int = 0
) -> list[ContainerSeries]:
    """Per-container usage arrays for every pod of every workload in `spec`."""
    t = time_range.timestamps()
    step = time_range.step_s
    result: list[ContainerSeries] = []
    for workload in spec:
        for pod in pod_names(workload, seed):
            for c in workload.containers:
                keys = (workload.namespace, pod, c.name)
                cpu = _shape(c.cpu_shape, c.cpu_cores, t, _rng(seed, *keys, "cpu"), 4.0)
                mem_rng = _rng(seed, *keys, "memory")
                memory = _shape(c.memory_shape, float(c.memory_bytes), t, mem_rng, 2.0)
                memory, kills = _oom_kills(
                    memory, c.oom_kills, c.memory_request_bytes, mem_rng, step
                )
                # The counter started before the range; its increase per step is usage x step.
                offset = _rng(seed, *keys, "offset").uniform(0, 10_000) * max(c.cpu_cores, 0.01)
                counter = offset + np.cumsum(cpu * step)
                ooms = np.zeros(t.size, dtype=np.int64)
                for kill in kills:
                    ooms[kill:] += 1
                result.append(
                    ContainerSeries(
                        namespace=workload.namespace,
                        workload=workload.name,
                        pod=pod,
                        spec=c,
                        cpu_cores=cpu,
                        cpu_seconds_total=counter,
                        memory_bytes=np.rint(memory).astype(np.int64),
                        oom_events_total=ooms,
                        oom_times_s=tuple(int(t[k]) for k in kills),
                    )
                )
    return result


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)


@dataclass(frozen=True)
class WriteStats:
    """What `SyntheticHistory.write_openmetrics` wrote: series, samples (lines) and bytes."""

    path: Path
    series: int
    samples: int
    bytes: int


class _Writer:
    """Streams one series at a time: the file is never held in memory as one string."""

    def __init__(self, out: IO[str], timestamps: IntArray) -> None:
        self.out = out
        # " <ts>\n" once for all series; timestamps are whole seconds.
        self.suffixes = [f" {ts}\n" for ts in timestamps.tolist()]
        self.series = 0
        self.samples = 0

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.out.write(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")

    def series_values(
        self, name: str, labels: str, values: FloatArray | IntArray, first: int = 0
    ) -> None:
        """One series from index `first` on; Python's float repr round-trips exactly."""
        prefix = f"{name}{{{labels}}} "
        suffixes = self.suffixes[first:]
        self.out.write(
            "".join([prefix + str(v) + s for v, s in zip(values.tolist(), suffixes, strict=True)])
        )
        self.series += 1
        self.samples += len(suffixes)

    def series_constant(self, name: str, labels: str, value: str, first: int = 0) -> None:
        head = f"{name}{{{labels}}} {value}"
        suffixes = self.suffixes[first:]
        self.out.write("".join([head + s for s in suffixes]))
        self.series += 1
        self.samples += len(suffixes)


@dataclass(frozen=True)
class SyntheticHistory:
    """Generated usage for a spec over a time range: the ground truth behind the OpenMetrics."""

    spec: tuple[WorkloadSpec, ...]
    time_range: TimeRange
    seed: int
    containers: tuple[ContainerSeries, ...]

    @classmethod
    def generate(
        cls,
        spec: Sequence[WorkloadSpec] = DEFAULT_SPEC,
        *,
        days: float = 8,
        step_s: int = 60,
        end: datetime | float | None = None,
        seed: int = 0,
    ) -> SyntheticHistory:
        """`days` of history at `step_s` seconds ending at `end` (default now)."""
        time_range = TimeRange.ending(end, days, step_s)
        return cls(tuple(spec), time_range, seed, tuple(simulate(spec, time_range, seed)))

    def namespaces(self) -> list[str]:
        return sorted({w.namespace for w in self.spec})

    def container_keys(self, namespace: str) -> set[tuple[str, str]]:
        """The (pod, container) pairs generated in `namespace`."""
        return {(c.pod, c.container) for c in self.containers if c.namespace == namespace}

    def _pods(self) -> Iterator[tuple[str, str, str, list[ContainerSeries]]]:
        """(namespace, workload, pod, its containers) in generation order."""
        groups: dict[tuple[str, str, str], list[ContainerSeries]] = {}
        for c in self.containers:
            groups.setdefault((c.namespace, c.workload, c.pod), []).append(c)
        for (namespace, workload, pod), members in groups.items():
            yield namespace, workload, pod, members

    def usage(self) -> pl.DataFrame:
        """One row per container and timestamp: namespace, workload, pod, container,
        timestamp_s (Unix s), cpu_cores (mean over the step ending there), cpu_seconds_total,
        memory_bytes, oom_events_total."""
        n = self.time_range.count
        k = len(self.containers)

        def repeat(values: list[str]) -> pl.Series:
            return pl.Series(values, dtype=pl.String).gather(np.repeat(np.arange(k), n))

        return pl.DataFrame(
            {
                "namespace": repeat([c.namespace for c in self.containers]),
                "workload": repeat([c.workload for c in self.containers]),
                "pod": repeat([c.pod for c in self.containers]),
                "container": repeat([c.container for c in self.containers]),
                "timestamp_s": np.tile(self.time_range.timestamps(), k),
                "cpu_cores": np.concatenate([c.cpu_cores for c in self.containers]),
                "cpu_seconds_total": np.concatenate([c.cpu_seconds_total for c in self.containers]),
                "memory_bytes": np.concatenate([c.memory_bytes for c in self.containers]),
                "oom_events_total": np.concatenate([c.oom_events_total for c in self.containers]),
            }
        )

    def requests(self) -> pl.DataFrame:
        """namespace, pod, container, resource ("cpu" | "memory"), unit ("core" | "byte"), value."""
        rows = [
            (c.namespace, c.pod, c.container, resource, unit, value)
            for c in self.containers
            for resource, unit, value in (
                ("cpu", "core", c.spec.cpu_request_cores),
                ("memory", "byte", float(c.spec.memory_request_bytes)),
            )
        ]
        return pl.DataFrame(
            rows,
            schema=["namespace", "pod", "container", "resource", "unit", "value"],
            orient="row",
        )

    def oom_kills(self) -> pl.DataFrame:
        """namespace, pod, container, timestamp_s of every OOM kill."""
        rows = [
            (c.namespace, c.pod, c.container, t) for c in self.containers for t in c.oom_times_s
        ]
        return pl.DataFrame(
            rows,
            schema={
                "namespace": pl.String,
                "pod": pl.String,
                "container": pl.String,
                "timestamp_s": pl.Int64,
            },
            orient="row",
        )

    def write_openmetrics(self, path: Path) -> WriteStats:
        """Write every series as OpenMetrics text: families grouped, samples time-ordered,
        timestamps in seconds, `# EOF` last (promtool rejects a file without it)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="\n", buffering=1 << 20) as out:
            writer = _Writer(out, self.time_range.timestamps())
            self._write_cadvisor(writer)
            self._write_kube_state_metrics(writer)
            out.write("# EOF\n")
        return WriteStats(path, writer.series, writer.samples, path.stat().st_size)

    def _write_cadvisor(self, w: _Writer) -> None:
        def labels(namespace: str, pod: str, container: str | None) -> str:
            pairs = [("job", CADVISOR_JOB), ("namespace", namespace), ("pod", pod)]
            # The pod-level cgroup series has container="" in cAdvisor; Prometheus stores an
            # empty label as absent, so it is left out here. `container!=""` filters it out.
            if container is not None:
                pairs.append(("container", container))
            return _labels(pairs)

        name = "container_cpu_usage_seconds"
        w.family(name, "counter", "Cumulative cpu time consumed in seconds.")
        for namespace, _, pod, members in self._pods():
            for c in members:
                w.series_values(
                    f"{name}_total", labels(namespace, pod, c.container), c.cpu_seconds_total
                )
            pod_total = np.sum([c.cpu_seconds_total for c in members], axis=0)
            w.series_values(f"{name}_total", labels(namespace, pod, None), pod_total)

        name = "container_memory_working_set_bytes"
        w.family(name, "gauge", "Current working set in bytes.")
        for namespace, _, pod, members in self._pods():
            for c in members:
                w.series_values(name, labels(namespace, pod, c.container), c.memory_bytes)
            pod_total = np.sum([c.memory_bytes for c in members], axis=0)
            w.series_values(name, labels(namespace, pod, None), pod_total)

        name = "container_oom_events"
        w.family(name, "counter", "Count of out of memory events observed for the container.")
        for c in self.containers:
            w.series_values(
                f"{name}_total", labels(c.namespace, c.pod, c.container), c.oom_events_total
            )

    def _write_kube_state_metrics(self, w: _Writer) -> None:
        def labels(c: ContainerSeries, *extra: tuple[str, str]) -> str:
            base = [("job", KSM_JOB), ("namespace", c.namespace), ("pod", c.pod)]
            return _labels([*base, ("container", c.container), *extra])

        name = "kube_pod_container_resource_requests"
        w.family(name, "gauge", "The number of requested request resource by a container.")
        for c in self.containers:
            cpu = labels(c, ("resource", "cpu"), ("unit", "core"))
            w.series_constant(name, cpu, str(c.spec.cpu_request_cores))
            memory = labels(c, ("resource", "memory"), ("unit", "byte"))
            w.series_constant(name, memory, str(c.spec.memory_request_bytes))

        name = "kube_pod_container_status_last_terminated_reason"
        w.family(name, "gauge", "Describes the last reason the container was in terminated state.")
        timestamps = self.time_range.timestamps()
        for c in self.containers:
            if c.oom_times_s:
                # kube-state-metrics has this series only once the container has terminated.
                first = int(np.searchsorted(timestamps, c.oom_times_s[0]))
                w.series_constant(name, labels(c, ("reason", "OOMKilled")), "1", first)

        name = "kube_pod_labels"
        w.family(name, "gauge", "Kubernetes labels converted to Prometheus labels.")
        for namespace, workload, pod, _ in self._pods():
            pairs = [("job", KSM_JOB), ("namespace", namespace), ("pod", pod)]
            w.series_constant(name, _labels([*pairs, ("label_app", workload)]), "1")


def write_openmetrics(
    path: Path,
    spec: Sequence[WorkloadSpec] = DEFAULT_SPEC,
    *,
    days: float = 8,
    step_s: int = 60,
    end: datetime | float | None = None,
    seed: int = 0,
) -> tuple[SyntheticHistory, WriteStats]:
    """Generate history for `spec` and write it to `path` as OpenMetrics text."""
    history = SyntheticHistory.generate(spec, days=days, step_s=step_s, end=end, seed=seed)
    return history, history.write_openmetrics(path)
