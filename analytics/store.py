"""Dense state of many workload containers: what the vectorized path updates and estimates from.

One row per aggregate (workload container) holds its CPU and memory histograms and CPU sample
bookkeeping; one row per running container (pod container) holds its CPU dedup time and its
current memory interval. Times are int64 ns since the Unix epoch (`UNSET_NS` when unset), CPU
amounts integer millicores, memory amounts integer bytes.

A store may also keep an `HourlyProfile` (`analytics.strategy_profile`) with the same rows, for
estimators that read one (`ProfileAware`, e.g. `default`): created empty with each aggregate,
dropped with it, fed by the same ingestion as the histograms. A store for other estimators
keeps none and pays nothing for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
import polars as pl

from analytics.arrays import Int64Array
from analytics.container_state import AggregateState, ContainerState
from analytics.go_semantics import UNSET_NS
from analytics.histogram import HistogramArrays, PercentileWalk
from analytics.histogram_layout import CPU_LAYOUT, MEMORY_LAYOUT
from analytics.model_params import ModelParams
from analytics.strategy_profile import HourlyProfile
from analytics.usage import AGGREGATE_KEYS, CONTAINER_KEYS

__all__ = ["AggregateStore", "EstimationInput"]


AggregateKey = tuple[str, str, str, str]
ContainerKey = tuple[str, str, str, str, str]


@dataclass(frozen=True)
class EstimationInput:
    """What estimators read, for n aggregates: histograms, CPU bookkeeping, pod shape.

    `containers_per_pod` is the number of containers of the aggregate's workload, over which
    pod-level minimums are split.
    """

    cpu: HistogramArrays
    memory: HistogramArrays
    first_sample_start_ns: Int64Array
    last_sample_start_ns: Int64Array
    total_samples_count: Int64Array
    containers_per_pod: Int64Array

    def __len__(self) -> int:
        return len(self.cpu)

    def take(self, rows: Int64Array) -> EstimationInput:
        """The aggregates at `rows` (in that order, repeats allowed)."""
        return EstimationInput(
            cpu=self.cpu.take(rows),
            memory=self.memory.take(rows),
            first_sample_start_ns=self.first_sample_start_ns[rows],
            last_sample_start_ns=self.last_sample_start_ns[rows],
            total_samples_count=self.total_samples_count[rows],
            containers_per_pod=self.containers_per_pod[rows],
        )

    @cached_property
    def cpu_walk(self) -> PercentileWalk:
        """Cumulative CPU histogram weights, computed once for all CPU percentiles."""
        return self.cpu.walk()

    @cached_property
    def memory_walk(self) -> PercentileWalk:
        """Cumulative memory histogram weights, computed once for all memory percentiles."""
        return self.memory.walk()


def _empty_keys(names: tuple[str, ...]) -> pl.DataFrame:
    return pl.DataFrame({name: pl.Series(name, [], dtype=pl.String) for name in names})


def _int64(values: list[int]) -> Int64Array:
    return np.array(values, dtype=np.int64)


@dataclass
class AggregateStore:
    """State of many aggregates and their running containers, as arrays."""

    params: ModelParams
    aggregate_keys: pl.DataFrame
    cpu: HistogramArrays
    memory: HistogramArrays
    first_sample_start_ns: Int64Array
    last_sample_start_ns: Int64Array
    total_samples_count: Int64Array
    creation_ns: Int64Array
    container_keys: pl.DataFrame
    container_aggregate: Int64Array
    last_cpu_sample_start_ns: Int64Array
    window_end_ns: Int64Array
    last_memory_sample_start_ns: Int64Array
    memory_peak_bytes: Int64Array
    oom_peak_bytes: Int64Array
    profile: HourlyProfile | None = None

    @classmethod
    def empty(cls, params: ModelParams | None = None, *, profile: bool = False) -> AggregateStore:
        """A store with no aggregates; with `profile`, it keeps an hourly profile of each."""
        params = (params or ModelParams()).model_fields_only()
        none = np.zeros(0, dtype=np.int64)
        return cls(
            params=params,
            aggregate_keys=_empty_keys(AGGREGATE_KEYS),
            cpu=HistogramArrays.empty(CPU_LAYOUT, params.cpu_half_life_ns),
            memory=HistogramArrays.empty(MEMORY_LAYOUT, params.memory_half_life_ns),
            first_sample_start_ns=none.copy(),
            last_sample_start_ns=none.copy(),
            total_samples_count=none.copy(),
            creation_ns=none.copy(),
            container_keys=_empty_keys(CONTAINER_KEYS),
            container_aggregate=none.copy(),
            last_cpu_sample_start_ns=none.copy(),
            window_end_ns=none.copy(),
            last_memory_sample_start_ns=none.copy(),
            memory_peak_bytes=none.copy(),
            oom_peak_bytes=none.copy(),
            profile=HourlyProfile.empty(0) if profile else None,
        )

    @property
    def n_aggregates(self) -> int:
        """Number of aggregates (workload containers)."""
        return self.aggregate_keys.height

    @property
    def n_containers(self) -> int:
        """Number of running containers (pod containers) with state."""
        return self.container_keys.height

    # -- growth --------------------------------------------------------------------------------

    def add_aggregates(self, keys: pl.DataFrame, creation_ns: Int64Array) -> None:
        """Append empty aggregates with the given keys (AGGREGATE_KEYS columns)."""
        n = keys.height
        self.aggregate_keys = pl.concat([self.aggregate_keys, keys.select(AGGREGATE_KEYS)])
        self.cpu.extend(n)
        self.memory.extend(n)
        unset = np.full(n, UNSET_NS, dtype=np.int64)
        self.first_sample_start_ns = np.concatenate([self.first_sample_start_ns, unset])
        self.last_sample_start_ns = np.concatenate([self.last_sample_start_ns, unset])
        self.total_samples_count = np.concatenate(
            [self.total_samples_count, np.zeros(n, dtype=np.int64)]
        )
        self.creation_ns = np.concatenate([self.creation_ns, creation_ns.astype(np.int64)])
        if self.profile is not None:
            self.profile.extend(n)

    def add_containers(self, keys: pl.DataFrame, aggregate: Int64Array) -> None:
        """Append fresh running containers (CONTAINER_KEYS columns) feeding the given aggregates."""
        n = keys.height
        self.container_keys = pl.concat([self.container_keys, keys.select(CONTAINER_KEYS)])
        self.container_aggregate = np.concatenate([self.container_aggregate, aggregate])
        unset = np.full(n, UNSET_NS, dtype=np.int64)
        zero = np.zeros(n, dtype=np.int64)
        self.last_cpu_sample_start_ns = np.concatenate([self.last_cpu_sample_start_ns, unset])
        self.window_end_ns = np.concatenate([self.window_end_ns, unset])
        self.last_memory_sample_start_ns = np.concatenate([self.last_memory_sample_start_ns, unset])
        self.memory_peak_bytes = np.concatenate([self.memory_peak_bytes, zero])
        self.oom_peak_bytes = np.concatenate([self.oom_peak_bytes, zero])

    def keep_aggregates(self, keep: npt.NDArray[np.bool_]) -> None:
        """Forget the aggregates where `keep` is False, with the containers feeding them."""
        rows = np.flatnonzero(keep)
        new_index = np.full(self.n_aggregates, -1, dtype=np.int64)
        new_index[rows] = np.arange(rows.shape[0], dtype=np.int64)
        self.aggregate_keys = self.aggregate_keys[rows]
        self.cpu = self.cpu.take(rows)
        self.memory = self.memory.take(rows)
        self.first_sample_start_ns = self.first_sample_start_ns[rows]
        self.last_sample_start_ns = self.last_sample_start_ns[rows]
        self.total_samples_count = self.total_samples_count[rows]
        self.creation_ns = self.creation_ns[rows]
        if self.profile is not None:
            self.profile = self.profile.take(rows)
        kept = np.flatnonzero(keep[self.container_aggregate])
        self.container_keys = self.container_keys[kept]
        self.container_aggregate = new_index[self.container_aggregate[kept]]
        self.last_cpu_sample_start_ns = self.last_cpu_sample_start_ns[kept]
        self.window_end_ns = self.window_end_ns[kept]
        self.last_memory_sample_start_ns = self.last_memory_sample_start_ns[kept]
        self.memory_peak_bytes = self.memory_peak_bytes[kept]
        self.oom_peak_bytes = self.oom_peak_bytes[kept]

    def keep_profile(self) -> None:
        """Keep an hourly profile from now on (empty for the aggregates already known)."""
        if self.profile is None:
            self.profile = HourlyProfile.empty(self.n_aggregates)

    # -- views ---------------------------------------------------------------------------------

    def all_rows(self) -> Int64Array:
        """Every aggregate row, in order."""
        return np.arange(self.n_aggregates, dtype=np.int64)

    def workload_rows(self, cluster: str, namespace: str, workload: str) -> Int64Array:
        """Rows of the aggregates (containers) of one workload, in row order."""
        keys = self.aggregate_keys
        match = (
            (keys["cluster"] == cluster)
            & (keys["namespace"] == namespace)
            & (keys["workload"] == workload)
        )
        return np.flatnonzero(match.to_numpy()).astype(np.int64)

    def containers_per_pod(self, rows: Int64Array) -> Int64Array:
        """For each of the given aggregates: how many of them belong to its workload."""
        workloads = ["cluster", "namespace", "workload"]
        chosen = self.aggregate_keys[rows]
        counts = chosen.with_columns(pl.len().over(workloads).alias("n"))["n"]
        return counts.to_numpy().astype(np.int64)

    def expired(self, now_ns: int) -> npt.NDArray[np.bool_]:
        """Aggregates the stock recommender would have garbage-collected by now_ns.

        Expired: no CPU sample for the history window (interval x count), or, never having had
        one, created more than the window ago.
        """
        empty = self.total_samples_count == 0
        since = np.where(empty, self.creation_ns, self.last_sample_start_ns)
        known = since != UNSET_NS
        age = np.where(known, now_ns - np.where(known, since, 0), 0)
        result: npt.NDArray[np.bool_] = known & (age >= self.params.history_window_ns)
        return result

    def estimation_input(self, rows: Int64Array | None = None) -> EstimationInput:
        """The estimator input for the given aggregate rows (all by default).

        The rows given make up the pods: pod minimums are split over the given containers of
        each workload.
        """
        if rows is None:
            rows = self.all_rows()
        per_pod = self.containers_per_pod(rows)
        return EstimationInput(
            cpu=self.cpu.take(rows),
            memory=self.memory.take(rows),
            first_sample_start_ns=self.first_sample_start_ns[rows],
            last_sample_start_ns=self.last_sample_start_ns[rows],
            total_samples_count=self.total_samples_count[rows],
            containers_per_pod=per_pod,
        )

    def aggregate_key(self, index: int) -> AggregateKey:
        """Key of aggregate `index`."""
        row = self.aggregate_keys.row(index)
        return (row[0], row[1], row[2], row[3])

    def aggregate_state(self, index: int) -> AggregateState:
        """Aggregate `index` as a scalar state (a copy)."""
        state = AggregateState(self.params, int(self.creation_ns[index]))
        state.cpu = self.cpu.row(index)
        state.memory = self.memory.row(index)
        state.first_sample_start_ns = int(self.first_sample_start_ns[index])
        state.last_sample_start_ns = int(self.last_sample_start_ns[index])
        state.total_samples_count = int(self.total_samples_count[index])
        return state

    def aggregate_bytes(self, index: int) -> bytes:
        """Serialized state of aggregate `index` (both histograms and the CPU bookkeeping)."""
        return self.aggregate_state(index).to_bytes()

    # -- conversion from the scalar path -------------------------------------------------------

    @classmethod
    def from_states(
        cls,
        params: ModelParams,
        aggregates: dict[AggregateKey, AggregateState],
        containers: dict[ContainerKey, ContainerState],
    ) -> AggregateStore:
        """Build a store from scalar states; rows follow the sorted keys."""
        store = cls.empty(params)
        aggregate_keys = sorted(aggregates)
        index_of = {key: i for i, key in enumerate(aggregate_keys)}
        states = [aggregates[key] for key in aggregate_keys]
        store.add_aggregates(
            pl.DataFrame(
                aggregate_keys, schema=dict.fromkeys(AGGREGATE_KEYS, pl.String), orient="row"
            ),
            _int64([state.creation_ns for state in states]),
        )
        store.cpu = HistogramArrays.from_histograms(
            CPU_LAYOUT, params.cpu_half_life_ns, [state.cpu for state in states]
        )
        store.memory = HistogramArrays.from_histograms(
            MEMORY_LAYOUT, params.memory_half_life_ns, [state.memory for state in states]
        )
        store.first_sample_start_ns = _int64([s.first_sample_start_ns for s in states])
        store.last_sample_start_ns = _int64([s.last_sample_start_ns for s in states])
        store.total_samples_count = _int64([s.total_samples_count for s in states])
        container_keys = sorted(containers)
        store.add_containers(
            pl.DataFrame(
                container_keys, schema=dict.fromkeys(CONTAINER_KEYS, pl.String), orient="row"
            ),
            _int64([index_of[(k[0], k[1], k[2], k[4])] for k in container_keys]),
        )
        running = [containers[key] for key in container_keys]
        store.last_cpu_sample_start_ns = _int64([c.last_cpu_sample_start_ns for c in running])
        store.window_end_ns = _int64([c.window_end_ns for c in running])
        store.last_memory_sample_start_ns = _int64([c.last_memory_sample_start_ns for c in running])
        store.memory_peak_bytes = _int64([c.memory_peak_bytes for c in running])
        store.oom_peak_bytes = _int64([c.oom_peak_bytes for c in running])
        return store
