"""Vectorized memory ingestion: per-interval peaks and OOM kills, as `ContainerState` does them.

Each running container turns its memory samples and OOM kills into one peak per aggregation
interval. Intervals are anchored at the container's first memory sample; a larger value within
an interval replaces the interval's peak in the histogram (subtract the old, add the new). Here
every container is processed at once, along one of two paths that give the same `_Summary`
(peak changes, interval openers, each container's state after the batch):

* chunked (`_regular_summary`), for containers with usage samples only (usually all): each
  chunk of consecutive samples is grouped by container on its own, in cache; a container's
  samples in a chunk are cut into parts at interval ends, and a part starts from the peak of
  its interval's earlier parts; one running maximum over the parts finds the peak changes;
* general (`_general_summary`), for containers with OOM kills, and for batches where some
  sample must be dropped:
  1. group the events by running container (canonical order within each group);
  2. drop what the scalar path drops (samples older than the last one, OOM kills older than
     the current interval) before the first sample that is kept;
  3. cut each group into segments, one per interval (`window_end`), from the container's anchor;
  4. resolve OOM kill values, which depend on the usage peak so far, in rounds over the k-th
     kill of every container (kills are rare, so the rounds are few);
  5. find the peak changes (prefix-maximum records per segment).

The histogram operations of both are merged in canonical order and folded into the histograms
in that order (see `histogram_kernels`). Per-sample work is a few passes (one sort, interval
indices, one running maximum); the rest runs per container, part or peak change.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from analytics.arrays import BoolArray, FloatArray, Int64Array
from analytics.container_state import MEMORY_PEAK_WEIGHT
from analytics.go_semantics import UNSET_NS, resource_amount_array, round_time_array
from analytics.histogram import HistogramArrays
from analytics.histogram_kernels import fold_rows, group_starts, sorted_groups, stable_order
from analytics.histogram_layout import MAX_DECAY_EXPONENT, IndexArray, decay_factors
from analytics.store import AggregateStore
from analytics.usage import PreparedSamples

__all__ = [
    "ContainerSpans",
    "MemoryIngested",
    "ingest_memory",
    "ingest_memory_of_containers",
    "ingest_memory_with_spans",
]


# In a histogram whose reference never moved, every peak weighs at least 2**-0.5; content below
# this is rounding noise, content above it is real. Anything in between needs the scalar replay.
_NOISE = 1e-6
_INT64_MAX = int(np.iinfo(np.int64).max)
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


def _runs(first: Int64Array, n: int) -> Int64Array:
    """Run id of each of n items, given the (ascending) first item of each run."""
    sizes = np.diff(np.append(first, n))
    result: Int64Array = np.repeat(np.arange(first.shape[0]), sizes)
    return result


def _run_of(first: Int64Array, index: Int64Array) -> Int64Array:
    """Run id of the items `index`, given the (ascending) first item of each run."""
    result: Int64Array = np.searchsorted(first, index, side="right") - 1
    return result


@dataclass
class _Events:
    """Memory events of the batch in groups, one per running container, in canonical order.

    Groups follow the batch's container order; `group_*` arrays have one entry per group.
    """

    sample: Int64Array  # sample row of each event
    is_oom: BoolArray
    any_oom: bool
    t_ns: Int64Array
    value: Int64Array  # usage bytes, or the request at the kill for OOM kills
    group_first: Int64Array  # first event of each group
    group_row: Int64Array  # store row of each group's running container

    @property
    def n(self) -> int:
        return int(self.t_ns.shape[0])

    @cached_property
    def group_last(self) -> Int64Array:
        result: Int64Array = np.append(self.group_first[1:], self.n) - 1
        return result

    @cached_property
    def group(self) -> Int64Array:
        """Group of each event."""
        return _runs(self.group_first, self.n)

    @cached_property
    def container(self) -> Int64Array:
        """Store row of each event's running container."""
        result: Int64Array = self.group_row[self.group]
        return result

    def position(self, index: Int64Array) -> Int64Array:
        """Canonical position of events `index`: 2 * sample row + (1 for an OOM kill)."""
        result: Int64Array = self.sample[index] * 2 + self.is_oom[index]
        return result

    def take(self, index: Int64Array) -> _Events:
        """Events `index` (ascending); groups left without events disappear."""
        group = self.group[index]
        remaining = np.flatnonzero(np.bincount(group, minlength=self.group_first.shape[0]))
        is_oom = self.is_oom[index]
        return _Events(
            sample=self.sample[index],
            is_oom=is_oom,
            any_oom=bool(is_oom.any()),
            t_ns=self.t_ns[index],
            value=self.value[index],
            group_first=np.searchsorted(group, remaining),
            group_row=self.group_row[remaining],
        )


def _events(
    samples: PreparedSamples, row_of: Int64Array, usage: BoolArray | None = None
) -> _Events:
    kills = np.flatnonzero(samples.oom)
    if usage is None:
        usage = samples.memory_valid
    if kills.shape[0] == 0 and usage.all():
        # Every sample is an event, already in canonical order.
        key = samples.container
        sample = stable_order(key)
        is_oom = np.zeros(sample.shape[0], dtype=bool)
        t_ns = np.take(samples.t_ns, sample)
        value = np.take(samples.memory_bytes, sample)
    else:
        regular = np.flatnonzero(usage)
        rows = np.concatenate([regular, kills])
        oom = np.concatenate([np.zeros(regular.shape[0], bool), np.ones(kills.shape[0], bool)])
        if kills.shape[0]:
            canonical = stable_order(rows * 2 + oom)
            rows, oom = rows[canonical], oom[canonical]
        key = samples.container[rows]
        order = stable_order(key)
        sample, is_oom = rows[order], oom[order]
        t_ns = samples.t_ns[sample]
        value = np.where(is_oom, samples.oom_memory_bytes[sample], samples.memory_bytes[sample])
    size = np.bincount(key, minlength=row_of.shape[0])
    present = np.flatnonzero(size)
    return _Events(
        sample=sample,
        is_oom=is_oom,
        any_oom=bool(kills.shape[0]),
        t_ns=t_ns,
        value=value,
        group_first=np.cumsum(size[present]) - size[present],
        group_row=row_of[present],
    )


def _kept(events: _Events, store: AggregateStore, interval_ns: int) -> BoolArray | None:
    """Which events the running containers keep: all from the first keepable one of each group.

    None when every event is kept.
    """
    window_end0 = store.window_end_ns[events.group_row]
    last_sample0 = store.last_memory_sample_start_ns[events.group_row]
    oldest_kept_kill = np.where(window_end0 == UNSET_NS, UNSET_NS, window_end0 - interval_ns)
    first = events.group_first
    first_keepable = np.where(
        events.is_oom[first],
        events.t_ns[first] >= oldest_kept_kill,
        events.t_ns[first] >= last_sample0,
    )
    if first_keepable.all():
        return None
    group = events.group
    keepable = np.where(
        events.is_oom,
        events.t_ns >= oldest_kept_kill[group],
        events.t_ns >= last_sample0[group],
    )
    first_kept = np.full(first.shape[0], events.n, dtype=np.int64)
    positions = np.arange(events.n)
    np.minimum.at(first_kept, group[keepable], positions[keepable])
    kept: BoolArray = positions >= first_kept[group]
    return kept


@dataclass
class _Windows:
    """Segments of the kept events: runs of one running container and one interval.

    `seg_*` arrays have one entry per segment; per-event views are computed on demand.
    """

    n: int
    boundary: BoolArray  # per event: it starts a segment
    group_first: Int64Array
    seg_first: Int64Array  # first event of each segment
    seg_group: Int64Array
    seg_window_end: Int64Array
    seg_continuing: BoolArray  # the container's interval from before the batch

    def segment_of(self, index: Int64Array) -> Int64Array:
        return _run_of(self.seg_first, index)

    @cached_property
    def opener_segment(self) -> Int64Array:
        """Segments that open a new interval."""
        return np.flatnonzero(~self.seg_continuing)

    @cached_property
    def opener_index(self) -> Int64Array:
        """Events that open a new interval."""
        result: Int64Array = self.seg_first[self.opener_segment]
        return result

    @cached_property
    def segment(self) -> Int64Array:
        return _runs(self.seg_first, self.n)

    @cached_property
    def group(self) -> Int64Array:
        return _runs(self.group_first, self.n)

    @cached_property
    def continuing(self) -> BoolArray:
        result: BoolArray = self.seg_continuing[self.segment]
        return result

    @cached_property
    def opener(self) -> BoolArray:
        result: BoolArray = self.boundary & ~self.continuing
        return result


def _windows(events: _Events, store: AggregateStore, interval_ns: int) -> _Windows:
    first = events.group_first
    window_end0 = store.window_end_ns[events.group_row]
    anchor = np.where(window_end0 != UNSET_NS, window_end0, events.t_ns[first])
    # Interval k >= 0 after the anchor ends at anchor + (k + 1) * interval; events before the
    # anchor (k = -1) belong to the interval ending at the anchor.
    index = np.repeat(anchor, np.diff(np.append(first, events.n)))
    np.subtract(events.t_ns, index, out=index)
    index //= interval_ns
    np.maximum(index, -1, out=index)
    boundary = np.empty(events.n, dtype=bool)
    boundary[0] = True
    np.not_equal(index[1:], index[:-1], out=boundary[1:])
    boundary[first] = True
    seg_first = np.flatnonzero(boundary)
    seg_group = _run_of(first, seg_first)
    seg_window_end = anchor[seg_group] + (index[seg_first] + 1) * interval_ns
    seg_end0 = window_end0[seg_group]
    return _Windows(
        n=events.n,
        boundary=boundary,
        group_first=first,
        seg_first=seg_first,
        seg_group=seg_group,
        seg_window_end=seg_window_end,
        seg_continuing=(seg_end0 != UNSET_NS) & (seg_window_end == seg_end0),
    )


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


@dataclass
class _Changes:
    """Events that raise their interval's peak (in no particular order)."""

    event: Int64Array
    segment: Int64Array
    replaced: Int64Array  # the peak each one replaces


def _peak_changes(value: Int64Array, windows: _Windows, start_value: Int64Array) -> _Changes:
    """`_records` for values >= 0, given each segment's start value.

    One running maximum over all segments, each lifted above the earlier ones; a continuing
    segment's first event is lifted to at least the carried peak. An event raises the peak
    exactly where the running maximum rises, except at a segment's first event, which only
    competes with the carried peak (and opens a new interval otherwise).
    """
    n_segments = windows.seg_first.shape[0]
    width = max(int(value.max()), int(start_value.max())) + 1
    if n_segments * width >= 2**62:
        segment = windows.segment
        record, replaced = _records(value, windows.opener, start_value[segment], segment)
        changed = np.flatnonzero(record)
        return _Changes(changed, segment[changed], replaced[changed])
    lift = np.arange(n_segments, dtype=np.int64) * width
    lifted = np.repeat(lift, np.diff(np.append(windows.seg_first, windows.n)))
    lifted += value
    continuing = np.flatnonzero(windows.seg_continuing)
    continuing_first = windows.seg_first[continuing]
    carried = start_value[continuing]
    lifted[continuing_first] = lift[continuing] + np.maximum(value[continuing_first], carried)
    running = np.maximum.accumulate(lifted, out=lifted)
    rises = np.flatnonzero(running[1:] > running[:-1]) + 1
    rises = rises[~windows.boundary[rises]]
    rise_segment = windows.segment_of(rises)
    beats_carried = value[continuing_first] > carried
    changed = np.concatenate([rises, continuing_first[beats_carried]])
    segment = np.concatenate([rise_segment, continuing[beats_carried]])
    replaced = np.concatenate([running[rises - 1] - lift[rise_segment], carried[beats_carried]])
    live = start_value[segment] != 0
    return _Changes(changed[live], segment[live], replaced[live])


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
    """Fold the batch's memory samples and OOM kills into the store; returns dropped counts.

    container_row: store row of each sample's running container.
    """
    row_of_container = np.zeros(samples.container_keys.height, dtype=np.int64)
    row_of_container[samples.container] = container_row
    return ingest_memory_of_containers(store, samples, row_of_container)


def ingest_memory_of_containers(
    store: AggregateStore, samples: PreparedSamples, row_of_container: Int64Array
) -> Counter[str]:
    """`ingest_memory`, given the store row of each of the batch's containers instead."""
    return ingest_memory_with_spans(store, samples, row_of_container).skipped


@dataclass(frozen=True)
class ContainerSpans:
    """Per batch container: its number of samples and the times of its first and last one."""

    count: Int64Array
    first_t: Int64Array  # UNSET_NS for a container without samples
    last_t: Int64Array


@dataclass(frozen=True)
class MemoryIngested:
    """What one batch of memory ingestion did: samples dropped by reason, the batch's
    `ContainerSpans` when known, and the OOM kills the histograms took: their sample rows and
    the bumped-up memory each was recorded with."""

    skipped: Counter[str]
    spans: ContainerSpans | None
    kill_samples: Int64Array
    kill_bytes: Int64Array


def ingest_memory_with_spans(
    store: AggregateStore, samples: PreparedSamples, row_of_container: Int64Array
) -> MemoryIngested:
    """`ingest_memory_of_containers`, and the batch's `ContainerSpans` when every sample was a
    memory event (all memory values valid, no OOM kill, none dropped): the grouping by
    container finds them at little cost.

    Containers with an OOM kill in the batch take the general path, the others (usually all)
    the chunked one; their histogram operations are merged, in canonical order, before they
    are applied. A batch that drops some usage sample takes the general path altogether.
    """
    interval_ns = store.params.memory_interval_ns
    kills = np.flatnonzero(samples.oom)
    usage: BoolArray | None = None
    if kills.shape[0]:
        killed = np.zeros(row_of_container.shape[0], dtype=bool)
        killed[samples.container[kills]] = True
        usage = samples.memory_valid & ~killed[samples.container]
    skipped: Counter[str] = Counter()
    summary = None
    if usage is None or usage.any():
        summary = _regular_summary(store, samples, row_of_container, interval_ns, usage)
    if summary is None:
        skipped, summary = _general_summary(store, samples, row_of_container)
    elif usage is not None:
        skipped, others = _general_summary(
            store, samples, row_of_container, samples.memory_valid & ~usage
        )
        summary = summary.merge(others)
    none = np.zeros(0, dtype=np.int64)
    if summary is None:
        return MemoryIngested(skipped, None, none, none)
    _apply_operations(store, summary)
    _update_containers(store, summary)
    recorded = none if summary.is_oom is None else np.flatnonzero(summary.is_oom)
    return MemoryIngested(skipped, summary.spans, summary.sample[recorded], summary.value[recorded])


def _general_summary(
    store: AggregateStore,
    samples: PreparedSamples,
    row_of_container: Int64Array,
    usage: BoolArray | None = None,
) -> tuple[Counter[str], _Summary | None]:
    """The general path: any mix of usage samples and OOM kills, including dropped ones.

    usage: which usage samples to take (default: the valid ones); OOM kills are all taken.
    """
    interval_ns = store.params.memory_interval_ns
    skipped: Counter[str] = Counter()
    events = _events(samples, row_of_container, usage)
    if events.n == 0:
        return skipped, None
    kept = _kept(events, store, interval_ns)
    if kept is not None:
        dropped_kills = int(np.count_nonzero(~kept & events.is_oom))
        dropped_samples = int(np.count_nonzero(~kept & ~events.is_oom))
        if dropped_samples:
            skipped["memory_older"] = dropped_samples
        if dropped_kills:
            skipped["oom_too_old"] = dropped_kills
        events = events.take(np.flatnonzero(kept))
        if events.n == 0:
            return skipped, None

    windows = _windows(events, store, interval_ns)
    value = _resolve_oom_values(events, windows, store) if events.any_oom else events.value
    rows = events.group_row
    carried_peak = np.maximum(store.memory_peak_bytes[rows], store.oom_peak_bytes[rows])
    start_value = np.where(
        windows.seg_continuing, carried_peak[windows.seg_group], value[windows.seg_first]
    )
    changes = _peak_changes(value, windows, start_value)
    last = events.group_last
    return skipped, _Summary(
        sample=events.sample,
        is_oom=events.is_oom,
        value=value,
        seg_group=windows.seg_group,
        seg_window_end=windows.seg_window_end,
        seg_continuing=windows.seg_continuing,
        group_row=rows,
        group_last_t=events.t_ns[last],
        group_last_segment=windows.segment_of(last),
        changes=changes,
        opener_event=windows.opener_index,
        opener_segment=windows.opener_segment,
    )


@dataclass
class _Summary:
    """What the histogram operations and the containers' new state are made from.

    Events are numbered in any order (each path has its own); segments and groups as well.
    """

    sample: Int64Array  # per event: its sample row
    is_oom: BoolArray | None  # per event (None: no OOM kill)
    value: Int64Array  # per event: usage bytes, or the bumped-up memory of an OOM kill
    seg_group: Int64Array  # per segment: its group (running container)
    seg_window_end: Int64Array
    seg_continuing: BoolArray  # the container's interval from before the batch
    group_row: Int64Array  # per group: store row of the running container
    group_last_t: Int64Array  # per group: time of its last event
    group_last_segment: Int64Array
    changes: _Changes
    opener_event: Int64Array  # events that open a new interval, and their segments
    opener_segment: Int64Array
    spans: ContainerSpans | None = None  # when every sample of the batch is an event

    def position(self, event: Int64Array) -> Int64Array:
        """Canonical position of events: 2 * sample row + (1 for an OOM kill)."""
        position: Int64Array = self.sample[event] * 2
        if self.is_oom is not None:
            position += self.is_oom[event]
        return position

    def merge(self, other: _Summary | None) -> _Summary:
        """Both summaries (of different containers) as one: other's numbers come after."""
        if other is None:
            return self
        n_events, n_segments = self.value.shape[0], self.seg_group.shape[0]
        n_groups = self.group_row.shape[0]
        is_oom = np.concatenate(
            [
                np.zeros(n_events, dtype=bool) if self.is_oom is None else self.is_oom,
                np.zeros(other.value.shape[0], dtype=bool)
                if other.is_oom is None
                else other.is_oom,
            ]
        )
        return _Summary(
            sample=np.concatenate([self.sample, other.sample]),
            is_oom=is_oom,
            value=np.concatenate([self.value, other.value]),
            seg_group=np.concatenate([self.seg_group, other.seg_group + n_groups]),
            seg_window_end=np.concatenate([self.seg_window_end, other.seg_window_end]),
            seg_continuing=np.concatenate([self.seg_continuing, other.seg_continuing]),
            group_row=np.concatenate([self.group_row, other.group_row]),
            group_last_t=np.concatenate([self.group_last_t, other.group_last_t]),
            group_last_segment=np.concatenate(
                [self.group_last_segment, other.group_last_segment + n_segments]
            ),
            changes=_Changes(
                np.concatenate([self.changes.event, other.changes.event + n_events]),
                np.concatenate([self.changes.segment, other.changes.segment + n_segments]),
                np.concatenate([self.changes.replaced, other.changes.replaced]),
            ),
            opener_event=np.concatenate([self.opener_event, other.opener_event + n_events]),
            opener_segment=np.concatenate([self.opener_segment, other.opener_segment + n_segments]),
        )

    def oom(self, event: Int64Array) -> BoolArray:
        if self.is_oom is None:
            return np.zeros(event.shape[0], dtype=bool)
        result: BoolArray = self.is_oom[event]
        return result


_CHUNK = 32768
"""Samples per chunk of `_regular_summary`: a chunk's sort and gathers stay in the L2 cache."""

_VALUE_BITS = 47
"""Bits of a memory amount (at most 1e14 bytes) when packed with its interval index."""


def _regular_summary(
    store: AggregateStore,
    samples: PreparedSamples,
    row_of: Int64Array,
    interval_ns: int,
    usage: BoolArray | None = None,
) -> _Summary | None:
    """The summary of a batch without OOM kills, built chunk by chunk; None if some sample must
    be dropped (or a peak is too large to lift), for the general path to handle.

    Grouping the whole batch by container is a sort and gathers across the whole batch, bound
    by cache misses. Instead each chunk of consecutive samples is grouped on its own: a
    container's events in a chunk form a run, cut into parts where the interval changes. A
    segment (container, interval) is the sequence of its parts in chunk order, and a part
    starts with the running peak of the segment's earlier parts (its carry), which comes from
    the parts' maxima. Within parts, one lifted running maximum finds the peak changes as in
    `_peak_changes`.
    """
    chunked = _Chunked.of(samples, row_of, store.window_end_ns[row_of], interval_ns, usage)
    if chunked is None:
        return None
    present = np.flatnonzero(chunked.first_event >= 0)
    # A container's events are all kept when its first one is (`_kept`).
    first_t = samples.t_ns[chunked.sample[chunked.first_event[present]]]
    if (first_t < store.last_memory_sample_start_ns[row_of[present]]).any():
        return None
    parts = _Parts.of(chunked, store, row_of, present, interval_ns)
    changes = parts.changes(chunked.value)
    if changes is None:
        return None
    n = chunked.value.shape[0]
    last_event = np.append(parts.first[1:], n)[parts.last_of_container] - 1
    opener_segment = np.flatnonzero(~parts.seg_continuing)
    spans = None
    if n == samples.t_ns.shape[0]:
        first_t = np.full(row_of.shape[0], UNSET_NS, dtype=np.int64)
        last_t = first_t.copy()
        first_t[present] = samples.t_ns[chunked.sample[chunked.first_event[present]]]
        last_t[present] = samples.t_ns[chunked.sample[last_event]]
        spans = ContainerSpans(chunked.count, first_t, last_t)
    return _Summary(
        sample=chunked.sample,
        is_oom=None,
        value=chunked.value,
        seg_group=parts.seg_group,
        seg_window_end=parts.seg_window_end,
        seg_continuing=parts.seg_continuing,
        group_row=row_of[present],
        group_last_t=samples.t_ns[chunked.sample[last_event]],
        group_last_segment=parts.segment[parts.last_of_container],
        changes=changes,
        opener_event=parts.first[parts.seg_first_part[opener_segment]],
        opener_segment=opener_segment,
        spans=spans,
    )


@dataclass
class _Chunked:
    """Usage samples grouped by container within each chunk (`_CHUNK` consecutive samples)."""

    value: Int64Array  # per event
    window: Int64Array  # per event: interval index after the anchor (-1: ends at the anchor)
    sample: Int64Array  # per event: its sample row
    run_first: Int64Array  # first event of each run (one container within one chunk)
    run_container: Int64Array  # batch container of each run
    first_event: Int64Array  # per batch container: its first event, or -1
    count: Int64Array  # per batch container: its number of events
    anchor: Int64Array  # per batch container: where its intervals are counted from

    @classmethod
    def of(
        cls,
        samples: PreparedSamples,
        row_of: Int64Array,
        window_end0: Int64Array,
        interval_ns: int,
        usage: BoolArray | None,
    ) -> _Chunked | None:
        """None when there is no usage sample; usage: which to take (default: valid ones)."""
        if usage is None:
            usage = None if samples.memory_valid.all() else samples.memory_valid
        valid = None if usage is None else np.flatnonzero(usage)
        t_ns, value, container = samples.t_ns, samples.memory_bytes, samples.container
        if valid is not None:
            t_ns, value, container = t_ns[valid], value[valid], container[valid]
        n = t_ns.shape[0]
        if n == 0:
            return None
        # As `_windows` anchors them: at the interval end from before the batch, else at the
        # container's first event.
        anchor = window_end0.copy()
        first_event = np.full(row_of.shape[0], -1, dtype=np.int64)
        count = np.zeros(row_of.shape[0], dtype=np.int64)
        event_value = np.empty(n, dtype=np.int64)
        event_window = np.empty(n, dtype=np.int64)
        event_sample = np.empty(n, dtype=np.int64)
        run_first: list[Int64Array] = []
        run_container: list[Int64Array] = []
        packable = int(value.max()) < 1 << _VALUE_BITS
        window = np.empty(min(n, _CHUNK), dtype=np.int64)
        grouper = _ChunkGrouper.of(row_of.shape[0], min(n, _CHUNK))
        narrow = None if grouper is None else container.astype(np.int32)
        for start in range(0, n, _CHUNK):
            stop = min(start + _CHUNK, n)
            keys = container[start:stop]
            sorted_keys: IndexArray
            if grouper is None or narrow is None:
                order, sorted_keys = sorted_groups(keys)
            else:
                order, sorted_keys = grouper.group(narrow[start:stop])
            runs = np.flatnonzero(np.append(True, sorted_keys[1:] != sorted_keys[:-1]))
            owner = sorted_keys[runs].astype(np.int64)
            np.add(order, start, out=event_sample[start:stop])
            new = first_event[owner] < 0
            first_event[owner[new]] = runs[new] + start
            count[owner] += np.diff(np.append(runs, stop - start))
            unanchored = new & (anchor[owner] == UNSET_NS)
            anchor[owner[unanchored]] = t_ns[event_sample[runs[unanchored] + start]]
            # Interval k >= 0 after the anchor ends at anchor + (k + 1) * interval; events
            # before the anchor (k = -1) belong to the interval ending at the anchor.
            chunk_window = window[: stop - start]
            np.take(anchor, keys, out=chunk_window)
            np.subtract(t_ns[start:stop], chunk_window, out=chunk_window)
            chunk_window //= interval_ns
            np.maximum(chunk_window, -1, out=chunk_window)
            _gather_chunk(
                chunk_window,
                value[start:stop],
                order,
                packable=packable,
                out_window=event_window[start:stop],
                out_value=event_value[start:stop],
            )
            run_first.append(runs + start)
            run_container.append(owner)
        return cls(
            value=event_value,
            window=event_window,
            sample=event_sample if valid is None else valid[event_sample],
            run_first=np.concatenate(run_first),
            run_container=np.concatenate(run_container),
            first_event=first_event,
            count=count,
            anchor=anchor,
        )


def _gather_chunk(
    window: Int64Array,
    value: Int64Array,
    order: Int64Array,
    *,
    packable: bool,
    out_window: Int64Array,
    out_value: Int64Array,
) -> None:
    """out_window, out_value = window[order], value[order]; one gather when both fit a word.

    `window` is overwritten.
    """
    if packable and int(window.max()) < (1 << (62 - _VALUE_BITS)) - 1:
        window += 1
        window <<= _VALUE_BITS
        window |= value
        packed = np.take(window, order)
        np.bitwise_and(packed, (1 << _VALUE_BITS) - 1, out=out_value)
        np.right_shift(packed, _VALUE_BITS, out=out_window)
        out_window -= 1
    else:
        np.take(window, order, out=out_window)
        np.take(value, order, out=out_value)


class _ChunkGrouper:
    """`sorted_groups` for chunks of small keys: 32-bit packed sorts into reused buffers."""

    def __init__(self, shift: int, size: int) -> None:
        self.shift = shift
        self.positions = np.arange(size, dtype=np.int32)
        self.packed = np.empty(size, dtype=np.int32)
        self.order = np.empty(size, dtype=np.int64)
        self.keys = np.empty(size, dtype=np.int32)

    @classmethod
    def of(cls, n_keys: int, size: int) -> _ChunkGrouper | None:
        shift = (size - 1).bit_length()
        if (n_keys - 1).bit_length() + shift > 31:
            return None
        return cls(shift, size)

    def group(self, keys: npt.NDArray[np.int32]) -> tuple[Int64Array, npt.NDArray[np.int32]]:
        """(stable order of keys, keys in that order), in buffers that the next call reuses."""
        m = keys.shape[0]
        packed = self.packed[:m]
        np.left_shift(keys, self.shift, out=packed)
        packed |= self.positions[:m]
        packed.sort()
        order = self.order[:m]
        np.bitwise_and(packed, (1 << self.shift) - 1, out=order)
        sorted_keys = self.keys[:m]
        np.right_shift(packed, self.shift, out=sorted_keys)
        return order, sorted_keys


@dataclass
class _Parts:
    """Runs of one container and one interval within a chunk, and the segments they form.

    Segments are numbered in (container, interval) order; parts in event order.
    """

    first: Int64Array  # first event of each part
    boundary: BoolArray  # per event: it starts a part
    segment: Int64Array  # per part
    by_container: Int64Array  # parts in (container, chunk) order
    seg_first_part: Int64Array
    seg_group: Int64Array
    seg_window_end: Int64Array
    seg_continuing: BoolArray
    start_value: Int64Array  # per segment: the opener's value, or the carried peak
    last_of_container: Int64Array  # per group: its last part

    @classmethod
    def of(
        cls,
        chunked: _Chunked,
        store: AggregateStore,
        row_of: Int64Array,
        present: Int64Array,
        interval_ns: int,
    ) -> _Parts:
        n = chunked.value.shape[0]
        boundary = np.zeros(n, dtype=bool)
        boundary[chunked.run_first] = True
        boundary[1:] |= chunked.window[1:] != chunked.window[:-1]
        first = np.flatnonzero(boundary)
        container = chunked.run_container[_run_of(chunked.run_first, first)]
        window = chunked.window[first]
        by_container = stable_order(container)
        sorted_container = container[by_container]
        sorted_window = window[by_container]
        new_container = np.ones(by_container.shape[0], dtype=bool)
        new_container[1:] = sorted_container[1:] != sorted_container[:-1]
        seg_start = new_container.copy()
        seg_start[1:] |= sorted_window[1:] != sorted_window[:-1]
        segment = np.empty(by_container.shape[0], dtype=np.int64)
        segment[by_container] = np.cumsum(seg_start) - 1
        seg_first_part = by_container[seg_start]
        seg_container = sorted_container[seg_start]
        seg_window_end = (
            chunked.anchor[seg_container] + (sorted_window[seg_start] + 1) * interval_ns
        )
        seg_end0 = store.window_end_ns[row_of[seg_container]]
        seg_continuing = (seg_end0 != UNSET_NS) & (seg_window_end == seg_end0)
        group_of = np.full(row_of.shape[0], -1, dtype=np.int64)
        group_of[present] = np.arange(present.shape[0])
        seg_group = group_of[seg_container]
        rows = row_of[present]
        carried_peak = np.maximum(store.memory_peak_bytes[rows], store.oom_peak_bytes[rows])
        start_value = np.where(
            seg_continuing, carried_peak[seg_group], chunked.value[first[seg_first_part]]
        )
        return cls(
            first=first,
            boundary=boundary,
            segment=segment,
            by_container=by_container,
            seg_first_part=seg_first_part,
            seg_group=seg_group,
            seg_window_end=seg_window_end,
            seg_continuing=seg_continuing,
            start_value=start_value,
            last_of_container=by_container[np.append(new_container[1:], True)],
        )

    def carries(self, part_max: Int64Array, width: int) -> Int64Array:
        """Per part: the peak before its first event (-1 for a segment's opening part).

        The largest of the segment's earlier parts and, for a continuing segment, the peak
        carried from before the batch; a segment's opening part has its opener instead.
        """
        sorted_segment = self.segment[self.by_container]
        running = sorted_segment * width + part_max[self.by_container]
        np.maximum.accumulate(running, out=running)
        earlier = np.full(running.shape[0], -1, dtype=np.int64)
        earlier[1:] = running[:-1] - sorted_segment[1:] * width
        earlier[group_starts(sorted_segment)] = -1
        base = np.where(self.seg_continuing, self.start_value, -1)[sorted_segment]
        carry = np.empty(running.shape[0], dtype=np.int64)
        carry[self.by_container] = np.maximum(earlier, base)
        return carry

    def changes(self, value: Int64Array) -> _Changes | None:
        """`_peak_changes` over parts: a part's first event competes with its carry.

        Its later events can raise the peak only if the part's largest value exceeds both the
        carry and its first value; the running maximum is taken over those parts only (most
        parts, once a segment's peak is high, have none).
        """
        n = value.shape[0]
        width = max(int(value.max()), int(self.start_value.max())) + 1
        n_parts = self.first.shape[0]
        if n_parts * width >= 2**62:
            return None
        part_max = np.maximum.reduceat(value, self.first)
        carry = self.carries(part_max, width)
        carrying = np.flatnonzero(carry >= 0)
        carrying_first = self.first[carrying]
        carried = carry[carrying]
        beats = value[carrying_first] > carried
        start = np.maximum(value[self.first], carry)
        active = np.flatnonzero(part_max > start)
        size = np.diff(np.append(self.first, n))[active]
        total = int(size.sum())
        offsets = np.cumsum(size) - size
        lifted = np.repeat(np.arange(active.shape[0], dtype=np.int64) * width, size)
        if total == n:
            index = None
            lifted += value
        else:
            index = np.repeat(self.first[active] - offsets, size)
            index += np.arange(total)
            lifted += value[index]
        lifted[offsets] += start[active] - value[self.first[active]]
        running = np.maximum.accumulate(lifted, out=lifted)
        local = np.flatnonzero(running[1:] > running[:-1]) + 1
        opening = np.zeros(total, dtype=bool)
        opening[offsets] = True
        local = local[~opening[local]]
        local_part = _run_of(offsets, local)
        rises = local if index is None else index[local]
        changed = np.concatenate([rises, carrying_first[beats]])
        segment = self.segment[np.concatenate([active[local_part], carrying[beats]])]
        replaced = np.concatenate([running[local - 1] - local_part * width, carried[beats]])
        # A zero starting peak freezes the interval, as upstream.
        live = self.start_value[segment] != 0
        return _Changes(changed[live], segment[live], replaced[live])


def _update_containers(store: AggregateStore, summary: _Summary) -> None:
    """Each running container's interval, peaks and last sample time after the batch."""
    rows = summary.group_row
    last_segment = summary.group_last_segment
    continuing_last = summary.seg_continuing[last_segment]
    usage = np.where(continuing_last, store.memory_peak_bytes[rows], 0)
    kill = np.where(continuing_last, store.oom_peak_bytes[rows], 0)
    # The peaks added in each container's last interval.
    changes = summary.changes
    adds = np.concatenate([changes.event, summary.opener_event])
    add_segment = np.concatenate([changes.segment, summary.opener_segment])
    add_group = summary.seg_group[add_segment]
    in_last = add_segment == last_segment[add_group]
    adds, add_group = adds[in_last], add_group[in_last]
    oom = summary.oom(adds)
    np.maximum.at(usage, add_group[~oom], summary.value[adds[~oom]])
    np.maximum.at(kill, add_group[oom], summary.value[adds[oom]])
    store.memory_peak_bytes[rows] = usage
    store.oom_peak_bytes[rows] = kill
    store.window_end_ns[rows] = summary.seg_window_end[last_segment]
    store.last_memory_sample_start_ns[rows] = summary.group_last_t


@dataclass
class _Operations:
    """Histogram operations in canonical order: +1 adds a peak, -1 removes one."""

    aggregate: Int64Array
    t_ns: Int64Array
    value: Int64Array
    sign: Int64Array

    def take(self, mask: BoolArray) -> _Operations:
        return _Operations(self.aggregate[mask], self.t_ns[mask], self.value[mask], self.sign[mask])


def _operations(store: AggregateStore, summary: _Summary) -> _Operations:
    """A peak change removes the replaced peak, then adds the new one; an opener only adds."""
    changes = summary.changes
    adds = np.concatenate([changes.event, summary.opener_event])
    order_key = np.concatenate(
        [summary.position(changes.event) * 2, summary.position(adds) * 2 + 1]
    )
    order = stable_order(order_key)
    n_changes = changes.event.shape[0]
    sign = np.ones(order.shape[0], dtype=np.int64)
    sign[order < n_changes] = -1
    segment = np.concatenate([changes.segment, changes.segment, summary.opener_segment])[order]
    return _Operations(
        aggregate=store.container_aggregate[summary.group_row[summary.seg_group[segment]]],
        t_ns=summary.seg_window_end[segment],
        value=np.concatenate([changes.replaced, summary.value[adds]])[order],
        sign=sign,
    )


def _apply_operations(store: AggregateStore, summary: _Summary) -> None:
    operations = _operations(store, summary)
    if operations.sign.shape[0] == 0:
        return
    prepared = _Prepared.of(store, operations)
    slow = _needs_replay(store, operations, prepared)
    if slow.any():
        _replay(store, operations.take(np.isin(operations.aggregate, np.flatnonzero(slow))))
        fast = ~slow[operations.aggregate]
        operations = operations.take(fast)
        # The replay only rewrote the slow aggregates: what was prepared for the others holds.
        prepared = prepared.take(fast, operations, len(store.memory))
    if operations.sign.shape[0]:
        _fold_operations(store, operations, prepared)


def _effective_reference(
    h: HistogramArrays, operations: _Operations, touched: _Touched
) -> Int64Array:
    """Per operation: its aggregate's reference, or the one its first operation will set."""
    reference = h.reference_ns[touched.rows]
    local = touched.local[operations.aggregate]
    first = np.full(touched.rows.shape[0], operations.sign.shape[0], dtype=np.int64)
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
) -> tuple[Int64Array, IndexArray, FloatArray]:
    """(local aggregate, bucket, weight) of the open-interval peak of each running container."""
    h = store.memory
    open_rows = np.flatnonzero(store.window_end_ns != UNSET_NS)
    aggregate = store.container_aggregate[open_rows]
    mine = touched.local[aggregate] >= 0
    open_rows, aggregate = open_rows[mine], aggregate[mine]
    peak = np.maximum(store.memory_peak_bytes[open_rows], store.oom_peak_bytes[open_rows])
    bucket = h.layout.amount_bucket_index(peak, 1.0)
    reference = h.reference_ns[aggregate]
    known = reference != UNSET_NS
    weight = MEMORY_PEAK_WEIGHT * decay_factors(
        store.window_end_ns[open_rows], np.where(known, reference, 0), h.half_life_ns
    )
    known_weight: FloatArray = np.where(known, weight, 0.0)
    return touched.local[aggregate], bucket, known_weight


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

    def take(self, local: Int64Array) -> _Committed:
        """The rows of the touched aggregates numbered `local`."""
        return _Committed(
            self.open_count[local], self.rest[local], self.open_total[local], self.rest_total[local]
        )


@dataclass
class _Prepared:
    """What both the replay check and the fold need, per operation or touched aggregate."""

    touched: _Touched
    reference: Int64Array  # per operation: the effective reference of its aggregate
    weight: FloatArray  # per operation: its peak's decayed weight
    bucket: IndexArray  # per operation: its peak's bucket
    committed: _Committed

    @classmethod
    def of(cls, store: AggregateStore, operations: _Operations) -> _Prepared:
        h = store.memory
        touched = _Touched.of(operations.aggregate, len(h))
        reference = _effective_reference(h, operations, touched)
        return cls(
            touched=touched,
            reference=reference,
            weight=MEMORY_PEAK_WEIGHT * decay_factors(operations.t_ns, reference, h.half_life_ns),
            bucket=h.layout.amount_bucket_index(operations.value, 1.0),
            committed=_Committed.of(store, touched),
        )

    def take(self, keep: BoolArray, kept: _Operations, n: int) -> _Prepared:
        """Restricted to the operations `keep` (which are `kept`), of whole aggregates."""
        touched = _Touched.of(kept.aggregate, n)
        return _Prepared(
            touched=touched,
            reference=self.reference[keep],
            weight=self.weight[keep],
            bucket=self.bucket[keep],
            committed=self.committed.take(self.touched.local[touched.rows]),
        )


def _needs_replay(store: AggregateStore, operations: _Operations, prepared: _Prepared) -> BoolArray:
    """Aggregates the fast fold cannot reproduce exactly (moved reference, sub-peak residue)."""
    h = store.memory
    touched = prepared.touched
    reference = prepared.reference
    slow = np.zeros(len(h), dtype=bool)
    # Compared as a distance from the reference: with a half-life above ~850 days the limit
    # itself (reference + 100 half-lives) is beyond int64; the span alone is capped there.
    span = min(h.half_life_ns * MAX_DECAY_EXPONENT, _INT64_MAX)
    slow[operations.aggregate[operations.t_ns - reference > span]] = True
    slow[operations.aggregate[prepared.weight < _SOLID]] = True
    rows = touched.rows
    was_unset = h.reference_ns[rows] == UNSET_NS
    slow[rows] |= was_unset & ((h.weights[rows] != 0).any(axis=1) | (h.total_weight[rows] != 0))

    committed = prepared.committed
    ambiguous = (committed.rest >= _NOISE) & (committed.rest < _SOLID)
    removes = operations.sign < 0
    removed = operations.aggregate[removes]
    removal_buckets = prepared.bucket[removes]
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


def _fold_operations(store: AggregateStore, operations: _Operations, prepared: _Prepared) -> None:
    """Apply operations with the vectorized fold, tracking when buckets become exactly empty."""
    h = store.memory
    touched = prepared.touched
    committed = prepared.committed
    newly_set = h.reference_ns[operations.aggregate] == UNSET_NS
    # Setting a reference scales by zero: all weights of these histograms are zero already.
    h.total_weight[operations.aggregate[newly_set]] = 0.0
    h.reference_ns[operations.aggregate] = prepared.reference
    weight = prepared.weight
    bucket = prepared.bucket

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
    step = sign.astype(np.int8)[order]
    running = np.cumsum(step, dtype=np.int64)
    first = np.flatnonzero(group_starts(sorted_key))
    base = running[first] - step[first]
    live_after = live_before[sorted_key]
    live_after += running
    live_after -= np.repeat(base, np.diff(np.append(first, order.shape[0])))
    result = np.zeros(key.shape[0], dtype=bool)
    result[order] = (step < 0) & (live_after == 0)
    return result
