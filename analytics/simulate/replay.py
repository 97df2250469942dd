"""Replay a strategy over a usage trace as the VPA would have run it, and measure the outcome.

Time is cut into intervals (1 hour by default, aligned to multiples of the interval since the
epoch). At the start of every interval after the first:

1. the strategy recommends for every workload container from the samples seen so far (they
   were ingested interval by interval into one `AggregateStore`, never re-ingested);
2. the updater rule of `InPlaceOrRecreate` applies it: a running pod any of whose containers
   has a CPU or memory request outside [lowerBound, upperBound] is resized, every container
   of it with a recommendation taking the target (one resize per pod); a pod that starts
   during the interval gets the target at admission instead of its recorded requests;
3. each memory limit follows its request at the container's initial limit/request ratio.

Then the interval's samples are played against those requests. The trace's `cpu` and `memory`
are demand. Memory demand above the limit is an OOM kill: one when it first exceeds the limit
and one more per `oom_restart_s` (the crash-loop back-off) while it stays above; while over,
the container's memory is seen at the limit, and each kill is fed to the strategy as an OOM
event with the request at the kill, as the recommender sees a real one. Those observed samples
are what the strategy ingests. A trace's own `oom` column is ignored: kills come from the
simulated limits.

Each sample stands for `sample_s` seconds (by default the trace's typical spacing) and adds,
per container: CPU slack (request minus usage where positive, core-hours), CPU shortage (usage
minus request where positive, core-hours), memory slack (request minus observed usage where
positive, GiB-hours), and the requested core-hours and GiB-hours that relative slack divides by.

Everything per sample is numpy over whole intervals; the only Python loop is over intervals.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import polars as pl

from analytics.arrays import BoolArray, FloatArray, Int64Array
from analytics.estimation import estimate_rows, store_for
from analytics.go_semantics import UNSET_NS
from analytics.ingest import ingest_samples
from analytics.model_params import ModelParams
from analytics.store import AggregateStore
from analytics.strategies import STRATEGIES, PodEstimators, Strategy, get_strategy
from analytics.usage import AGGREGATE_KEYS, CONTAINER_KEYS, PreparedSamples, prepare_samples

__all__ = [
    "METRIC_KEYS",
    "Metrics",
    "PreparedTrace",
    "SimulationError",
    "SimulationResult",
    "Timeline",
    "WorkloadResult",
    "known_strategies",
    "prepare_trace",
    "simulate",
    "simulate_many",
    "strategy_named",
]

GIB: Final = float(1024**3)
_NS_PER_S: Final = 1_000_000_000
_NO_LIMIT: Final = np.iinfo(np.int64).max
WORKLOAD_KEYS: Final = ("cluster", "namespace", "workload")
POD_KEYS: Final = ("cluster", "namespace", "workload", "pod")

METRIC_KEYS: Final = (
    "cpu_slack_core_hours",
    "memory_slack_gib_hours",
    "cpu_shortage_core_hours",
    "oom_kills",
    "resizes",
    "cpu_relative_slack",
    "memory_relative_slack",
    "cpu_request_core_hours",
    "memory_request_gib_hours",
)
"""Keys of `Metrics.to_dict`, in output order."""

Progress = Callable[[int, int], None]
"""Called with (intervals done, intervals in all) after each interval."""


class SimulationError(ValueError):
    """A trace that cannot be simulated (e.g. without the requests to start from)."""


# -- strategies ------------------------------------------------------------------------------------


def known_strategies() -> list[str]:
    """Names the simulator accepts: the engine's registry (baselines included), sorted."""
    return sorted(STRATEGIES)


def strategy_named(name: str) -> Strategy:
    """A strategy of the engine's registry; ValueError listing the known ones."""
    return get_strategy(name)


def _build(name: str, params: Mapping[str, object] | None) -> tuple[ModelParams, PodEstimators]:
    strategy = strategy_named(name)
    parsed = strategy.parse_params(params)
    return parsed, strategy.build(parsed)


# -- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metrics:
    """What a strategy cost and risked over some containers."""

    cpu_slack_core_hours: float
    memory_slack_gib_hours: float
    cpu_shortage_core_hours: float
    oom_kills: int
    resizes: int
    cpu_request_core_hours: float
    memory_request_gib_hours: float

    @property
    def cpu_relative_slack(self) -> float:
        """Share of the requested core-hours left unused (0 when nothing was requested)."""
        return _ratio(self.cpu_slack_core_hours, self.cpu_request_core_hours)

    @property
    def memory_relative_slack(self) -> float:
        """Share of the requested GiB-hours left unused (0 when nothing was requested)."""
        return _ratio(self.memory_slack_gib_hours, self.memory_request_gib_hours)

    def to_dict(self) -> dict[str, float | int]:
        """The metrics under `METRIC_KEYS`; amounts rounded to 6 decimals."""
        values: dict[str, float | int] = {}
        for key in METRIC_KEYS:
            value = getattr(self, key)
            values[key] = value if isinstance(value, int) else round(float(value), 6)
        return values

    def versus(self, reference: Metrics) -> dict[str, float | int | None]:
        """These metrics against `reference`'s (another strategy's over the same trace):
        relative changes of slack and shortage (-0.25 is a quarter less; None where the
        reference has none), the difference in OOM kills, and the ratio of resizes (None
        where the reference made none)."""
        return {
            "cpu_slack_change": _change(self.cpu_slack_core_hours, reference.cpu_slack_core_hours),
            "memory_slack_change": _change(
                self.memory_slack_gib_hours, reference.memory_slack_gib_hours
            ),
            "cpu_shortage_change": _change(
                self.cpu_shortage_core_hours, reference.cpu_shortage_core_hours
            ),
            "oom_kills_difference": self.oom_kills - reference.oom_kills,
            "resizes_ratio": (
                round(self.resizes / reference.resizes, 6) if reference.resizes else None
            ),
        }

    @classmethod
    def sum(cls, parts: Sequence[Metrics]) -> Metrics:
        """The metrics of all parts together."""
        return cls(
            cpu_slack_core_hours=float(sum(p.cpu_slack_core_hours for p in parts)),
            memory_slack_gib_hours=float(sum(p.memory_slack_gib_hours for p in parts)),
            cpu_shortage_core_hours=float(sum(p.cpu_shortage_core_hours for p in parts)),
            oom_kills=sum(p.oom_kills for p in parts),
            resizes=sum(p.resizes for p in parts),
            cpu_request_core_hours=float(sum(p.cpu_request_core_hours for p in parts)),
            memory_request_gib_hours=float(sum(p.memory_request_gib_hours for p in parts)),
        )


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole > 0 else 0.0


def _change(value: float, reference: float) -> float | None:
    return round(value / reference - 1.0, 6) if reference > 0 else None


@dataclass(frozen=True)
class WorkloadResult:
    """The metrics of one workload (all its pods and containers)."""

    cluster: str
    namespace: str
    workload: str
    metrics: Metrics

    def to_dict(self) -> dict[str, object]:
        """Workload key and metrics, flat."""
        return {
            "cluster": self.cluster,
            "namespace": self.namespace,
            "workload": self.workload,
            **self.metrics.to_dict(),
        }


@dataclass(frozen=True)
class Timeline:
    """Requests in effect during each interval, per container (`container_keys` rows).

    `start_ns` has one entry per interval; the arrays have shape (intervals, containers).
    Requests of containers not running yet are their recorded starting requests.
    """

    start_ns: Int64Array
    interval_ns: int
    container_keys: pl.DataFrame
    cpu_request_millicores: Int64Array
    memory_request_bytes: Int64Array
    memory_limit_bytes: Int64Array
    oom_kills: Int64Array


@dataclass(frozen=True)
class SimulationResult:
    """One strategy replayed over one trace."""

    strategy: str
    params: dict[str, object]
    total: Metrics
    workloads: list[WorkloadResult]
    timeline: Timeline
    skipped: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """`strategy`, the total metrics, and a `workloads` list with the same metric keys."""
        return {
            "strategy": self.strategy,
            **self.total.to_dict(),
            "workloads": [workload.to_dict() for workload in self.workloads],
        }


# -- the trace, prepared once for every strategy -----------------------------------------------


@dataclass(frozen=True)
class PreparedTrace:
    """A validated trace in canonical order with each container's starting point.

    Containers are the rows of `samples.container_keys`; `aggregate_of`, `pod_of` and
    `workload_of` map each to its row of `aggregate_keys`, `pod_keys`, `workload_keys`.
    """

    samples: PreparedSamples
    initial_cpu_millicores: Int64Array
    initial_memory_bytes: Int64Array
    limit_ratio: FloatArray
    first_ns: Int64Array
    last_ns: Int64Array
    aggregate_keys: pl.DataFrame
    aggregate_of: Int64Array
    pod_keys: pl.DataFrame
    pod_of: Int64Array
    workload_keys: pl.DataFrame
    workload_of: Int64Array
    pod_workload: Int64Array
    sample_s: float

    @property
    def container_keys(self) -> pl.DataFrame:
        """One row per container (CONTAINER_KEYS), sorted."""
        return self.samples.container_keys

    @property
    def n_containers(self) -> int:
        """Number of containers (pod containers) in the trace."""
        return self.samples.container_keys.height


def _index_of(keys: pl.DataFrame, names: Sequence[str]) -> tuple[pl.DataFrame, Int64Array]:
    """Distinct sorted key rows of `keys[names]` and each row's index among them."""
    distinct = keys.select(names).unique().sort(names).with_row_index("index")
    joined = keys.select(names).join(distinct, on=list(names), how="left", maintain_order="left")
    return distinct.drop("index"), joined["index"].cast(pl.Int64).to_numpy()


def _starting_points(frame: pl.DataFrame, containers: pl.DataFrame) -> pl.DataFrame:
    """Each container's first recorded cpu_request, memory_request, memory_limit."""
    for column in ("cpu_request", "memory_request"):
        if column not in frame.columns:
            raise SimulationError(
                f"missing column {column!r}: the simulation starts from each container's "
                "recorded requests (cpu_request in cores, memory_request in bytes)"
            )
    columns = ["cpu_request", "memory_request"]
    if "memory_limit" in frame.columns:
        columns.append("memory_limit")
    keys = [pl.col(name).cast(pl.String) for name in CONTAINER_KEYS]
    firsts = (
        frame.select(*keys, "timestamp", *[pl.col(c).cast(pl.Float64) for c in columns])
        .sort("timestamp", maintain_order=True)
        .group_by(CONTAINER_KEYS)
        .agg(pl.col(c).drop_nulls().drop_nans().first() for c in columns)
    )
    starts = containers.join(firsts, on=list(CONTAINER_KEYS), how="left", maintain_order="left")
    for column in ("cpu_request", "memory_request"):
        missing = starts.filter(pl.col(column).is_null())
        if missing.height:
            key = "/".join(str(v) for v in missing.row(0))
            raise SimulationError(
                f"column {column!r} has no value for container {key}: "
                "the simulation needs every container's starting request"
            )
    if "memory_limit" not in starts.columns:
        starts = starts.with_columns(pl.lit(None, dtype=pl.Float64).alias("memory_limit"))
    return starts


def _typical_spacing_s(samples: PreparedSamples) -> float:
    """Median time between consecutive samples of a container, seconds (60 if unknown)."""
    order = np.argsort(samples.container, kind="stable")
    container = samples.container[order]
    t_ns = samples.t_ns[order]
    same = container[1:] == container[:-1]
    gaps = (t_ns[1:] - t_ns[:-1])[same]
    gaps = gaps[gaps > 0]
    if gaps.shape[0] == 0:
        return 60.0
    return float(np.median(gaps)) / _NS_PER_S


def prepare_trace(frame: pl.DataFrame, sample_s: float | None = None) -> PreparedTrace:
    """Validate a usage frame (schema of `analytics.usage` plus starting requests) once, for
    any number of strategies. `sample_s`: seconds each sample stands for (default: the
    trace's median spacing)."""
    samples = prepare_samples(frame)
    if len(samples) == 0:
        raise SimulationError("the trace has no samples")
    containers = samples.container_keys
    starts = _starting_points(frame, containers)
    cpu_request = starts["cpu_request"].to_numpy()
    memory_request = starts["memory_request"].to_numpy()
    limit = starts["memory_limit"].fill_null(np.nan).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(np.isfinite(limit) & (memory_request > 0), limit / memory_request, np.inf)
    if np.any(ratio < 1.0):
        row = int(np.flatnonzero(ratio < 1.0)[0])
        key = "/".join(str(v) for v in containers.row(row))
        raise SimulationError(f"container {key}: memory_limit is below memory_request")

    n = containers.height
    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(first, samples.container, samples.t_ns)
    np.maximum.at(last, samples.container, samples.t_ns)
    aggregate_keys, aggregate_of = _index_of(containers, AGGREGATE_KEYS)
    pod_keys, pod_of = _index_of(containers, POD_KEYS)
    workload_keys, workload_of = _index_of(containers, WORKLOAD_KEYS)
    _, pod_workload = _index_of(pod_keys, WORKLOAD_KEYS)
    if sample_s is None:
        sample_s = _typical_spacing_s(samples)
    elif not sample_s > 0:
        raise SimulationError(f"sample_s must be positive, got {sample_s}")
    return PreparedTrace(
        samples=samples,
        initial_cpu_millicores=np.round(cpu_request * 1000.0).astype(np.int64),
        initial_memory_bytes=np.round(memory_request).astype(np.int64),
        limit_ratio=ratio.astype(np.float64),
        first_ns=first,
        last_ns=last,
        aggregate_keys=aggregate_keys,
        aggregate_of=aggregate_of,
        pod_keys=pod_keys,
        pod_of=pod_of,
        workload_keys=workload_keys,
        workload_of=workload_of,
        pod_workload=pod_workload,
        sample_s=float(sample_s),
    )


# -- the replay ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Recommendation:
    """Per aggregate of the trace: whether it has a recommendation, and its six amounts."""

    present: BoolArray
    target_cpu: Int64Array
    target_memory: Int64Array
    lower_cpu: Int64Array
    lower_memory: Int64Array
    upper_cpu: Int64Array
    upper_memory: Int64Array


@dataclass
class _CrashLoops:
    """Per container: whether its last sample was over the limit, since when, and when."""

    over: BoolArray
    start_ns: Int64Array
    last_ns: Int64Array

    @classmethod
    def none(cls, n: int) -> _CrashLoops:
        unset = np.full(n, UNSET_NS, dtype=np.int64)
        return cls(np.zeros(n, dtype=bool), unset, unset.copy())


def _kills(
    container: Int64Array,
    t_ns: Int64Array,
    over: BoolArray,
    loops: _CrashLoops,
    restart_ns: int,
) -> BoolArray:
    """Which samples are OOM kills; updates the carried crash-loop state.

    A run of consecutive over-limit samples of a container (possibly continuing from the
    previous interval) kills at its first sample and then at the first sample of each further
    `restart_ns` since the run started.
    """
    n = t_ns.shape[0]
    kills = np.zeros(n, dtype=bool)
    if n == 0:
        return kills
    order = np.argsort(container, kind="stable")
    c = container[order]
    t = t_ns[order]
    o = over[order]
    first = np.r_[True, c[1:] != c[:-1]]
    previous_over = np.r_[False, o[:-1]]
    previous_over[first] = loops.over[c[first]]
    begins = o & ~previous_over
    carried = first & o & previous_over
    # Where a run starts: at its first sample, or (carried over) where the state says.
    mark = begins | carried
    run_start = np.where(carried, loops.start_ns[c], t)
    latest_mark = np.maximum.accumulate(np.where(mark, np.arange(n), 0))
    start = np.where(o, run_start[latest_mark], t)
    previous_t = np.r_[t[:1], t[:-1]]
    previous_t[first] = np.where(carried[first], loops.last_ns[c[first]], t[first])
    previous_t = np.where(o & ~begins, previous_t, start)
    phase = (t - start) // restart_ns
    previous_phase = (previous_t - start) // restart_ns
    killed = o & (begins | (phase > previous_phase))
    kills[order] = killed

    last = np.r_[c[1:] != c[:-1], True]
    ending = c[last]
    loops.over[ending] = o[last]
    loops.start_ns[ending] = np.where(o[last], start[last], UNSET_NS)
    loops.last_ns[ending] = t[last]
    return kills


class _Replay:
    """The state of one strategy's replay over one prepared trace."""

    def __init__(
        self,
        trace: PreparedTrace,
        estimators: PodEstimators,
        store: AggregateStore,
        interval_ns: int,
        restart_ns: int,
    ) -> None:
        self.trace = trace
        self.estimators = estimators
        self.store = store
        self.interval_ns = interval_ns
        self.restart_ns = restart_ns
        n = trace.n_containers
        self.cpu_request = trace.initial_cpu_millicores.copy()
        self.memory_request = trace.initial_memory_bytes.copy()
        self.loops = _CrashLoops.none(n)
        self.store_row = np.full(trace.aggregate_keys.height, -1, dtype=np.int64)
        self.mapped_aggregates = 0
        self.skipped: Counter[str] = Counter(trace.samples.skipped)
        zero = np.zeros(n, dtype=np.float64)
        self.cpu_slack = zero.copy()
        self.cpu_shortage = zero.copy()
        self.memory_slack = zero.copy()
        self.cpu_requested = zero.copy()
        self.memory_requested = zero.copy()
        self.kills = np.zeros(n, dtype=np.int64)
        self.pod_resizes = np.zeros(trace.pod_keys.height, dtype=np.int64)

    # -- limits --------------------------------------------------------------------------------

    def memory_limit(self) -> Int64Array:
        """Current limits: each request times its container's ratio (no limit: int64 max)."""
        ratio = self.trace.limit_ratio
        finite = np.isfinite(ratio)
        scaled = np.floor(self.memory_request * np.where(finite, ratio, 1.0))
        capped = np.minimum(scaled, float(_NO_LIMIT // 2))
        result: Int64Array = np.where(finite, capped.astype(np.int64), _NO_LIMIT)
        return result

    # -- recommendations -----------------------------------------------------------------------

    def _store_rows(self) -> Int64Array:
        """Store row of each of the trace's aggregates (-1 while it has none)."""
        if self.store.n_aggregates != self.mapped_aggregates:
            joined = self.trace.aggregate_keys.join(
                self.store.aggregate_keys.with_row_index("row"),
                on=list(AGGREGATE_KEYS),
                how="left",
                maintain_order="left",
            )
            self.store_row = joined["row"].cast(pl.Int64).fill_null(-1).to_numpy()
            self.mapped_aggregates = self.store.n_aggregates
        return self.store_row

    def recommend(self, now_ns: int) -> _Recommendation:
        """Recommendations as of now_ns, from `analytics.estimation.estimate_rows` as the loop."""
        n = self.trace.aggregate_keys.height
        zero = np.zeros(n, dtype=np.int64)
        absent = _Recommendation(np.zeros(n, dtype=bool), zero, zero, zero, zero, zero, zero)
        rows = self._store_rows()
        if self.store.n_aggregates == 0:
            return absent
        estimated = estimate_rows(self.store, self.store.all_rows(), self.estimators, now_ns)
        live, estimates, usable = estimated.live, estimated.estimates, estimated.usable
        if live.shape[0] == 0:
            return absent
        position = np.full(self.store.n_aggregates, -1, dtype=np.int64)
        position[live] = np.arange(live.shape[0])
        at = np.where(rows >= 0, position[np.maximum(rows, 0)], -1)
        present = (at >= 0) & usable[np.maximum(at, 0)]
        pick = np.maximum(at, 0)

        def take(values: Int64Array) -> Int64Array:
            result: Int64Array = np.where(present, values[pick], 0)
            return result

        return _Recommendation(
            present=present,
            target_cpu=take(estimates.target_cpu),
            target_memory=take(estimates.target_memory),
            lower_cpu=take(estimates.lower_cpu),
            lower_memory=take(estimates.lower_memory),
            upper_cpu=take(estimates.upper_cpu),
            upper_memory=take(estimates.upper_memory),
        )

    def apply(self, now_ns: int, next_ns: int) -> None:
        """The updater and admission at an interval start (see the module docstring)."""
        trace = self.trace
        recommendation = self.recommend(now_ns)
        a = trace.aggregate_of
        has = recommendation.present[a]
        if not has.any():
            return
        running = (trace.first_ns < now_ns) & (trace.last_ns >= now_ns)
        cpu, memory = self.cpu_request, self.memory_request
        outside = has & (
            (cpu < recommendation.lower_cpu[a])
            | (cpu > recommendation.upper_cpu[a])
            | (memory < recommendation.lower_memory[a])
            | (memory > recommendation.upper_memory[a])
        )
        n_pods = trace.pod_keys.height
        resized_pod = np.bincount(trace.pod_of[outside & running], minlength=n_pods) > 0
        self.pod_resizes += resized_pod
        starting = (trace.first_ns >= now_ns) & (trace.first_ns < next_ns)
        update = has & ((resized_pod[trace.pod_of] & running) | starting)
        self.cpu_request = np.where(update, recommendation.target_cpu[a], cpu)
        self.memory_request = np.where(update, recommendation.target_memory[a], memory)

    # -- one interval of samples ---------------------------------------------------------------

    def play(self, lo: int, hi: int) -> Int64Array:
        """Play samples [lo, hi) against the current requests; returns kills per container."""
        n = self.trace.n_containers
        if hi <= lo:
            return np.zeros(n, dtype=np.int64)
        samples = self.trace.samples
        window = slice(lo, hi)
        c = samples.container[window]
        t_ns = samples.t_ns[window]
        cpu = samples.cpu_millicores[window]
        cpu_valid = samples.cpu_valid[window]
        memory = samples.memory_bytes[window]
        memory_valid = samples.memory_valid[window]
        cpu_request = self.cpu_request[c]
        memory_request = self.memory_request[c]
        limit = self.memory_limit()[c]

        over = memory_valid & (memory > limit)
        kills = _kills(c, t_ns, over, self.loops, self.restart_ns)
        observed = np.minimum(memory, limit)

        hours = self.trace.sample_s / 3600.0
        cpu_hours = np.where(cpu_valid, hours / 1000.0, 0.0)
        memory_hours = np.where(memory_valid, hours / GIB, 0.0)
        cpu_gap = (cpu_request - cpu).astype(np.float64)
        memory_gap = (memory_request - observed).astype(np.float64)

        def per_container(values: FloatArray) -> FloatArray:
            result: FloatArray = np.bincount(c, weights=values, minlength=n).astype(np.float64)
            return result

        self.cpu_slack += per_container(np.maximum(cpu_gap, 0.0) * cpu_hours)
        self.cpu_shortage += per_container(np.maximum(-cpu_gap, 0.0) * cpu_hours)
        self.memory_slack += per_container(np.maximum(memory_gap, 0.0) * memory_hours)
        self.cpu_requested += per_container(cpu_request.astype(np.float64) * cpu_hours)
        self.memory_requested += per_container(memory_request.astype(np.float64) * memory_hours)
        interval_kills = np.bincount(c[kills], minlength=n).astype(np.int64)
        self.kills += interval_kills

        present = np.unique(c)
        batch = PreparedSamples(
            t_ns=t_ns,
            container=np.searchsorted(present, c).astype(np.int64),
            container_keys=samples.container_keys[present],
            cpu_millicores=cpu,
            cpu_valid=cpu_valid,
            memory_bytes=observed,
            memory_valid=memory_valid,
            oom=kills,
            oom_memory_bytes=memory_request,
            skipped=Counter(),
        )
        self.skipped.update(ingest_samples(self.store, batch))
        return interval_kills

    # -- results -------------------------------------------------------------------------------

    def results(self) -> tuple[Metrics, list[WorkloadResult]]:
        trace = self.trace
        n_workloads = trace.workload_keys.height

        def per_workload(values: FloatArray | Int64Array) -> FloatArray:
            weights = values.astype(np.float64)
            counts = np.bincount(trace.workload_of, weights=weights, minlength=n_workloads)
            result: FloatArray = counts.astype(np.float64)
            return result

        cpu_slack = per_workload(self.cpu_slack)
        memory_slack = per_workload(self.memory_slack)
        cpu_shortage = per_workload(self.cpu_shortage)
        kills = per_workload(self.kills)
        cpu_requested = per_workload(self.cpu_requested)
        memory_requested = per_workload(self.memory_requested)
        resizes = np.bincount(
            trace.pod_workload, weights=self.pod_resizes.astype(np.float64), minlength=n_workloads
        )
        workloads = []
        for index, (cluster, namespace, workload) in enumerate(trace.workload_keys.iter_rows()):
            workloads.append(
                WorkloadResult(
                    cluster,
                    namespace,
                    workload,
                    Metrics(
                        cpu_slack_core_hours=float(cpu_slack[index]),
                        memory_slack_gib_hours=float(memory_slack[index]),
                        cpu_shortage_core_hours=float(cpu_shortage[index]),
                        oom_kills=round(kills[index]),
                        resizes=round(resizes[index]),
                        cpu_request_core_hours=float(cpu_requested[index]),
                        memory_request_gib_hours=float(memory_requested[index]),
                    ),
                )
            )
        return Metrics.sum([w.metrics for w in workloads]), workloads


def _intervals(t_ns: Int64Array, interval_ns: int) -> Int64Array:
    """Interval starts covering the samples, at multiples of the interval since the epoch."""
    first = int(t_ns[0]) // interval_ns * interval_ns
    last = int(t_ns[-1])
    count = (last - first) // interval_ns + 1
    return first + np.arange(count + 1, dtype=np.int64) * interval_ns


def simulate(
    trace: PreparedTrace | pl.DataFrame,
    strategy: str = "vpa",
    params: Mapping[str, object] | None = None,
    *,
    interval_s: float = 3600.0,
    oom_restart_s: float = 300.0,
    progress: Progress | None = None,
) -> SimulationResult:
    """Replay one strategy over a trace (a frame is prepared first; see `prepare_trace`).

    Raises `SimulationError`, `SampleError`, `ParameterError` or ValueError for a trace that
    cannot be simulated, an unknown strategy or bad parameters.
    """
    if not interval_s > 0:
        raise SimulationError(f"interval_s must be positive, got {interval_s}")
    if not oom_restart_s > 0:
        raise SimulationError(f"oom_restart_s must be positive, got {oom_restart_s}")
    model_params, estimators = _build(strategy, params)
    prepared = trace if isinstance(trace, PreparedTrace) else prepare_trace(trace)
    store = store_for(model_params, estimators)
    interval_ns = round(interval_s * _NS_PER_S)
    replay = _Replay(prepared, estimators, store, interval_ns, round(oom_restart_s * _NS_PER_S))
    bounds = _intervals(prepared.samples.t_ns, interval_ns)
    edges = np.searchsorted(prepared.samples.t_ns, bounds, side="left")
    count = bounds.shape[0] - 1
    shape = (count, prepared.n_containers)
    cpu_timeline = np.zeros(shape, dtype=np.int64)
    memory_timeline = np.zeros(shape, dtype=np.int64)
    limit_timeline = np.zeros(shape, dtype=np.int64)
    kill_timeline = np.zeros(shape, dtype=np.int64)
    for k in range(count):
        if k > 0:
            replay.apply(int(bounds[k]), int(bounds[k + 1]))
        cpu_timeline[k] = replay.cpu_request
        memory_timeline[k] = replay.memory_request
        limit_timeline[k] = replay.memory_limit()
        kill_timeline[k] = replay.play(int(edges[k]), int(edges[k + 1]))
        if progress is not None:
            progress(k + 1, count)
    total, workloads = replay.results()
    timeline = Timeline(
        start_ns=bounds[:-1],
        interval_ns=interval_ns,
        container_keys=prepared.container_keys,
        cpu_request_millicores=cpu_timeline,
        memory_request_bytes=memory_timeline,
        memory_limit_bytes=limit_timeline,
        oom_kills=kill_timeline,
    )
    return SimulationResult(
        strategy=strategy,
        params=dict(params or {}),
        total=total,
        workloads=workloads,
        timeline=timeline,
        skipped=dict(replay.skipped),
    )


def simulate_many(
    frame: pl.DataFrame | PreparedTrace,
    strategies: Sequence[tuple[str, Mapping[str, object] | None]],
    *,
    interval_s: float = 3600.0,
    oom_restart_s: float = 300.0,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[SimulationResult]:
    """Replay several (strategy, params) over one trace, prepared once.

    Every strategy's parameters are validated before the first replay starts.
    """
    for name, params in strategies:
        _build(name, params)
    prepared = frame if isinstance(frame, PreparedTrace) else prepare_trace(frame)
    results = []
    for name, params in strategies:
        report = None if progress is None else functools.partial(progress, name)
        results.append(
            simulate(
                prepared,
                name,
                params,
                interval_s=interval_s,
                oom_restart_s=oom_restart_s,
                progress=report,
            )
        )
    return results
