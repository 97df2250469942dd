"""Vectorized memory ingestion: per-interval peaks and OOM kills, as `ContainerState` does them.

Each running container turns its memory samples and OOM kills into one peak per aggregation
interval. Intervals are anchored at the container's first memory sample; a larger value within
an interval replaces the interval's peak in the histogram (subtract the old, add the new). Here
every container is processed at once:

1. drop what the scalar path drops (samples older than the last one, OOM kills older than the
   current interval) before the first sample that is kept;
2. give each event its interval end (`window_end`), from the container's anchor;
3. resolve OOM kill values, which depend on the usage peak so far, in rounds over the k-th
   kill of every container (kills are rare, so the rounds are few);
4. find the peak changes (prefix-maximum records per interval) and emit histogram operations;
5. fold the operations into the histograms in their original order (see `histogram_kernels`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analytics.container_state import MEMORY_PEAK_WEIGHT
from analytics.go_semantics import UNSET_NS, resource_amount_array, round_time_array
from analytics.histogram import HistogramArrays
from analytics.histogram_kernels import fold_rows, group_starts, stable_order
from analytics.histogram_layout import MAX_DECAY_EXPONENT, decay_factors
from analytics.store import AggregateStore
from analytics.usage import PreparedSamples

__all__ = ["ingest_memory"]

Int64Array = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# In a histogram whose reference never moved, every peak weighs at least 2**-0.5; content below
# this is rounding noise, content above it is real. Anything in between needs the scalar replay.
_NOISE = 1e-6
_SOLID = 0.5


def segmented_cummax(values: Int64Array, segment: Int64Array) -> Int64Array:
    """Running maximum of values (>= -1) within runs of equal (contiguous) segment ids."""
    if values.shape[0] == 0:
        return values.copy()
    index = np.cumsum(group_starts(segment)) - 1
    # Lift each run above every earlier one so one running maximum serves all runs.
    width = int(values.max()) + 2
    if width * (int(index[-1]) + 1) < 2**62:
        lifted = index * width + (values + 1)
        result: Int64Array = np.maximum.accumulate(lifted) - index * width - 1
        return result
    distinct, rank = np.unique(values, return_inverse=True)
    width = distinct.shape[0]
    ranked = index * width + rank
    spread: Int64Array = distinct[np.maximum.accumulate(ranked) - index * width]
    return spread


def _exclusive_cummax(values: Int64Array, segment: Int64Array) -> Int64Array:
    """Maximum of the earlier values within each segment (-1 for the first of a segment)."""
    inclusive = segmented_cummax(values, segment)
    previous = np.empty_like(inclusive)
    if previous.shape[0]:
        previous[0] = -1
        previous[1:] = inclusive[:-1]
        previous[group_starts(segment)] = -1
    return previous


@dataclass
class _Events:
    """Memory events of the batch, sorted by running container, then canonical order."""

    position: Int64Array  # canonical position: 2 * sample row + (1 for an OOM kill)
    is_oom: BoolArray
    t_ns: Int64Array
    value: Int64Array  # usage bytes, or the request at the kill for OOM kills
    container: Int64Array  # store row of the running container

    def take(self, mask: BoolArray | Int64Array) -> _Events:
        return _Events(
            self.position[mask],
            self.is_oom[mask],
            self.t_ns[mask],
            self.value[mask],
            self.container[mask],
        )


def _events(samples: PreparedSamples, container_row: Int64Array) -> _Events:
    regular = np.flatnonzero(samples.memory_valid)
    kills = np.flatnonzero(samples.oom)
    rows = np.concatenate([regular, kills])
    is_oom = np.concatenate([np.zeros(regular.shape[0], bool), np.ones(kills.shape[0], bool)])
    value = np.concatenate([samples.memory_bytes[regular], samples.oom_memory_bytes[kills]])
    events = _Events(rows * 2 + is_oom, is_oom, samples.t_ns[rows], value, container_row[rows])
    if kills.shape[0]:
        events = events.take(np.argsort(events.position, kind="stable"))
    return events.take(stable_order(events.container))


@dataclass
class _Windows:
    """Interval structure of the kept events (same order as the events)."""

    group: Int64Array  # index of the running container among the batch's containers
    window_end: Int64Array
    segment: Int64Array  # run id of (container, window)
    continuing: BoolArray  # the event falls in the container's interval from before the batch
    opener: BoolArray  # the event opens a new interval


def _windows(events: _Events, store: AggregateStore, interval_ns: int) -> _Windows:
    starts = group_starts(events.container)
    group = np.cumsum(starts) - 1
    first_index = np.flatnonzero(starts)
    window_end0 = store.window_end_ns[events.container]
    anchor = np.where(window_end0 != UNSET_NS, window_end0, events.t_ns[first_index][group])
    elapsed = events.t_ns - anchor
    later = anchor + (np.maximum(elapsed, 0) // interval_ns + 1) * interval_ns
    window_end = np.where(events.t_ns < anchor, anchor, later)
    continuing = (window_end0 != UNSET_NS) & (window_end == window_end0)
    boundary = starts.copy()
    boundary[1:] |= window_end[1:] != window_end[:-1]
    segment = np.cumsum(boundary) - 1
    return _Windows(group, window_end, segment, continuing, boundary & ~continuing)


def _records(
    value: Int64Array, opener: BoolArray, start_value: Int64Array, segment: Int64Array
) -> tuple[BoolArray, Int64Array]:
    """Which non-opening events raise their interval's peak, and the peak each one replaces.

    start_value is the peak when the interval's run starts (the opener's value, or the peak
    carried from before the batch). A zero starting peak freezes the interval, as upstream.
    """
    earlier = _exclusive_cummax(np.where(opener, -1, value), segment)
    previous_peak = np.maximum(start_value, earlier)
    record = ~opener & (start_value != 0) & (value > previous_peak)
    return record, previous_peak


def _start_values(
    value: Int64Array, windows: _Windows, carried_peak: Int64Array, index: Int64Array
) -> Int64Array:
    """Peak at the start of each event's interval run, for events `index`."""
    first_of_segment = np.flatnonzero(group_starts(windows.segment))[windows.segment[index]]
    result: Int64Array = np.where(
        windows.continuing[index], carried_peak[index], value[first_of_segment]
    )
    return result


def _oom_value(used: Int64Array, store: AggregateStore) -> Int64Array:
    params = store.params
    bump = resource_amount_array(np.array([params.oom_min_bump_up_bytes]))[0]
    scaled = resource_amount_array(used.astype(np.float64) * params.oom_bump_up_ratio)
    result: Int64Array = np.maximum(used + bump, scaled)
    return result


def _peak_before(
    *,
    value: Int64Array,
    events: _Events,
    windows: _Windows,
    carried_peak: Int64Array,
    fallback: Int64Array,
    last: Int64Array,
) -> Int64Array:
    """Usage peak (largest regular peak) of each `last` event's interval up to and including it.

    fallback: per event, the usage peak carried into its interval from before the batch (or 0).
    """
    first_of_segment = np.searchsorted(windows.segment, windows.segment[last])
    lengths = last - first_of_segment + 1
    owner = np.repeat(np.arange(last.shape[0]), lengths)
    offsets = np.arange(owner.shape[0]) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    index = first_of_segment[owner] + offsets
    record, _ = _records(
        value[index],
        windows.opener[index],
        _start_values(value, windows, carried_peak, index),
        owner,
    )
    adds_usage = (record | windows.opener[index]) & ~events.is_oom[index]
    peak = np.zeros(last.shape[0], dtype=np.int64)
    np.maximum.at(peak, owner[adds_usage], value[index][adds_usage])
    result: Int64Array = np.maximum(peak, fallback[last])
    return result


def _resolve_oom_values(events: _Events, windows: _Windows, store: AggregateStore) -> Int64Array:
    """Candidate peak of every event: its usage, or for an OOM kill the bumped-up memory."""
    value = events.value.copy()
    value[events.is_oom] = -1
    container = events.container
    usage_peak0 = store.memory_peak_bytes[container]
    carried_peak = np.maximum(usage_peak0, store.oom_peak_bytes[container])
    carried_usage = np.where(windows.continuing, usage_peak0, 0)
    kills = np.flatnonzero(events.is_oom)
    if kills.shape[0] == 0:
        return value
    kill_group = windows.group[kills]
    kill_rank = np.arange(kills.shape[0]) - np.searchsorted(kill_group, kill_group)
    first_of_group = np.searchsorted(windows.group, windows.group)
    for rank in range(int(kill_rank.max()) + 1):
        current = kills[kill_rank == rank]
        is_first = current == first_of_group[current]
        used_peak = np.empty(current.shape[0], dtype=np.int64)
        used_peak[is_first] = usage_peak0[current[is_first]]
        later = current[~is_first]
        if later.shape[0]:
            used_peak[~is_first] = _peak_before(
                value=value,
                events=events,
                windows=windows,
                carried_peak=carried_peak,
                fallback=carried_usage,
                last=later - 1,
            )
        used = np.maximum(events.value[current], used_peak)
        value[current] = _oom_value(used, store)
    return value


def ingest_memory(
    store: AggregateStore, samples: PreparedSamples, container_row: Int64Array
) -> Counter[str]:
    """Fold the batch's memory samples and OOM kills into the store; returns dropped counts."""
    skipped: Counter[str] = Counter()
    interval_ns = store.params.memory_interval_ns
    events = _events(samples, container_row)
    if events.t_ns.shape[0] == 0:
        return skipped

    window_end0 = store.window_end_ns[events.container]
    last_sample0 = store.last_memory_sample_start_ns[events.container]
    oldest_kept_kill = np.where(window_end0 == UNSET_NS, UNSET_NS, window_end0 - interval_ns)
    keepable = np.where(events.is_oom, events.t_ns >= oldest_kept_kill, events.t_ns >= last_sample0)
    starts = group_starts(events.container)
    group = np.cumsum(starts) - 1
    first_kept = np.full(int(group[-1]) + 1, events.t_ns.shape[0], dtype=np.int64)
    positions = np.arange(events.t_ns.shape[0])
    np.minimum.at(first_kept, group[keepable], positions[keepable])
    kept = positions >= first_kept[group]
    dropped_kills = int(np.count_nonzero(~kept & events.is_oom))
    dropped_samples = int(np.count_nonzero(~kept & ~events.is_oom))
    if dropped_samples:
        skipped["memory_older"] = dropped_samples
    if dropped_kills:
        skipped["oom_too_old"] = dropped_kills
    events = events.take(kept)
    if events.t_ns.shape[0] == 0:
        return skipped

    windows = _windows(events, store, interval_ns)
    value = _resolve_oom_values(events, windows, store)
    all_events = np.arange(events.t_ns.shape[0])
    container = events.container
    carried_peak = np.maximum(store.memory_peak_bytes[container], store.oom_peak_bytes[container])
    record, replaced = _records(
        value,
        windows.opener,
        _start_values(value, windows, carried_peak, all_events),
        windows.segment,
    )
    _apply_operations(
        store=store,
        events=events,
        windows=windows,
        value=value,
        record=record,
        replaced=replaced,
    )
    _update_containers(store, events, windows, value, record)
    return skipped


def _update_containers(
    store: AggregateStore,
    events: _Events,
    windows: _Windows,
    value: Int64Array,
    record: BoolArray,
) -> None:
    ends = np.flatnonzero(np.append(windows.group[1:] != windows.group[:-1], True))
    rows = events.container[ends]
    in_last = windows.segment == windows.segment[ends][windows.group]
    adds = (record | windows.opener) & in_last
    continuing_last = windows.continuing[ends]
    usage = np.where(continuing_last, store.memory_peak_bytes[rows], 0)
    kill = np.where(continuing_last, store.oom_peak_bytes[rows], 0)
    np.maximum.at(usage, windows.group[adds & ~events.is_oom], value[adds & ~events.is_oom])
    np.maximum.at(kill, windows.group[adds & events.is_oom], value[adds & events.is_oom])
    store.memory_peak_bytes[rows] = usage
    store.oom_peak_bytes[rows] = kill
    store.window_end_ns[rows] = windows.window_end[ends]
    store.last_memory_sample_start_ns[rows] = events.t_ns[ends]


@dataclass
class _Operations:
    """Histogram operations in canonical order: +1 adds a peak, -1 removes one."""

    aggregate: Int64Array
    t_ns: Int64Array
    value: Int64Array
    sign: Int64Array

    def take(self, mask: BoolArray) -> _Operations:
        return _Operations(self.aggregate[mask], self.t_ns[mask], self.value[mask], self.sign[mask])


def _operations(
    *,
    store: AggregateStore,
    events: _Events,
    windows: _Windows,
    value: Int64Array,
    record: BoolArray,
    replaced: Int64Array,
) -> _Operations:
    adds = np.flatnonzero(record | windows.opener)
    removes = np.flatnonzero(record)
    order_key = np.concatenate([events.position[removes] * 2, events.position[adds] * 2 + 1])
    index = np.concatenate([removes, adds])
    order = np.argsort(order_key, kind="stable")
    index = index[order]
    is_add = np.concatenate([np.zeros(removes.shape[0], bool), np.ones(adds.shape[0], bool)])
    is_add = is_add[order]
    return _Operations(
        aggregate=store.container_aggregate[events.container[index]],
        t_ns=windows.window_end[index],
        value=np.where(is_add, value[index], replaced[index]),
        sign=np.where(is_add, 1, -1),
    )


def _apply_operations(
    *,
    store: AggregateStore,
    events: _Events,
    windows: _Windows,
    value: Int64Array,
    record: BoolArray,
    replaced: Int64Array,
) -> None:
    operations = _operations(
        store=store,
        events=events,
        windows=windows,
        value=value,
        record=record,
        replaced=replaced,
    )
    if operations.sign.shape[0] == 0:
        return
    slow = _needs_replay(store, operations)
    if slow.any():
        _replay(store, operations.take(np.isin(operations.aggregate, np.flatnonzero(slow))))
        operations = operations.take(~slow[operations.aggregate])
    if operations.sign.shape[0]:
        _fold_operations(store, operations)


def _effective_reference(h: HistogramArrays, operations: _Operations) -> Int64Array:
    """Per operation: its aggregate's reference, or the one its first operation will set."""
    touched = np.unique(operations.aggregate)
    reference = h.reference_ns[touched]
    local = np.searchsorted(touched, operations.aggregate)
    first = np.full(touched.shape[0], operations.sign.shape[0], dtype=np.int64)
    np.minimum.at(first, local, np.arange(operations.sign.shape[0]))
    unset = reference == UNSET_NS
    reference[unset] = round_time_array(operations.t_ns[first[unset]], h.half_life_ns)
    result: Int64Array = reference[local]
    return result


@dataclass
class _Touched:
    """The aggregates some operation touches, numbered 0..m-1 in store order."""

    rows: Int64Array
    local: Int64Array  # per store aggregate: its number here, or -1

    @classmethod
    def of(cls, aggregate: Int64Array, n: int) -> _Touched:
        rows = np.flatnonzero(np.bincount(aggregate, minlength=n))
        local = np.full(n, -1, dtype=np.int64)
        local[rows] = np.arange(rows.shape[0])
        return cls(rows, local)


def _open_peaks(
    store: AggregateStore, touched: _Touched
) -> tuple[Int64Array, Int64Array, FloatArray]:
    """(local aggregate, bucket, weight) of the open-interval peak of each running container."""
    h = store.memory
    open_rows = np.flatnonzero(store.window_end_ns != UNSET_NS)
    aggregate = store.container_aggregate[open_rows]
    mine = touched.local[aggregate] >= 0
    open_rows, aggregate = open_rows[mine], aggregate[mine]
    peak = np.maximum(store.memory_peak_bytes[open_rows], store.oom_peak_bytes[open_rows])
    bucket = h.layout.bucket_index(peak.astype(np.float64))
    reference = h.reference_ns[aggregate]
    known = reference != UNSET_NS
    weight = MEMORY_PEAK_WEIGHT * decay_factors(
        store.window_end_ns[open_rows], np.where(known, reference, 0), h.half_life_ns
    )
    return touched.local[aggregate], bucket, np.where(known, weight, 0.0)


@dataclass
class _Committed:
    """Per touched aggregate and bucket: weight not accounted for by running containers' peaks."""

    open_count: Int64Array  # (m, buckets): open peaks in the bucket
    rest: FloatArray  # (m, buckets): bucket weight minus open peaks' weights
    open_total: Int64Array  # (m,)
    rest_total: FloatArray  # (m,)

    @classmethod
    def of(cls, store: AggregateStore, touched: _Touched) -> _Committed:
        h = store.memory
        m, n_buckets = touched.rows.shape[0], h.layout.num_buckets
        aggregate, bucket, weight = _open_peaks(store, touched)
        cell = aggregate * n_buckets + bucket
        count = np.bincount(cell, minlength=m * n_buckets).reshape(m, n_buckets)
        opened = np.bincount(cell, weight, minlength=m * n_buckets).reshape(m, n_buckets)
        return cls(
            open_count=count,
            rest=h.weights[touched.rows] - opened,
            open_total=np.bincount(aggregate, minlength=m),
            rest_total=h.total_weight[touched.rows] - np.bincount(aggregate, weight, minlength=m),
        )


def _needs_replay(store: AggregateStore, operations: _Operations) -> BoolArray:
    """Aggregates the fast fold cannot reproduce exactly (moved reference, sub-peak residue)."""
    h = store.memory
    touched = _Touched.of(operations.aggregate, len(h))
    reference = _effective_reference(h, operations)
    slow = np.zeros(len(h), dtype=bool)
    slow[
        operations.aggregate[operations.t_ns > reference + h.half_life_ns * MAX_DECAY_EXPONENT]
    ] = True
    weight = MEMORY_PEAK_WEIGHT * decay_factors(operations.t_ns, reference, h.half_life_ns)
    slow[operations.aggregate[weight < _SOLID]] = True
    rows = touched.rows
    was_unset = h.reference_ns[rows] == UNSET_NS
    slow[rows] |= was_unset & ((h.weights[rows] != 0).any(axis=1) | (h.total_weight[rows] != 0))

    committed = _Committed.of(store, touched)
    ambiguous = (committed.rest >= _NOISE) & (committed.rest < _SOLID)
    removes = operations.sign < 0
    removed = operations.aggregate[removes]
    removal_buckets = h.layout.bucket_index(operations.value[removes].astype(np.float64))
    slow[removed[ambiguous[touched.local[removed], removal_buckets]]] = True
    ambiguous_total = (committed.rest_total >= _NOISE) & (committed.rest_total < _SOLID)
    slow[removed[ambiguous_total[touched.local[removed]]]] = True
    return slow


def _replay(store: AggregateStore, operations: _Operations) -> None:
    """Apply operations one at a time through the scalar histogram (rare: moved references)."""
    for aggregate in np.unique(operations.aggregate):
        mine = operations.aggregate == aggregate
        histogram = store.memory.row(int(aggregate))
        for t_ns, value, sign in zip(
            operations.t_ns[mine].tolist(),
            operations.value[mine].tolist(),
            operations.sign[mine].tolist(),
            strict=True,
        ):
            if sign > 0:
                histogram.add_sample(float(value), MEMORY_PEAK_WEIGHT, t_ns)
            else:
                histogram.subtract_sample(float(value), MEMORY_PEAK_WEIGHT, t_ns)
        store.memory.set_row(int(aggregate), histogram)


def _fold_operations(store: AggregateStore, operations: _Operations) -> None:
    """Apply operations with the vectorized fold, tracking when buckets become exactly empty."""
    h = store.memory
    touched = _Touched.of(operations.aggregate, len(h))
    reference = _effective_reference(h, operations)
    committed = _Committed.of(store, touched)
    newly_set = h.reference_ns[operations.aggregate] == UNSET_NS
    # Setting a reference scales by zero: all weights of these histograms are zero already.
    h.total_weight[operations.aggregate[newly_set]] = 0.0
    h.reference_ns[operations.aggregate] = reference
    weight = MEMORY_PEAK_WEIGHT * decay_factors(operations.t_ns, reference, h.half_life_ns)
    bucket = h.layout.bucket_index(operations.value.astype(np.float64))

    # Live peaks before the batch: the running containers' open peaks, plus one standing for
    # any committed peaks (those are never removed).
    live = committed.open_count + (committed.rest >= _SOLID)
    live_total = committed.open_total + (committed.rest_total >= _SOLID)
    local = touched.local[operations.aggregate]
    cell = local * h.layout.num_buckets + bucket
    fold_rows(
        h,
        operations.aggregate,
        bucket,
        weight * operations.sign,
        zero_after=_empties(cell, operations.sign, live.ravel()),
        total_zero_after=_empties(local, operations.sign, live_total),
    )


def _empties(key: Int64Array, sign: Int64Array, live_before: Int64Array) -> BoolArray:
    """Operations after which their key holds no live peak (in the given operation order)."""
    order = stable_order(key)
    sorted_key = key[order]
    running = np.cumsum(sign[order])
    starts = group_starts(sorted_key)
    base = np.repeat(
        running[starts] - sign[order][starts],
        np.diff(np.append(np.flatnonzero(starts), len(order))),
    )
    live_after = live_before[sorted_key] + running - base
    empty_sorted = (sign[order] < 0) & (live_after == 0)
    result = np.zeros(key.shape[0], dtype=bool)
    result[order] = empty_sorted
    return result
