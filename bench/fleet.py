"""Benchmark of the engine at fleet scale on Ray: one tick for 10k, 100k and 1M containers.

Run with `.venv/bin/python -m bench.fleet [--sizes 10000,100000,1000000] [--history-h 24,24,2]
[--granularity actor|namespace] [--estimate recommendations|arrays] [--repeats 5]`;
`--probe-io` instead times the I/O around a tick on the testbed (below). docs/fleet-sizing.md
has the results and what they mean for a fleet.

The source is synthetic (no Prometheus), the engine is the real one. Containers are laid out as
a fleet: 50 per namespace (workloads of 3 containers, one pod each), 20 namespaces per cluster;
a shard is one (cluster, namespace). Every sample is generated where it is ingested, from a
seed, the container's number and the time step: inside each Ray actor for the actors' runs, in
this process for the direct run. Raw samples never travel between processes; a tick returns a
few numbers.

Each state first ingests its history (`--history-h` hours at `--step-s`, per size, in batches of
`--chunk-rows` samples), then runs ticks. A tick ingests the next window (`--window-steps`
steps: one sample per container at the defaults, a 1-minute tick) for every container the state
owns and recommends for all of them (`analytics.estimation.recommend_rows`, as the loop does, or
`--estimate arrays`: the estimators alone). Generating the window is not part of the tick (it
stands in for the Prometheus fetch); validation (`prepare_samples`), ingestion and estimation
are.

Granularity (`--granularity`):
* `actor`: one store per actor, one batch per tick for all of its namespaces, estimation in
  chunks of whole workloads (`--estimate-chunk` rows);
* `namespace`: as a ShardActor runs the one-cluster loop today: one store per cluster, and per
  namespace one `prepare_samples`, one `ingest_samples` and one `recommend_rows`.

Per size, in the same run:
1. the same state in this process (direct) and in one Ray actor, ticked alternately (which one
   goes first alternates too): containers per second, and the Ray overhead (the actor's tick as
   the driver waits for it, against the direct tick; and the part of it spent outside the actor's
   own tick: the call itself);
2. two Ray actors, the shards split between them by rendezvous hashing (`recommender.fleet.plan`,
   as the fleet assigns them), ticked at once: the speed-up over one actor, next to the best the
   split allows (all containers / the larger half).
Everything uses one core per state: POLARS_MAX_THREADS=1 here and, through `runtime_env`, in the
actors (numpy is single-threaded for these kernels). Times are the best of at least --repeats
ticks after one warm-up (more, up to --max-rounds, until one actor's ticks add up to
--min-time s); the table shows the median and worst too. While ticks run, the CPU time of the
actors, of the local Ray's other processes, of this driver and of everything else on the machine
is recorded: a run that other work disturbed says so. Memory per container: the store's arrays
(`nbytes`), its key frames (polars' estimate), and the growth of the actor's resident set from
before its state existed: after the last tick, after `malloc_trim` (what the allocator kept
from freed batches, given back), and at its peak. After the timed ticks the direct state counts
the VPAs (workloads) whose status one more tick changes: at all, by more than 5 % and by more
than 10 % in some value (how many status writes a tick needs per `status_change_threshold`).

`--probe-io` starts the testbed's Prometheus (an hour of history of one 50-container namespace)
and a control plane, and times, one call at a time, a steady tick's history of that namespace
(`PrometheusHistory.fetch` of the last minute: 4 queries) and a VPA status write (one JSON
Patch of a 3-container recommendation, as the status writer sends it): wall time, which includes
the servers working on the same two cores, and this process's CPU time, which is what a
ShardActor spends per namespace and per write.
"""

from __future__ import annotations

import os

os.environ["POLARS_MAX_THREADS"] = "1"

import argparse
import ctypes
import dataclasses
import datetime as dt
import gc
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from analytics.estimation import recommend_rows
from analytics.histogram import HistogramArrays
from analytics.ingest import ingest_samples
from analytics.store import AggregateStore
from analytics.strategies import build_estimators
from analytics.usage import prepare_samples
from recommender.fleet.plan import Shard, assign
from testbed.ray_local import init_local_ray, ray_pids, shutdown_local_ray

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_START_NS = 1_709_251_200 * 10**9  # 2024-03-01T00:00:00Z
_MIB = 1024 * 1024
_U64 = np.uint64


# -- the synthetic fleet ---------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where container number i lives: namespace i // per_namespace, 20 namespaces a cluster."""

    containers: int
    per_namespace: int = 50
    namespaces_per_cluster: int = 20
    per_workload: int = 3

    @property
    def namespaces(self) -> int:
        return math.ceil(self.containers / self.per_namespace)

    def shard(self, index: int) -> Shard:
        cluster, namespace = divmod(index, self.namespaces_per_cluster)
        return Shard(f"cl-{cluster:05d}", f"ns-{namespace:03d}")

    def container_ids(self, shards: Sequence[int]) -> IntArray:
        """Numbers of the containers of the given shards (namespaces), ascending."""
        starts = np.sort(np.asarray(shards, dtype=np.int64)) * self.per_namespace
        ends = np.minimum(starts + self.per_namespace, self.containers)
        lengths = ends - starts
        offsets = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(
            np.cumsum(lengths) - lengths, lengths
        )
        return np.repeat(starts, lengths) + offsets


def key_frame(layout: Layout, ids: IntArray) -> pl.DataFrame:
    """The container keys of the given containers; names sort like the numbers."""
    namespace = ids // layout.per_namespace
    within = ids % layout.per_namespace
    numbers = pl.DataFrame(
        {
            "cluster": namespace // layout.namespaces_per_cluster,
            "namespace": namespace % layout.namespaces_per_cluster,
            "workload": within // layout.per_workload,
            "container": within % layout.per_workload,
        }
    )

    def padded(name: str, width: int) -> pl.Expr:
        return pl.col(name).cast(pl.String).str.zfill(width)

    workload = "w-" + padded("workload", 3)
    return numbers.select(
        cluster="cl-" + padded("cluster", 5),
        namespace="ns-" + padded("namespace", 3),
        workload=workload,
        pod=workload + "-6c9f7d-x2k4p",
        container="c" + pl.col("container").cast(pl.String),
    )


def _mix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SplitMix64's finalizer: a stable 64-bit hash (arrays wrap around silently)."""
    x = x ^ (x >> _U64(30))
    x = x * _U64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> _U64(27))
    x = x * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def uniform(seed: int, stream: int, ids: IntArray, steps: IntArray | None = None) -> FloatArray:
    """Uniform [0, 1) numbers from (seed, stream, container, step): the same wherever computed,
    so that how the containers are split between actors changes no sample. With steps, the
    result is (steps, containers) flattened step by step."""
    key = _mix(np.full(ids.shape, seed * 1_000_003 + stream, dtype=np.uint64) ^ ids.astype(_U64))
    if steps is not None:
        key = _mix(key[None, :] ^ _mix(steps.astype(_U64) + _U64(0x9E3779B97F4A7C15))[:, None])
        key = key.ravel()
    else:
        key = _mix(key)
    return (key >> _U64(11)).astype(np.float64) * 2.0**-53


class SyntheticSource:
    """Usage of some containers, one sample per container and step, made from a seed: CPU
    log-uniform between 5 millicores and 2 cores per container, noisy with a daily cycle;
    memory log-uniform between 32 MiB and 4 GiB per container, within +-15 %."""

    def __init__(self, layout: Layout, shards: Sequence[int], seed: int, step_s: int) -> None:
        self.ids = layout.container_ids(shards)
        self.keys = key_frame(layout, self.ids)
        self.seed = seed
        self.step_ns = step_s * 10**9
        self.cpu_base = 0.005 * 400.0 ** uniform(seed, 1, self.ids)
        self.memory_base = 32 * _MIB * 128.0 ** uniform(seed, 2, self.ids)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def window(self, first_step: int, steps: int) -> pl.DataFrame:
        """Samples of every container at steps [first_step, first_step + steps), in time order."""
        n = len(self)
        step = np.arange(first_step, first_step + steps, dtype=np.int64)
        t_ns = _START_NS + step * self.step_ns
        day = np.sin(2 * np.pi * ((t_ns // 10**9) % 86400) / 86400.0)
        cpu_noise = uniform(self.seed, 3, self.ids, step)
        memory_noise = uniform(self.seed, 4, self.ids, step)
        cpu = np.tile(self.cpu_base, steps) * (0.25 + 1.5 * cpu_noise) * np.repeat(1 + 0.3 * day, n)
        memory = np.tile(self.memory_base, steps) * (0.85 + 0.3 * memory_noise)
        keys = self.keys if steps == 1 else pl.concat([self.keys] * steps, rechunk=False)
        return keys.with_columns(
            timestamp=pl.Series(np.repeat(t_ns, n).astype("datetime64[ns]")),
            cpu=pl.Series(cpu),
            memory=pl.Series(np.floor(memory)),
        )


# -- what an actor holds and does ------------------------------------------------------------


@dataclass(frozen=True)
class TickResult:
    """One tick of one state: what it computed (to compare runs) and where its time went."""

    containers: int
    recommended: int
    checksum: int
    prepare_s: float
    ingest_s: float
    estimate_s: float
    wall_s: float
    cpu_s: float


@dataclass(frozen=True)
class MemoryResult:
    aggregates: int
    array_bytes: int
    key_bytes: int
    rss_growth: int
    trimmed_growth: int
    peak_growth: int
    polars_threads: int


def _proc_status_bytes() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process, bytes."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0]) * 1024
    return values["VmRSS"], values["VmHWM"]


def _store_bytes(store: AggregateStore) -> tuple[int, int]:
    """(bytes of the numpy arrays, estimated bytes of the key frames) of a store."""
    arrays = keys = 0
    for field in dataclasses.fields(store):
        value = getattr(store, field.name)
        if isinstance(value, np.ndarray):
            arrays += value.nbytes
        elif isinstance(value, HistogramArrays):
            arrays += value.weights.nbytes + value.total_weight.nbytes + value.reference_ns.nbytes
        elif isinstance(value, pl.DataFrame):
            keys += int(value.estimated_size())
    return arrays, keys


def workload_chunks(store: AggregateStore, size: int) -> list[IntArray]:
    """All rows of a store in chunks of about `size`, never splitting a workload (pod
    minimums are shared by the containers of a workload estimated together)."""
    ordered = store.aggregate_keys.with_row_index("row").sort(
        ["cluster", "namespace", "workload"], maintain_order=True
    )
    rows = ordered["row"].to_numpy().astype(np.int64)
    if rows.shape[0] == 0:
        return []
    changed = ordered.select(
        pl.any_horizontal(
            (pl.col(c) != pl.col(c).shift()).fill_null(True)
            for c in ("cluster", "namespace", "workload")
        )
    ).to_series()
    starts = np.flatnonzero(changed.to_numpy())
    wanted = np.arange(size, rows.shape[0], size)
    cuts = np.unique(starts[np.minimum(np.searchsorted(starts, wanted), starts.shape[0] - 1)])
    return np.split(rows, cuts[(cuts > 0) & (cuts < rows.shape[0])])


class FleetShard:
    """The engine state of some shards and their synthetic source: what one actor holds.

    Used as is for the direct run and wrapped by `ray.remote` for the actors: the same code.
    """

    def __init__(
        self,
        layout: Layout,
        shards: Sequence[int],
        *,
        seed: int,
        step_s: int,
        granularity: str,
        estimate: str,
        estimate_chunk: int,
        gc_freeze: bool,
    ) -> None:
        self.source = SyntheticSource(layout, shards, seed, step_s)
        self.granularity = granularity
        self.estimate = estimate
        self.estimate_chunk = estimate_chunk
        self.gc_freeze = gc_freeze
        params, self.estimators = build_estimators("vpa")
        self.stores: dict[str, AggregateStore] = {}
        self.params = params
        self.chunks: list[IntArray] = []
        self.staged: list[tuple[str, str, pl.DataFrame]] = []
        self.next_step = 0
        gc.collect()
        self.baseline_rss, _ = _proc_status_bytes()

    def _store(self, cluster: str) -> AggregateStore:
        key = cluster if self.granularity == "namespace" else ""
        if key not in self.stores:
            self.stores[key] = AggregateStore.empty(self.params)
        return self.stores[key]

    def bootstrap(self, steps: int, chunk_rows: int) -> tuple[int, float]:
        """Ingest `steps` steps of history, chunk_rows samples at a time: (samples, seconds)."""
        started = time.perf_counter()
        per_chunk = max(1, chunk_rows // max(1, len(self.source)))
        samples = 0
        for first in range(0, steps, per_chunk):
            frame = self.source.window(first, min(per_chunk, steps - first))
            samples += frame.height
            if self.granularity == "namespace":
                parts = frame.partition_by("cluster", as_dict=True)
                for (cluster,), part in sorted(parts.items()):
                    ingest_samples(self._store(str(cluster)), prepare_samples(part))
            else:
                ingest_samples(self._store(""), prepare_samples(frame))
        self.next_step = steps
        self.chunks = (
            workload_chunks(self._store(""), self.estimate_chunk)
            if self.granularity == "actor"
            else []
        )
        if self.gc_freeze:
            gc.collect()
            gc.freeze()
        return samples, time.perf_counter() - started

    def stage(self, steps: int) -> float:
        """Generate the next window (the stand-in for the Prometheus fetch); seconds taken."""
        started = time.perf_counter()
        frame = self.source.window(self.next_step, steps)
        self.next_step += steps
        if self.granularity == "namespace":
            parts = frame.partition_by(["cluster", "namespace"], maintain_order=True, as_dict=True)
            self.staged = [(str(c), str(n), part) for (c, n), part in parts.items()]
        else:
            self.staged = [("", "", frame)]
        return time.perf_counter() - started

    def _recommend(self, store: AggregateStore, rows: IntArray, now_ns: int) -> tuple[int, int]:
        """(containers recommended for, checksum of their targets)."""
        if self.estimate == "arrays":
            estimates = self.estimators.estimate(store.estimation_input(rows))
            checksum = int(estimates.target_cpu.sum()) + int(estimates.target_memory.sum())
            return len(rows), checksum
        estimated = recommend_rows(store, rows, self.estimators, now_ns)
        checksum = sum(
            r.target.cpu_millicores + r.target.memory_whole_bytes for r in estimated.recommendations
        )
        return len(estimated.recommendations), checksum

    def tick(self) -> TickResult:
        """Validate and ingest the staged window, then recommend for every container."""
        started, cpu_started = time.perf_counter(), time.process_time()
        prepare_s = ingest_s = estimate_s = 0.0
        recommended = checksum = 0
        for cluster, namespace, frame in self.staged:
            t0 = time.perf_counter()
            samples = prepare_samples(frame)
            t1 = time.perf_counter()
            store = self._store(cluster)
            ingest_samples(store, samples)
            t2 = time.perf_counter()
            now_ns = int(samples.t_ns[-1])
            if self.granularity == "namespace":
                keys = store.aggregate_keys
                mine = (keys["cluster"] == cluster) & (keys["namespace"] == namespace)
                chunks = [np.flatnonzero(mine.to_numpy()).astype(np.int64)]
            else:
                chunks = self.chunks
            for rows in chunks:
                count, total = self._recommend(store, rows, now_ns)
                recommended += count
                checksum += total
            prepare_s += t1 - t0
            ingest_s += t2 - t1
            estimate_s += time.perf_counter() - t2
        self.staged = []
        return TickResult(
            containers=len(self.source),
            recommended=recommended,
            checksum=checksum,
            prepare_s=prepare_s,
            ingest_s=ingest_s,
            estimate_s=estimate_s,
            wall_s=time.perf_counter() - started,
            cpu_s=time.process_time() - cpu_started,
        )

    def status_values(self) -> tuple[IntArray, IntArray]:
        """(values, vpa): the six amounts a VPA status shows per container (target, lower and
        upper bound; CPU millicores and memory bytes) as rows of a (6, containers) array, and
        each container's VPA (workload) number. Not part of a tick."""
        values, vpas = [], []
        offset = 0
        parts = (
            [(self._store(""), rows) for rows in self.chunks]
            if self.granularity == "actor"
            else [(store, store.all_rows()) for store in self.stores.values()]
        )
        for store, rows in parts:
            estimates = self.estimators.estimate(store.estimation_input(rows))
            values.append(
                np.stack([getattr(estimates, f.name) for f in dataclasses.fields(estimates)])
            )
            workload = (
                store.aggregate_keys[rows]
                .select(
                    pl.concat_str(["cluster", "namespace", "workload"], separator="/").rank("dense")
                )
                .to_series()
            )
            local = workload.to_numpy().astype(np.int64)
            vpas.append(local + offset)
            offset += int(local.max(initial=0)) + 1
        return np.concatenate(values, axis=1), np.concatenate(vpas)

    def pid(self) -> int:
        return os.getpid()

    def memory(self) -> MemoryResult:
        """Size of the state: arrays, key frames, and resident-set growth since before it."""
        gc.collect()
        arrays = keys = aggregates = 0
        for store in self.stores.values():
            a, k = _store_bytes(store)
            arrays, keys, aggregates = arrays + a, keys + k, aggregates + store.n_aggregates
        rss, peak = _proc_status_bytes()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        trimmed, _ = _proc_status_bytes()
        return MemoryResult(
            aggregates=aggregates,
            array_bytes=arrays,
            key_bytes=keys,
            rss_growth=rss - self.baseline_rss,
            trimmed_growth=trimmed - self.baseline_rss,
            peak_growth=peak - self.baseline_rss,
            polars_threads=pl.thread_pool_size(),
        )


# -- the runs --------------------------------------------------------------------------------


@dataclass
class SizeResult:
    layout: Layout
    step_s: int
    history_steps: int
    direct: list[float]
    one: list[float]
    two: list[float]
    one_ticks: list[TickResult]
    two_ticks: list[list[TickResult]]
    direct_ticks: list[TickResult]
    split: list[int]
    memory: MemoryResult
    bootstrap: tuple[int, float]
    identical: bool
    others_direct: str
    others_one: str
    others_two: str
    disturbed: float
    writes: list[tuple[int, int]]  # (VPAs changed, VPAs) at thresholds 0, 5 % and 10 %


def _shard_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "seed": args.seed,
        "step_s": args.step_s,
        "granularity": args.granularity,
        "estimate": args.estimate,
        "estimate_chunk": args.estimate_chunk,
        "gc_freeze": args.gc_freeze,
    }


def _actor(ray: Any, layout: Layout, shards: Sequence[int], args: argparse.Namespace) -> Any:
    remote = ray.remote(FleetShard).options(
        num_cpus=1, runtime_env={"env_vars": {"POLARS_MAX_THREADS": "1"}}
    )
    return remote.remote(layout, list(shards), **_shard_options(args))


def status_writes(
    before: tuple[IntArray, IntArray], after: tuple[IntArray, IntArray], threshold: float
) -> tuple[int, int]:
    """(VPAs whose status a tick changes by more than `threshold` (relative; 0: any change)
    in some value, VPAs), as the status writer decides what to write."""
    (old, vpa), (new, _) = before, after
    changed = new != old
    relative = np.abs(new - old) / np.where(old == 0, 1, old)
    moved = np.where(old == 0, changed, relative > threshold).any(axis=0)
    ids, which = np.unique(vpa, return_inverse=True)
    per_vpa = np.zeros(ids.shape[0], dtype=bool)
    np.logical_or.at(per_vpa, which, moved)
    return int(per_vpa.sum()), int(ids.shape[0])


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_seconds() -> tuple[float, float]:
    """(busy, stolen) CPU seconds of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    rate = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / rate, steal / rate


def wait_until_quiet(limit_s: float, cores: float = 0.3) -> float:
    """Wait (at most limit_s) until the machine is busy less than `cores` over 3 s (our idle
    Ray included); the busy cores last seen."""
    deadline = time.monotonic() + limit_s
    while True:
        before, _ = _machine_seconds()
        time.sleep(3.0)
        busy = (_machine_seconds()[0] - before) / 3.0
        if busy < cores or time.monotonic() > deadline:
            return busy


class CpuMeter:
    """Where the CPU went while ticks ran: the actors, the local Ray's other processes, this
    driver, and everything else on the machine (other users of the two cores)."""

    def __init__(self, temp_dir: Path, actor_pids: Sequence[int]) -> None:
        self.actors = list(actor_pids)
        self.others = [p for p in ray_pids(temp_dir) if p not in actor_pids and p != os.getpid()]
        self.used = dict.fromkeys(("actors", "ray", "driver", "machine", "steal"), 0.0)
        self.foreign: dict[str, float] = {}
        self.wall = 0.0

    def _foreign(self) -> dict[int, tuple[str, float]]:
        """(name, CPU seconds) of every other process and kernel thread on the machine."""
        ours = {*self.actors, *self.others, os.getpid()}
        found = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and int(entry.name) not in ours:
                try:
                    with open(f"/proc/{entry.name}/stat") as stat:
                        head, _, tail = stat.read().rpartition(")")
                except OSError:
                    continue
                fields = tail.split()
                ticks = int(fields[11]) + int(fields[12])
                found[int(entry.name)] = (head.partition("(")[2], ticks / _CLK_TCK)
        return found

    def _snapshot(self) -> dict[str, float]:
        machine, steal = _machine_seconds()
        return {
            "actors": sum(_cpu_seconds(p) for p in self.actors),
            "ray": sum(_cpu_seconds(p) for p in self.others),
            "driver": time.process_time(),
            "machine": machine,
            "steal": steal,
        }

    def measure(self, call: Callable[[], Any]) -> tuple[float, Any]:
        foreign = self._foreign()
        before = self._snapshot()
        wall, result = _timed(call)
        after = self._snapshot()
        for key in self.used:
            self.used[key] += after[key] - before[key]
        for pid, (name, seconds) in self._foreign().items():
            used = seconds - foreign[pid][1] if pid in foreign else 0.0
            if used > 0:
                self.foreign[name] = self.foreign.get(name, 0.0) + used
        self.wall += wall
        return wall, result

    def rest(self) -> float:
        """Cores used by processes that are not this benchmark's, on average."""
        if not self.wall:
            return 0.0
        ours = self.used["actors"] + self.used["ray"] + self.used["driver"]
        return max(0.0, (self.used["machine"] - ours) / self.wall)

    def summary(self) -> str:
        """Average cores busy during the measured calls: actors / Ray's other processes /
        driver / the rest of the machine (stolen by the hypervisor)."""
        if not self.wall:
            return "-"
        cores = {key: used / self.wall for key, used in self.used.items()}
        busiest = sorted(self.foreign.items(), key=lambda item: -item[1])[:2]
        names = ", ".join(f"{name} {used / self.wall:.2f}" for name, used in busiest if used)
        return (
            f"{cores['actors']:.2f} / {cores['ray']:.2f} / {cores['driver']:.2f} / "
            f"{self.rest():.2f} ({cores['steal']:.2f})" + (f" [{names}]" if names else "")
        )


@dataclass
class _Phase:
    """Timed ticks of one kind of run: wall times as the driver saw them, and the results."""

    times: list[float] = dataclasses.field(default_factory=list)
    ticks: list[Any] = dataclasses.field(default_factory=list)

    def add(self, measured: tuple[float, Any]) -> None:
        self.times.append(measured[0])
        self.ticks.append(measured[1])


def _direct_and_one_actor(
    ray: Any, temp_dir: Path, layout: Layout, history_steps: int, args: argparse.Namespace
) -> tuple[
    _Phase,
    _Phase,
    tuple[CpuMeter, CpuMeter],
    MemoryResult,
    tuple[int, float],
    list[tuple[int, int]],
]:
    """The same state in this process and in one actor, ticked alternately (which goes first
    alternates too); at least --repeats timed rounds after a warm-up, more until the actor's
    ticks add up to --min-time seconds."""
    shards = list(range(layout.namespaces))
    one = _actor(ray, layout, shards, args)
    bootstrap_ref = one.bootstrap.remote(history_steps, args.chunk_rows)
    direct = FleetShard(layout, shards, **_shard_options(args))
    direct.bootstrap(history_steps, args.chunk_rows)
    bootstrap = ray.get(bootstrap_ref)
    one_pid = ray.get(one.pid.remote())
    direct_phase, one_phase = _Phase(), _Phase()
    meter = CpuMeter(temp_dir, [one_pid])
    meter_direct = CpuMeter(temp_dir, [one_pid])
    rounds = 0
    while rounds <= args.repeats or (
        sum(one_phase.times) < args.min_time and rounds <= args.max_rounds
    ):
        ray.get(one.stage.remote(args.window_steps))
        direct.stage(args.window_steps)
        if rounds == 0:  # warm-up
            direct.tick()
            ray.get(one.tick.remote())
        elif rounds % 2:
            direct_phase.add(meter_direct.measure(direct.tick))
            one_phase.add(meter.measure(lambda: ray.get(one.tick.remote())))
        else:
            one_phase.add(meter.measure(lambda: ray.get(one.tick.remote())))
            direct_phase.add(meter_direct.measure(direct.tick))
        rounds += 1
    memory = ray.get(one.memory.remote())
    ray.kill(one)
    before = direct.status_values()
    direct.stage(args.window_steps)
    direct.tick()
    after = direct.status_values()
    writes = [status_writes(before, after, threshold) for threshold in (0.0, 0.05, 0.1)]
    return direct_phase, one_phase, (meter_direct, meter), memory, bootstrap, writes


def _two_actors(
    ray: Any,
    temp_dir: Path,
    layout: Layout,
    history_steps: int,
    args: argparse.Namespace,
    *,
    rounds: int,
) -> tuple[_Phase, CpuMeter, list[int]]:
    """Two actors, the shards split as the fleet splits them, ticked at once, `rounds` times
    after a warm-up."""
    names = ["shard-0", "shard-1"]
    shards = list(range(layout.namespaces))
    plan = assign([layout.shard(i) for i in shards], names)
    parts = [[i for i in shards if plan[layout.shard(i)] == name] for name in names]
    split = [int(layout.container_ids(part).shape[0]) for part in parts]
    two = [_actor(ray, layout, part, args) for part in parts]
    ray.get([a.bootstrap.remote(history_steps, args.chunk_rows) for a in two])
    meter = CpuMeter(temp_dir, ray.get([a.pid.remote() for a in two]))
    phase = _Phase()
    for round_ in range(rounds + 1):
        ray.get([a.stage.remote(args.window_steps) for a in two])
        if round_ == 0:
            ray.get([a.tick.remote() for a in two])
        else:
            phase.add(meter.measure(lambda: ray.get([a.tick.remote() for a in two])))
    for actor in two:
        ray.kill(actor)
    return phase, meter, split


def run_size(
    ray: Any, temp_dir: Path, containers: int, hours: float, args: argparse.Namespace
) -> SizeResult:
    layout = Layout(containers, per_namespace=args.per_namespace)
    history_steps = max(1, round(hours * 3600 / args.step_s))
    direct, one, (meter_direct, meter_one), memory, bootstrap, writes = _direct_and_one_actor(
        ray, temp_dir, layout, history_steps, args
    )
    gc.collect()
    two, meter_two, split = _two_actors(
        ray, temp_dir, layout, history_steps, args, rounds=len(one.times)
    )
    identical = all(
        d.checksum == o.checksum == sum(t.checksum for t in ts)
        and d.recommended == o.recommended == sum(t.recommended for t in ts)
        for d, o, ts in zip(direct.ticks, one.ticks, two.ticks, strict=True)
    )
    return SizeResult(
        layout=layout,
        step_s=args.step_s,
        history_steps=history_steps,
        direct=direct.times,
        one=one.times,
        two=two.times,
        one_ticks=one.ticks,
        two_ticks=two.ticks,
        direct_ticks=direct.ticks,
        split=split,
        memory=memory,
        bootstrap=bootstrap,
        identical=identical,
        others_one=meter_one.summary(),
        others_two=meter_two.summary(),
        writes=writes,
        disturbed=max(meter_direct.rest(), meter_one.rest(), meter_two.rest()),
        others_direct=meter_direct.summary(),
    )


# -- the table -------------------------------------------------------------------------------


def _spread(times: list[float]) -> str:
    ordered = sorted(times)
    return f"{ordered[0]:.3f} / {ordered[len(ordered) // 2]:.3f} / {ordered[-1]:.3f}"


def _best(ticks: list[TickResult], times: list[float]) -> TickResult:
    return ticks[int(np.argmin(times))]


def rows_of(result: SizeResult) -> list[tuple[str, str]]:
    n = result.layout.containers
    best_direct, best_one, best_two = min(result.direct), min(result.one), min(result.two)
    one_tick = _best(result.one_ticks, result.one)
    direct_tick = _best(result.direct_ticks, result.direct)
    two_ticks = result.two_ticks[int(np.argmin(result.two))]
    overhead = best_one / best_direct - 1
    ratios = sorted(o / d for o, d in zip(result.one, result.direct, strict=True))
    paired = ratios[len(ratios) // 2] - 1
    speedup = best_one / best_two
    ideal = n / max(result.split)
    mem = result.memory
    one_cpu = sum(t.cpu_s for t in result.one_ticks) / sum(t.containers for t in result.one_ticks)
    two_cpu = sum(t.cpu_s for ts in result.two_ticks for t in ts) / sum(
        t.containers for ts in result.two_ticks for t in ts
    )
    samples, seconds = result.bootstrap
    return [
        ("ticks timed (after one warm-up)", f"{len(result.one)}"),
        (
            "history per container: samples (hours)",
            f"{result.history_steps:,} ({result.history_steps * result.step_s / 3600:g} h)",
        ),
        ("direct, one process: containers/s", f"{n / best_direct:,.0f}"),
        ("1 actor: containers/s per CPU", f"{n / best_one:,.0f}"),
        ("Ray overhead, 1 actor vs direct: best / median pair", f"{overhead:+.1%} / {paired:+.1%}"),
        ("2 actors: containers/s (per CPU)", f"{n / best_two:,.0f} ({n / best_two / 2:,.0f})"),
        ("speed-up, 2 actors over 1 (the split allows)", f"{speedup:.2f}x ({ideal:.2f}x)"),
        ("tick s, direct: best / median / worst", _spread(result.direct)),
        ("tick s, 1 actor: best / median / worst", _spread(result.one)),
        ("tick s, 2 actors: best / median / worst", _spread(result.two)),
        (
            "1 actor best tick: prepare / ingest / estimate s",
            f"{one_tick.prepare_s:.3f} / {one_tick.ingest_s:.3f} / {one_tick.estimate_s:.3f}",
        ),
        (
            "1 actor best tick: waiting on Ray (wall - in actor) ms",
            f"{(best_one - one_tick.wall_s) * 1e3:.1f}",
        ),
        (
            "1 actor vs direct, in-process tick time",
            f"{one_tick.wall_s / direct_tick.wall_s - 1:+.1%}",
        ),
        (
            "2 actors best tick: each actor's wall (CPU) s",
            " / ".join(f"{t.wall_s:.3f} ({t.cpu_s:.3f})" for t in two_ticks),
        ),
        (
            "CPU us/container in actors, 1 vs 2 actors",
            f"{one_cpu * 1e6:.2f} vs {two_cpu * 1e6:.2f}",
        ),
        ("state: store arrays, B/container", f"{mem.array_bytes / mem.aggregates:,.0f}"),
        (
            "state: + key frames, B/container",
            f"{(mem.array_bytes + mem.key_bytes) / mem.aggregates:,.0f}",
        ),
        (
            "1 actor RSS growth, B/container: after ticks / trimmed / peak",
            " / ".join(
                f"{b / mem.aggregates:,.0f}"
                for b in (mem.rss_growth, mem.trimmed_growth, mem.peak_growth)
            ),
        ),
        ("bootstrap in 1 actor: samples/s (prepare + ingest)", f"{samples / seconds:,.0f}"),
        (
            "VPA statuses a tick changes: any / > 5 % / > 10 % (of)",
            " / ".join(f"{changed:,}" for changed, _ in result.writes)
            + f" (of {result.writes[0][1]:,})",
        ),
        ("cores in direct ticks: actor/Ray/driver/rest (steal)", result.others_direct),
        ("cores in 1-actor ticks: actors/Ray/driver/rest (steal)", result.others_one),
        ("cores in 2-actor ticks: actors/Ray/driver/rest (steal)", result.others_two),
        ("same recommendations direct / 1 / 2 actors", "yes" if result.identical else "NO"),
    ]


# -- the I/O around a tick, measured once on the testbed (--probe-io) ---------------------------


def _probe_prometheus(workdir: Path, containers: int, calls: int) -> list[tuple[str, str]]:
    """A steady tick's history of one namespace (the last minute, 4 queries) from the
    testbed's Prometheus, `calls` times: wall and client CPU per namespace."""
    from analytics.sources.prometheus import PrometheusHistory, load_config  # noqa: PLC0415
    from testbed.prometheus import start_prometheus_with_history  # noqa: PLC0415
    from testbed.series import ContainerSpec, WorkloadSpec  # noqa: PLC0415

    per_workload = 3
    spec = [
        WorkloadSpec(
            "probe",
            f"w-{i:03d}",
            1,
            tuple(
                ContainerSpec(f"c{j}", 0.1 + 0.01 * j, 200 * _MIB, 0.2, 256 * _MIB)
                for j in range(min(per_workload, containers - i * per_workload))
            ),
        )
        for i in range(math.ceil(containers / per_workload))
    ]
    end = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0, tzinfo=None)
    instance, _ = start_prometheus_with_history(workdir, spec, days=1 / 24, step_s=60, end=end)
    try:
        source = PrometheusHistory(load_config({"connection": {"url": instance.url}}))
        walls, cpus, rows = [], [], 0
        for i in range(calls + 1):
            window_end = end - dt.timedelta(minutes=i % 30)
            wall_started, cpu_started = time.perf_counter(), time.process_time()
            history = source.fetch("probe", window_end - dt.timedelta(minutes=1), window_end)
            if i:  # the first call opens the connection
                walls.append(time.perf_counter() - wall_started)
                cpus.append(time.process_time() - cpu_started)
                rows = history.samples.height
        queries = source.query_count / (calls + 1)
    finally:
        instance.stop()
    return [
        ("Prometheus: one namespace's 1-minute window", f"{containers} containers, {rows} rows"),
        ("  queries per namespace and tick", f"{queries:g}"),
        ("  wall ms per namespace: best / median / worst", _spread_ms(walls)),
        ("  client CPU ms per namespace: best / median / worst", _spread_ms(cpus)),
    ]


def _probe_kubernetes(workdir: Path, vpas: int, writes: int) -> list[tuple[str, str]]:
    """VPA status writes (one JSON Patch of a 3-container recommendation each, as the status
    writer sends them) to the testbed's API server: wall and client CPU per write."""
    from recommender.kube.rest import JSON_PATCH, KubeClient, load_api_client  # noqa: PLC0415
    from recommender.kube.status_writer import VPA_API  # noqa: PLC0415
    from testbed.cluster import start_control_plane  # noqa: PLC0415

    plane = start_control_plane(workdir, nodes=1)
    try:
        kube = KubeClient(load_api_client(str(plane.kubeconfig)))
        base = f"{VPA_API}/namespaces/default/verticalpodautoscalers"
        for i in range(vpas):
            kube.request(
                "POST",
                base,
                body={
                    "apiVersion": "autoscaling.k8s.io/v1",
                    "kind": "VerticalPodAutoscaler",
                    "metadata": {"name": f"w-{i:03d}"},
                    "spec": {
                        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "w"},
                        "recommenders": [{"name": "vpa-fleet"}],
                    },
                },
            )
        walls, cpus = [], []
        for i in range(writes + 1):
            amounts = {"cpu": f"{100 + i}m", "memory": f"{200 + i}Mi"}
            status = {
                "recommendation": {
                    "containerRecommendations": [
                        {
                            "containerName": f"c{j}",
                            "target": amounts,
                            "lowerBound": amounts,
                            "upperBound": amounts,
                            "uncappedTarget": amounts,
                        }
                        for j in range(3)
                    ]
                },
                "conditions": [
                    {
                        "type": "RecommendationProvided",
                        "status": "True",
                        "lastTransitionTime": "2024-03-01T00:00:00Z",
                    }
                ],
            }
            patch = [{"op": "add", "path": "/status", "value": status}]
            wall_started, cpu_started = time.perf_counter(), time.process_time()
            kube.request(
                "PATCH", f"{base}/w-{i % vpas:03d}/status", body=patch, content_type=JSON_PATCH
            )
            if i:
                walls.append(time.perf_counter() - wall_started)
                cpus.append(time.process_time() - cpu_started)
    finally:
        plane.stop()
    return [
        ("Kubernetes: VPA status write (3 containers)", f"{writes} writes over {vpas} VPAs"),
        ("  wall ms per write: best / median / worst", _spread_ms(walls)),
        ("  client CPU ms per write: best / median / worst", _spread_ms(cpus)),
    ]


def _spread_ms(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    return " / ".join(
        f"{1e3 * v:.2f}" for v in (ordered[0], ordered[len(ordered) // 2], ordered[-1])
    )


def probe_io(args: argparse.Namespace) -> None:
    """The two kinds of I/O a tick does besides the engine, one request at a time, on the
    testbed (components on this machine, so the wall times include the servers' work on the
    same two cores; the client CPU is what a ShardActor spends)."""
    with tempfile.TemporaryDirectory(prefix="vpa-fleet-probe-") as tmp:
        rows = _probe_prometheus(Path(tmp) / "prometheus", args.per_namespace, args.probe_calls)
        rows += _probe_kubernetes(Path(tmp) / "kube", 20, args.probe_calls)
    print(
        f"I/O probe on the testbed: {args.probe_calls} calls each, one at a time, after one "
        "warm-up call"
    )
    width = max(len(measure) for measure, _ in rows)
    for measure, value in rows:
        print(f"{measure:<{width}}  {value}")


def _sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def _hours(text: str, count: int) -> list[float]:
    values = [float(part) for part in text.split(",") if part]
    return (values + values[-1:] * count)[:count]


def print_table(results: list[SizeResult], indent: str = "") -> None:
    table = [("measure", *(f"{r.layout.containers:,} containers" for r in results))]
    columns = [rows_of(r) for r in results]
    for i, (measure, _) in enumerate(columns[0]):
        table.append((measure, *(column[i][1] for column in columns)))
    widths = [max(len(row[j]) for row in table) for j in range(len(table[0]))]
    for row in table:
        cells = [f"{row[0]:<{widths[0]}}"] + [
            f"{cell:>{width}}" for cell, width in zip(row[1:], widths[1:], strict=True)
        ]
        print(indent + "  ".join(cells).rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="containers, comma list")
    parser.add_argument(
        "--history-h",
        default="24,24,2",
        help="hours of history per size (comma list; the last repeats)",
    )
    parser.add_argument("--step-s", type=int, default=60, help="seconds between samples")
    parser.add_argument("--window-steps", type=int, default=1, help="steps ingested per tick")
    parser.add_argument(
        "--granularity", choices=("actor", "namespace"), default="actor", help="see above"
    )
    parser.add_argument(
        "--estimate",
        choices=("recommendations", "arrays"),
        default="recommendations",
        help="recommend_rows (as the loop) or the estimators alone",
    )
    parser.add_argument("--estimate-chunk", type=int, default=20_000, help="rows per estimate")
    parser.add_argument("--per-namespace", type=int, default=50, help="containers a namespace")
    parser.add_argument("--chunk-rows", type=int, default=2_000_000, help="history batch rows")
    parser.add_argument("--repeats", type=int, default=5, help="timed ticks (best of them)")
    parser.add_argument(
        "--min-time", type=float, default=3.0, help="more ticks until 1 actor's add up to this"
    )
    parser.add_argument("--max-rounds", type=int, default=40, help="at most this many ticks")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=600.0,
        help="before each size, wait at most this many seconds for the machine to be idle",
    )
    parser.add_argument(
        "--gc-freeze", action="store_true", help="gc.freeze() after the history is ingested"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--probe-io",
        action="store_true",
        help="instead: time a namespace's Prometheus fetch and a VPA status write on the testbed",
    )
    parser.add_argument("--probe-calls", type=int, default=200, help="calls per probe")
    args = parser.parse_args()
    if args.probe_io:
        probe_io(args)
        return

    sizes = _sizes(args.sizes)
    hours = _hours(args.history_h, len(sizes))
    info = init_local_ray(num_cpus=2, object_store_bytes=256 * _MIB)
    try:
        import ray  # noqa: PLC0415 - imported after init_local_ray set Ray's environment

        results = []
        for containers, h in zip(sizes, hours, strict=True):
            busy = wait_until_quiet(args.wait_quiet)
            print(f"  ({busy:.2f} cores busy before {containers:,} containers)", flush=True)
            started = time.perf_counter()
            results.append(run_size(ray, info.temp_dir, containers, h, args))
            print(
                f"  ({containers:,} containers measured in {time.perf_counter() - started:.0f} s)",
                flush=True,
            )
            print_table(results[-1:], indent="    ")
    finally:
        shutdown_local_ray(info)
    first = results[0]
    print(
        f"fleet benchmark: {first.layout.per_namespace} containers a namespace (workloads of "
        f"{first.layout.per_workload}, one pod each), {first.layout.namespaces_per_cluster} "
        f"namespaces a cluster; samples every {args.step_s}s, a tick ingests "
        f"{args.window_steps} step(s) per container and estimates every container "
        f"({args.estimate}); granularity {args.granularity}; vpa strategy; local Ray "
        f"{ray.__version__}, {os.cpu_count()} CPUs, POLARS_MAX_THREADS=1 (actors report "
        f"{first.memory.polars_threads} polars thread(s)); best of {args.repeats} ticks"
    )
    print_table(results)
    for result in results:
        if result.disturbed > 0.1:
            print(
                f"warning: processes outside this benchmark used {result.disturbed:.2f} cores "
                f"during the {result.layout.containers:,}-container ticks (rest, above); "
                "those numbers are disturbed"
            )


if __name__ == "__main__":
    main()
