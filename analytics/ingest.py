"""The vectorized path: a batch of prepared samples into an `AggregateStore`, no per-sample loop.

The result is bit-identical to feeding the same samples one by one through `ScalarModel`
(rows in canonical order; per row its CPU sample, memory sample, then OOM kill). Batches can
follow one another: state carries over exactly as it does in the scalar path.

A store that keeps an hourly profile gets the same batch folded into it: the CPU samples the
histogram took (duplicates and samples not newer than a container's last one left out, as
they would count twice in an hour's sum), every valid memory sample (a maximum: seeing one
again changes nothing) and each OOM kill the memory histogram took, at the bumped-up memory it
recorded.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import polars as pl

from analytics.arrays import BoolArray, FloatArray, Int64Array
from analytics.go_semantics import UNSET_NS
from analytics.histogram_kernels import add_bucketed_samples
from analytics.histogram_layout import MIN_SAMPLE_WEIGHT
from analytics.ingest_memory import ContainerSpans, MemoryIngested, ingest_memory_with_spans
from analytics.store import AggregateStore
from analytics.usage import AGGREGATE_KEYS, CONTAINER_KEYS, PreparedSamples

__all__ = ["ingest_samples"]


_INT64_MAX = np.iinfo(np.int64).max


def _first_time(keys: Int64Array, t_ns: Int64Array, n: int) -> Int64Array:
    first = np.full(n, _INT64_MAX, dtype=np.int64)
    np.minimum.at(first, keys, t_ns)
    return first


@dataclass
class _Created:
    """Aggregates created for a batch, whose creation times are still to be set."""

    rows: Int64Array  # store row of each created aggregate
    container: Int64Array  # batch containers, grouped by the aggregate they created
    aggregate: Int64Array  # per such container: its created aggregate (0..n-1)

    def set_creation(self, store: AggregateStore, first_seen: Int64Array) -> None:
        """Each was created when its first container was first seen."""
        creation = _first_time(self.aggregate, first_seen[self.container], self.rows.shape[0])
        store.creation_ns[self.rows] = creation


def _map_containers(
    store: AggregateStore, samples: PreparedSamples
) -> tuple[Int64Array, _Created | None]:
    """Store row of each of the batch's containers, creating rows for new ones."""
    n_batch = samples.container_keys.height
    if store.n_containers == 0 and store.n_aggregates == 0:
        # Nothing to look up (a whole trace into an empty store).
        row = np.full(n_batch, -1, dtype=np.int64)
        aggregate = row.copy()
        new = np.arange(n_batch)
        new_keys = samples.container_keys
        missing = new_keys.select(AGGREGATE_KEYS).with_row_index("new")
    else:
        existing = store.container_keys.with_row_index("row")
        joined = samples.container_keys.join(
            existing, on=list(CONTAINER_KEYS), how="left", maintain_order="left"
        )
        row = joined["row"].cast(pl.Int64).fill_null(-1).to_numpy().copy()
        new = np.flatnonzero(row < 0)
        if new.shape[0] == 0:
            return row, None
        new_keys = samples.container_keys[new]
        aggregates = (
            new_keys.select(AGGREGATE_KEYS)
            .with_row_index("new")
            .join(
                store.aggregate_keys.with_row_index("aggregate"),
                on=list(AGGREGATE_KEYS),
                how="left",
                maintain_order="left",
            )
        )
        aggregate = aggregates["aggregate"].cast(pl.Int64).fill_null(-1).to_numpy().copy()
        missing = aggregates.filter(pl.col("aggregate").is_null())
    created = None
    if missing.height:
        # New aggregates in order of first appearance.
        groups = missing.group_by(AGGREGATE_KEYS, maintain_order=True).agg(pl.col("new"))
        members = groups["new"].explode().to_numpy().astype(np.int64)
        created_of = np.repeat(np.arange(groups.height), groups["new"].list.len().to_numpy())
        base = store.n_aggregates
        store.add_aggregates(
            groups.select(AGGREGATE_KEYS), np.full(groups.height, UNSET_NS, dtype=np.int64)
        )
        aggregate[members] = base + created_of
        created = _Created(base + np.arange(groups.height), new[members], created_of)
    base = store.n_containers
    store.add_containers(new_keys, aggregate)
    row[new] = base + np.arange(new.shape[0])
    return row, created


def _ingest_cpu(
    store: AggregateStore,
    samples: PreparedSamples,
    row_of: Int64Array,
    spans: ContainerSpans | None,
) -> BoolArray | None:
    """CPU samples: per-container dedup, then one weighted sample each. Returns which of the
    batch's samples were taken (None: every valid one).

    row_of: store row of each of the batch's containers (distinct rows for distinct containers,
    so batch container indices identify running containers as well as store rows do).
    spans: the batch's per-container sample counts and first and last times, if known (and
    the samples in time order).
    """
    container = samples.container
    t_ns = samples.t_ns
    millicores = samples.cpu_millicores
    valid: Int64Array | None = None
    if not samples.cpu_valid.all():
        valid = np.flatnonzero(samples.cpu_valid)
        container, t_ns, millicores = container[valid], t_ns[valid], millicores[valid]
    if t_ns.shape[0] == 0:
        return None
    rejected = _rejected_cpu(store, container, t_ns, row_of)
    taken: BoolArray | None = None
    if rejected is not None:
        accepted = ~rejected
        container, t_ns, millicores = container[accepted], t_ns[accepted], millicores[accepted]
        taken = np.zeros(len(samples), dtype=bool)
        taken[np.arange(len(samples)) if valid is None else valid] = accepted
    if t_ns.shape[0] == 0:
        return taken

    # Bookkeeping per batch container first (few), then per running container and aggregate.
    n_batch = row_of.shape[0]
    if spans is not None and t_ns.shape[0] == len(samples):
        # Every sample is kept, in time order: a container's first and last samples are its
        # earliest and latest.
        count, first, last = spans.count, spans.first_t, spans.last_t
    else:
        last = np.full(n_batch, UNSET_NS, dtype=np.int64)
        np.maximum.at(last, container, t_ns)
        first = np.full(n_batch, _INT64_MAX, dtype=np.int64)
        np.minimum.at(first, container, t_ns)
        count = np.bincount(container, minlength=n_batch)
    present = np.flatnonzero(count)
    rows = row_of[present]
    store.last_cpu_sample_start_ns[rows] = np.maximum(
        store.last_cpu_sample_start_ns[rows], last[present]
    )
    aggregate_of = store.container_aggregate[row_of]
    aggregate = aggregate_of[present]
    n = store.n_aggregates
    np.maximum.at(store.last_sample_start_ns, aggregate, last[present])
    first_of_aggregate = _first_time(aggregate, first[present], n)
    current = store.first_sample_start_ns
    store.first_sample_start_ns = np.where(
        (first_of_aggregate != _INT64_MAX)
        & ((current == UNSET_NS) | (first_of_aggregate < current)),
        first_of_aggregate,
        current,
    )
    np.add.at(store.total_samples_count, aggregate, count[present])

    buckets = store.cpu.layout.amount_bucket_index(millicores, 1000.0)
    earliest = (np.unique(aggregate), first_of_aggregate)
    add_bucketed_samples(
        store.cpu, aggregate_of[container], t_ns, buckets, MIN_SAMPLE_WEIGHT, earliest=earliest
    )
    return taken


def _in_order(t_ns: Int64Array) -> bool:
    return bool((t_ns[1:] >= t_ns[:-1]).all())


def _rejected_cpu(
    store: AggregateStore, container: Int64Array, t_ns: Int64Array, row_of: Int64Array
) -> BoolArray | None:
    """Which valid CPU samples the running containers drop (None when none is dropped)."""
    # In canonical order (time, then container) a container's samples with equal times are
    # adjacent: all but the first are duplicates.
    tied = np.flatnonzero(t_ns[1:] == t_ns[:-1])
    duplicate = tied[container[tied + 1] == container[tied]] + 1
    # Samples not newer than the container's last one from earlier batches.
    previous = store.last_cpu_sample_start_ns[row_of]
    stale_possible = int(t_ns.min()) <= int(previous.max())
    if duplicate.shape[0] == 0 and not stale_possible:
        return None
    rejected = np.zeros(t_ns.shape[0], dtype=bool)
    rejected[duplicate] = True
    if stale_possible:
        rejected |= t_ns <= previous[container]
    return rejected


def ingest_samples(store: AggregateStore, samples: PreparedSamples) -> Counter[str]:
    """Fold a batch of samples into the store; returns counts of samples dropped, by reason."""
    skipped: Counter[str] = Counter()
    if len(samples) == 0:
        return skipped
    row_of_batch_container, created = _map_containers(store, samples)
    # Memory first (the two resources' states are independent): its grouping of the samples
    # by container also gives the CPU bookkeeping and the creation times what they need.
    memory = ingest_memory_with_spans(store, samples, row_of_batch_container)
    spans = memory.spans
    if spans is not None and not _in_order(samples.t_ns):
        spans = None
    if created is not None:
        first_seen = (
            spans.first_t
            if spans is not None
            else _first_time(samples.container, samples.t_ns, samples.container_keys.height)
        )
        created.set_creation(store, first_seen)
    cpu_taken = _ingest_cpu(store, samples, row_of_batch_container, spans)
    cpu_valid = samples.cpu_valid if cpu_taken is None else cpu_taken
    dropped_cpu = int(np.count_nonzero(samples.cpu_valid)) - int(np.count_nonzero(cpu_valid))
    if dropped_cpu:
        skipped["cpu_not_newer"] = dropped_cpu
    skipped.update(memory.skipped)
    if store.profile is not None:
        _observe_profile(store, samples, row_of_batch_container, cpu_valid, memory)
    return skipped


def _observe_profile(
    store: AggregateStore,
    samples: PreparedSamples,
    row_of: Int64Array,
    cpu_valid: BoolArray,
    memory: MemoryIngested,
) -> None:
    """Fold the batch into the store's hourly profile (see the module docstring)."""
    assert store.profile is not None
    oom_bytes: FloatArray | None = None
    if memory.kill_samples.shape[0]:
        oom_bytes = np.full(len(samples), np.nan)
        # Several kills of one sample row cannot happen (one OOM flag per row).
        oom_bytes[memory.kill_samples] = memory.kill_bytes.astype(np.float64)
    store.profile.observe(
        store.container_aggregate[row_of[samples.container]],
        samples.t_ns,
        cpu_millicores=samples.cpu_millicores,
        cpu_valid=cpu_valid,
        memory_bytes=samples.memory_bytes,
        memory_valid=samples.memory_valid,
        oom_memory_bytes=oom_bytes,
    )
