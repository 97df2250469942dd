"""Vectorized updates of `HistogramArrays` that reproduce sample-by-sample updates bit for bit.

Floating-point sums depend on their order, so every kernel folds each bucket's contributions in
the order a `DecayingHistogram` would have received them: `np.bincount` with weights adds its
inputs strictly in sequence, and an existing bucket weight is folded in first by prepending it
as a pseudo-sample; `np.add.at` (unbuffered) adds its inputs one by one, in sequence, onto the
existing weights. Moving a reference timestamp rescales by an exact power of two, applied at
the same point of the sequence as the scalar path does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from analytics.arrays import BoolArray, FloatArray, Int64Array
from analytics.go_semantics import UNSET_NS, round_time_array
from analytics.histogram import HistogramArrays
from analytics.histogram_layout import (
    MAX_DECAY_EXPONENT,
    IndexArray,
    decay_factors,
    weighted_decay_factors,
)

__all__ = [
    "Earliest",
    "add_bucketed_samples",
    "add_samples",
    "fold_rows",
    "group_starts",
    "sorted_groups",
    "stable_order",
]


_FOLD_BLOCK = 65536
_INT64_MAX = np.iinfo(np.int64).max


def group_starts(sorted_keys: Int64Array) -> BoolArray:
    """True where a run of equal keys starts."""
    starts = np.ones(sorted_keys.shape[0], dtype=bool)
    if sorted_keys.shape[0] > 1:
        starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return starts


def stable_order(keys: Int64Array) -> Int64Array:
    """Stable argsort of non-negative integer keys."""
    return sorted_groups(keys)[0]


def sorted_groups(keys: Int64Array) -> tuple[Int64Array, Int64Array]:
    """(stable argsort of non-negative integer keys, the keys in that order)."""
    n = keys.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    top = int(keys.max())
    shift = (n - 1).bit_length()
    bits = top.bit_length() + shift
    if bits < 63:
        # Each key with its position below it: distinct values, whose sort (vectorized, and
        # twice as fast on 32-bit values) orders equal keys by position.
        packed: npt.NDArray[np.signedinteger[Any]] = keys.astype(
            np.int32 if bits < 31 else np.int64
        )
        np.left_shift(packed, shift, out=packed)
        np.bitwise_or(packed, np.arange(n, dtype=packed.dtype), out=packed)
        packed.sort()
        order = np.bitwise_and(packed, (1 << shift) - 1, dtype=np.int64)
        sorted_keys = np.right_shift(packed, shift, dtype=np.int64)
        return order, sorted_keys
    order = np.arange(n)
    remaining = keys
    shift = 0
    while top >> shift:
        # 16-bit radix passes: numpy's stable sort of 16-bit integers is a radix sort.
        digit = ((remaining >> shift) & 0xFFFF).astype(np.uint16)
        step = np.argsort(digit, kind="stable")
        order = order[step]
        remaining = remaining[step]
        shift += 16
    return order, remaining


def fold_rows(
    h: HistogramArrays,
    rows: Int64Array,
    buckets: IndexArray,
    weights: FloatArray,
    *,
    zero_after: BoolArray | None = None,
    total_zero_after: BoolArray | None = None,
) -> None:
    """Add weights (in order) to (row, bucket) cells and to row totals, after the current values.

    `zero_after` (per contribution) marks contributions after which the cell is exactly zero
    (a subtraction that empties a bucket snaps it to zero): the cell's value restarts there.
    `total_zero_after` does the same for the row totals.
    """
    if rows.shape[0] == 0:
        return
    n_buckets = h.layout.num_buckets
    touched = np.flatnonzero(np.bincount(rows, minlength=len(h)))
    local = np.full(len(h), -1, dtype=np.int64)
    local[touched] = np.arange(touched.shape[0])
    cells = local[rows] * n_buckets + buckets
    keep_cell = np.ones(touched.shape[0] * n_buckets, dtype=bool)
    keep_item = np.ones(rows.shape[0], dtype=bool)
    if zero_after is not None and zero_after.any():
        keep_item, restarted = _after_last_restart(cells, zero_after)
        keep_cell[restarted] = False
    all_cells = np.concatenate([np.arange(touched.shape[0] * n_buckets), cells[keep_item]])
    all_weights = np.concatenate([h.weights[touched].ravel() * keep_cell, weights[keep_item]])
    folded = np.bincount(all_cells, weights=all_weights, minlength=touched.shape[0] * n_buckets)
    h.weights[touched] = folded.reshape(touched.shape[0], n_buckets)

    local_rows = local[rows]
    keep_total = np.ones(rows.shape[0], dtype=bool)
    keep_row = np.ones(touched.shape[0], dtype=bool)
    if total_zero_after is not None and total_zero_after.any():
        keep_total, restarted_rows = _after_last_restart(local_rows, total_zero_after)
        keep_row[restarted_rows] = False
    totals = np.bincount(
        np.concatenate([np.arange(touched.shape[0]), local_rows[keep_total]]),
        weights=np.concatenate([h.total_weight[touched] * keep_row, weights[keep_total]]),
        minlength=touched.shape[0],
    )
    h.total_weight[touched] = totals


def _after_last_restart(keys: Int64Array, restart: BoolArray) -> tuple[BoolArray, Int64Array]:
    """Which items come after the last restart of their key, and the keys that restart."""
    positions = np.arange(keys.shape[0])
    last = np.full(int(keys.max()) + 1, -1, dtype=np.int64)
    np.maximum.at(last, keys[restart], positions[restart])
    keep = positions > last[keys]
    return keep, np.flatnonzero(last >= 0)


def _first_index(rows: Int64Array, n_rows: int) -> Int64Array:
    first = np.full(n_rows, rows.shape[0], dtype=np.int64)
    np.minimum.at(first, rows, np.arange(rows.shape[0]))
    return first


Earliest = tuple[Int64Array, Int64Array]
"""(rows with samples, per row the time of its earliest sample)."""


def _first_times(
    rows: Int64Array, t_ns: Int64Array, n_rows: int, earliest: Earliest | None
) -> tuple[Int64Array, Int64Array]:
    """Rows with samples, and per row the time of its first sample (in sequence order)."""
    if bool((t_ns[1:] >= t_ns[:-1]).all()):
        # Times in order (as batches are): a row's first sample is its earliest.
        if earliest is not None:
            return earliest
        first_t = np.full(n_rows, _INT64_MAX, dtype=np.int64)
        np.minimum.at(first_t, rows, t_ns)
        if t_ns[-1] != _INT64_MAX:
            return np.flatnonzero(first_t != _INT64_MAX), first_t
        return np.flatnonzero(np.bincount(rows, minlength=n_rows)), first_t
    first = _first_index(rows, n_rows)
    touched = np.flatnonzero(first < rows.shape[0])
    first_t = np.zeros(n_rows, dtype=np.int64)
    first_t[touched] = t_ns[first[touched]]
    return touched, first_t


def _add_without_moving_references(
    h: HistogramArrays,
    rows: Int64Array,
    t_ns: Int64Array,
    buckets: IndexArray,
    weight: float,
    *,
    earliest: Earliest | None,
) -> bool:
    """The common case of `add_samples`: no reference moves except being set for the first time.

    Returns False, changing nothing, when some sample would move a set reference.
    """
    reference = h.reference_ns.copy()
    touched, first_t = _first_times(rows, t_ns, len(h), earliest)
    starting = touched[reference[touched] == UNSET_NS]
    reference[starting] = round_time_array(first_t[starting], h.half_life_ns)
    limit_span = h.half_life_ns * MAX_DECAY_EXPONENT
    # One comparison settles it unless some sample comes close to a limit.
    if int(t_ns.max()) > int(reference[touched].min()) + limit_span and bool(
        (t_ns > reference[rows] + limit_span).any()
    ):
        return False
    if starting.shape[0]:
        # Setting a reference rescales by zero, exactly as the scalar path's first sample does;
        # that leaves a histogram without weight (the usual new one) as it is.
        blank = ~(h.weights[starting] != 0).any(axis=1) & (h.total_weight[starting] == 0)
        h.reference_ns[starting[blank]] = reference[starting[blank]]
        if not blank.all():
            h.move_references(starting[~blank], reference[starting[~blank]])
    decayed = _decayed_weights(
        t_ns, rows, reference=reference, touched=touched, half_life_ns=h.half_life_ns, weight=weight
    )
    _fold_in_order(h, touched, rows, buckets, decayed)
    return True


def _decayed_weights(
    t_ns: Int64Array,
    rows: Int64Array,
    *,
    reference: Int64Array,
    touched: Int64Array,
    half_life_ns: int,
    weight: float,
) -> FloatArray:
    """`weight * decay_factors(t_ns, reference[rows], half_life_ns)`.

    Samples usually come on a time grid (one timestamp for many containers, in time order) and
    share a few references, so when the (run of equal timestamps, reference) pairs are few,
    each pair's factor is computed once and spread to its samples: the same factors, bit for
    bit, since a factor depends on t and the reference only.
    """
    n = t_ns.shape[0]
    run_start = np.empty(n, dtype=bool)
    run_start[0] = True
    np.not_equal(t_ns[1:], t_ns[:-1], out=run_start[1:])
    references = np.unique(reference[touched])
    if np.count_nonzero(run_start) * references.shape[0] > n // 4:
        return weighted_decay_factors(t_ns, rows, reference, half_life_ns, weight, touched=touched)
    heads = np.flatnonzero(run_start)
    table = weight * decay_factors(t_ns[heads][None, :], references[:, None], half_life_ns)
    if references.shape[0] == 1:
        spread: FloatArray = np.repeat(table[0], np.diff(np.append(heads, n)))
        return spread
    run = np.cumsum(run_start) - 1
    reference_id = np.searchsorted(references, reference)
    picked: FloatArray = table.ravel()[reference_id[rows] * heads.shape[0] + run]
    return picked


def _flat_weights(h: HistogramArrays) -> FloatArray:
    """`h.weights` as a flat view (made contiguous first if it is not)."""
    if not h.weights.flags.c_contiguous:
        h.weights = np.ascontiguousarray(h.weights)
    flat: FloatArray = h.weights.reshape(-1)
    return flat


def _fold_in_order(
    h: HistogramArrays,
    touched: Int64Array,
    rows: Int64Array,
    buckets: IndexArray,
    weights: FloatArray,
) -> None:
    """`fold_rows` without restarts, in place: `np.add.at` adds strictly in sequence too."""
    # fold_rows starts each touched cell from 0.0 + its weight, which turns -0.0 into 0.0.
    h.weights[touched] += 0.0
    h.total_weight[touched] += 0.0
    flat = _flat_weights(h)
    n = rows.shape[0]
    size = min(n, _FOLD_BLOCK)
    cells = np.empty(size, dtype=np.int64)
    # Blocks in sequence keep each cell's additions in order without a full-size cell array.
    for start in range(0, n, size):
        stop = min(start + size, n)
        block = cells[: stop - start]
        np.multiply(rows[start:stop], h.layout.num_buckets, out=block)
        block += buckets[start:stop]
        np.add.at(flat, block, weights[start:stop])
    np.add.at(h.total_weight, rows, weights)


def add_samples(
    h: HistogramArrays, rows: Int64Array, t_ns: Int64Array, values: FloatArray, weight: float
) -> None:
    """Add samples, in the given order, as `DecayingHistogram.add_sample` would one at a time.

    rows: histogram row of each sample; t_ns: sample times; values: in the layout's unit.
    """
    if rows.shape[0] == 0:
        return
    add_bucketed_samples(h, rows, t_ns, h.layout.bucket_index(values), weight)


def add_bucketed_samples(
    h: HistogramArrays,
    rows: Int64Array,
    t_ns: Int64Array,
    buckets: IndexArray,
    weight: float,
    *,
    earliest: Earliest | None = None,
) -> None:
    """`add_samples` with each sample's bucket index instead of its value.

    earliest: the caller's (rows with samples, per row its earliest sample time), if known.
    """
    n = rows.shape[0]
    if n == 0:
        return
    if _add_without_moving_references(h, rows, t_ns, buckets, weight, earliest=earliest):
        return
    order = stable_order(rows)
    row = rows[order]
    t = t_ns[order]
    bucket = buckets[order]
    group = np.cumsum(group_starts(row)) - 1
    group_row = row[group_starts(row)]
    reference = h.reference_ns[group_row].copy()
    epoch = np.zeros(n, dtype=np.int64)
    epoch_reference = np.empty(n, dtype=np.int64)
    shifts: list[tuple[Int64Array, Int64Array]] = []
    limit_span = h.half_life_ns * MAX_DECAY_EXPONENT
    remaining = np.arange(n)
    k = 0
    while remaining.shape[0]:
        g = group[remaining]
        current = reference[g]
        unset = current == UNSET_NS
        exceeded = unset | (t[remaining] > np.where(unset, 0, current) + limit_span)
        # The first sample past the limit moves the reference; earlier ones stay in this epoch.
        first_exceeding = np.full(group_row.shape[0], n, dtype=np.int64)
        np.minimum.at(first_exceeding, g[exceeded], remaining[exceeded])
        in_epoch = remaining < first_exceeding[g]
        epoch[remaining[in_epoch]] = k
        epoch_reference[remaining[in_epoch]] = current[in_epoch]
        moving = np.flatnonzero(first_exceeding < n)
        if moving.shape[0]:
            new_reference = round_time_array(t[first_exceeding[moving]], h.half_life_ns)
            reference[moving] = new_reference
            shifts.append((group_row[moving], new_reference))
        else:
            shifts.append((np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)))
        remaining = remaining[~in_epoch]
        k += 1
    decayed = weight * decay_factors(t, epoch_reference, h.half_life_ns)
    for epoch_index in range(k):
        chosen = epoch == epoch_index
        fold_rows(h, row[chosen], bucket[chosen], decayed[chosen])
        shifted_rows, new_reference = shifts[epoch_index]
        if shifted_rows.shape[0]:
            h.move_references(shifted_rows, new_reference)
