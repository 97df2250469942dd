"""Exponential bucket layouts of the stock recommender's histograms, and their numeric kernels.

Both the scalar histogram and the dense many-histogram arrays go through the array functions
here (`bucket_index`, `decay_factors`) so that the two paths compute bit-identical weights.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from analytics.arrays import FloatArray, Int64Array
from analytics.go_semantics import (
    EXP2_BLOCK,
    EXP2_OVERFLOW,
    EXP2_UNDERFLOW,
    Exp2Blocks,
    go_exp2,
    go_log,
    go_pow,
)

__all__ = [
    "CPU_LAYOUT",
    "EPSILON",
    "MAX_DECAY_EXPONENT",
    "MEMORY_LAYOUT",
    "MIN_SAMPLE_WEIGHT",
    "HistogramLayout",
    "decay_factors",
    "weighted_decay_factors",
]

IndexArray = npt.NDArray[np.integer[Any]]

MIN_SAMPLE_WEIGHT: Final = 0.1
"""Weight of one CPU sample before decay (`minSampleWeight`)."""

EPSILON: Final = 0.001 * MIN_SAMPLE_WEIGHT
"""Bucket weight below which a bucket counts as empty."""

MAX_DECAY_EXPONENT: Final = 100
"""A sample more than this many half-lives after the reference moves the reference forward."""


@dataclass(frozen=True)
class HistogramLayout:
    """Exponential buckets: bucket i >= 1 starts at first * (ratio**i - 1) / (ratio - 1).

    Values are in the unit of the resource (cores for CPU, bytes for memory). The last bucket
    holds everything from its start upwards.
    """

    max_value: float
    first_bucket_size: float
    ratio: float
    epsilon: float = EPSILON

    def __post_init__(self) -> None:
        fields = (self.max_value, self.first_bucket_size, self.epsilon)
        if not all(math.isfinite(v) and v > 0 for v in fields) or not self.ratio > 1:
            raise ValueError(
                "histogram layout needs max_value, first_bucket_size and epsilon > 0 and ratio > 1,"
                f" got {self}"
            )

    @cached_property
    def num_buckets(self) -> int:
        """Number of buckets: ceil(log_ratio(max * (ratio - 1) / first + 1)) + 1."""
        span = self.max_value * (self.ratio - 1) / self.first_bucket_size + 1
        logs = go_log(np.array([span, self.ratio], dtype=np.float64))
        return math.ceil(float(logs[0] / logs[1])) + 1

    @cached_property
    def bucket_starts(self) -> FloatArray:
        """Start of each bucket, computed with Go's Pow so values match upstream to the bit."""
        starts = [0.0] + [
            self.first_bucket_size * (go_pow(self.ratio, float(i)) - 1) / (self.ratio - 1)
            for i in range(1, self.num_buckets)
        ]
        array = np.array(starts, dtype=np.float64)
        array.setflags(write=False)
        return array

    @cached_property
    def percentile_values(self) -> FloatArray:
        """What a percentile landing in each bucket returns: its end (its start if last)."""
        values = np.append(self.bucket_starts[1:], self.bucket_starts[-1])
        values.setflags(write=False)
        return values

    @cached_property
    def _log_ratio(self) -> np.float64:
        log_ratio: np.float64 = go_log(np.array([self.ratio], dtype=np.float64))[0]
        return log_ratio

    def bucket_index(self, values: FloatArray) -> Int64Array:
        """Bucket of each value (finite, >= 0): 0 below the first bucket, capped at the last."""
        values = np.asarray(values, dtype=np.float64)
        raw = self._raw_index(values)
        index = np.minimum(np.trunc(np.maximum(raw, 0.0)), self.num_buckets - 1).astype(np.int64)
        result: Int64Array = np.where(values < self.first_bucket_size, 0, index)
        return result

    def _raw_index(self, values: FloatArray) -> FloatArray:
        """log_ratio(values * (ratio - 1) / first + 1), with Go's Log: the uncapped index."""
        scaled = values * (self.ratio - 1) / self.first_bucket_size + 1
        raw: FloatArray = go_log(scaled) / self._log_ratio
        return raw

    def amount_bucket_index(self, amounts: Int64Array, unit: float) -> IndexArray:
        """`bucket_index(amounts / unit)` for integer amounts >= 0 (millicores with unit 1000).

        Bit for bit the same, without Go's Log per amount. When small enough (CPU, in
        millicores) a table holds the exact `bucket_index` of every amount up to a little past
        the start of the last bucket; larger amounts are clipped onto its last entry, which is
        the last bucket. Otherwise (memory, in bytes) the amounts where the index steps up are
        found once, exactly, and each amount is placed between them; failing that, this
        computes `bucket_index` itself.
        """
        table = _amount_table(self, float(unit))
        if table is not None:
            looked_up: IndexArray = np.take(table, amounts, mode="clip")
            return looked_up
        amounts = np.asarray(amounts, dtype=np.int64)
        thresholds = _amount_thresholds(self, float(unit))
        if thresholds is None:
            return self.bucket_index(amounts / unit)
        # A guess from the platform's logarithm (off by at most one near a bucket start), moved
        # to the bucket b with thresholds[b] <= amount < thresholds[b + 1].
        slope = (self.ratio - 1) / (self.first_bucket_size * unit)
        guess = np.log(amounts * slope + 1.0) / math.log(self.ratio)
        bucket = np.fmin(np.fmax(guess, 0.0), self.num_buckets - 1).astype(np.int64)
        while True:
            down = amounts < thresholds[bucket]
            up = amounts >= thresholds[bucket + 1]
            if not (down.any() or up.any()):
                exact: IndexArray = bucket
                return exact
            bucket += up
            bucket -= down

    def describe(self) -> str:
        """Human-readable layout, for error messages."""
        return (
            f"first bucket {self.first_bucket_size:g}, ratio {self.ratio:g}, "
            f"max {self.max_value:g}, epsilon {self.epsilon:g} ({self.num_buckets} buckets)"
        )


CPU_LAYOUT: Final = HistogramLayout(max_value=1000.0, first_bucket_size=0.01, ratio=1.0 + 0.05)
"""CPU usage histograms, in cores."""

MEMORY_LAYOUT: Final = HistogramLayout(max_value=1e12, first_bucket_size=1e7, ratio=1.0 + 0.05)
"""Memory peak histograms, in bytes."""

_MAX_AMOUNT_TABLE: Final = 1 << 22
"""Largest table `amount_bucket_index` keeps (one byte per amount)."""

_THRESHOLD_WINDOW: Final = 64
"""Integers on either side of a bucket start at which `amount_bucket_index` checks the index."""


@functools.lru_cache(maxsize=8)
def _amount_table(layout: HistogramLayout, unit: float) -> npt.NDArray[np.uint8] | None:
    """Bucket of each integer amount 0..n-1 (in 1/unit of the layout's unit), or None if big.

    n - 1 lies 0.1% past the start of the last bucket, so the logarithm behind its index
    exceeds num_buckets - 1 by ~0.02, far more than its rounding error (~1e-13): every larger
    amount, whose scaled value is no smaller, is in the last bucket too.
    """
    if layout.num_buckets > 256:
        return None
    size = math.ceil(float(layout.bucket_starts[-1]) * unit * 1.001) + 1
    if size > _MAX_AMOUNT_TABLE:
        return None
    amounts = np.arange(size, dtype=np.int64)
    table = layout.bucket_index(amounts / unit).astype(np.uint8)
    if table[-1] != layout.num_buckets - 1:
        raise AssertionError(f"amount table of {layout.describe()} does not end in the last bucket")
    table.setflags(write=False)
    return table


@functools.lru_cache(maxsize=8)
def _amount_thresholds(layout: HistogramLayout, unit: float) -> Int64Array | None:
    """Integer amounts where the bucket steps up, padded: [int64 min, T1, ..., Tn-1, int64 max].

    `bucket_index(a / unit)` is the b with thresholds[b] <= a < thresholds[b + 1], for every
    integer amount a >= 0. Each Ti is found by evaluating `bucket_index` on the integers
    within `_THRESHOLD_WINDOW` of bucket i's start, where "bucket >= i" must switch from false
    to true exactly once, and the uncapped index at the window's ends must be more than 1e-9
    away from i. As the index's rounding error is orders of magnitude smaller (checked), an
    amount outside the window cannot be on the wrong side of i: the index grows with the
    amount. None (compute `bucket_index` instead) if any check fails.
    """
    n = layout.num_buckets
    starts = np.asarray(layout.bucket_starts[1:]) * unit
    # A few ulps of the logarithm (at most ~|log| + 1), in units of the index.
    rounding = 8 * (n * float(layout._log_ratio) + 1) * 2.0**-52 / float(layout._log_ratio)
    if not (starts[-1] < 2.0**52 and rounding < 1e-11):
        return None
    offsets = np.arange(-_THRESHOLD_WINDOW, _THRESHOLD_WINDOW + 1)
    window = np.maximum(np.round(starts).astype(np.int64)[:, None] + offsets, 0)
    level = np.arange(1, n)[:, None]
    reached = layout.bucket_index(window / unit) >= level
    switches = np.count_nonzero(reached[:, 1:] != reached[:, :-1], axis=1)
    raw = layout._raw_index(window[:, [0, -1]] / unit)
    clear = (raw[:, 0] < level[:, 0] - 1e-9) | (window[:, 0] == 0)
    clear &= raw[:, 1] > level[:, 0] + 1e-9
    if not (clear.all() and (switches == 1).all() and reached[:, -1].all()):
        return None
    thresholds = window[np.arange(n - 1), np.argmax(reached, axis=1)]
    int64 = np.iinfo(np.int64)
    padded = np.concatenate([[int64.min], thresholds, [int64.max]]).astype(np.int64)
    padded.setflags(write=False)
    return padded


def decay_factors(t_ns: Int64Array, reference_ns: Int64Array, half_life_ns: int) -> FloatArray:
    """2 ** ((t - reference) / half_life): the weight of a sample at t relative to the reference."""
    elapsed = (np.asarray(t_ns, dtype=np.int64) - reference_ns).astype(np.float64)
    result: FloatArray = go_exp2(elapsed / float(half_life_ns))
    return result


def weighted_decay_factors(
    t_ns: Int64Array,
    rows: Int64Array,
    row_reference_ns: Int64Array,
    half_life_ns: int,
    weight: float,
    *,
    touched: Int64Array | None = None,
) -> FloatArray:
    """`weight * decay_factors(t_ns, row_reference_ns[rows], half_life_ns)`, bit for bit.

    Computed block by block, so that the per-sample references, elapsed times and exponents
    never exist as full-size arrays. `touched` (the rows that occur in `rows`) allows two
    shortcuts: one reference for all samples, and a single range check for Exp2 (exponents
    grow with t and shrink with the reference, so the extremes bound them all).
    """
    n = t_ns.shape[0]
    result = np.empty(n, dtype=np.float64)
    if n == 0:
        return result
    size = min(n, EXP2_BLOCK)
    elapsed = np.empty(size, dtype=np.int64)
    exponent = np.empty(size, dtype=np.float64)
    blocks = Exp2Blocks(size)
    scale = float(half_life_ns)
    single: int | None = None
    in_range = False
    if touched is not None and touched.shape[0]:
        references = row_reference_ns[touched]
        low = int(t_ns.min()) - int(references.max())
        high = int(t_ns.max()) - int(references.min())
        if low >= -(2**63) and high < 2**63:
            lowest, highest = float(low) / scale, float(high) / scale
            in_range = lowest >= EXP2_UNDERFLOW and highest <= EXP2_OVERFLOW
        if int(references.min()) == int(references.max()):
            single = int(references[0])
    for start in range(0, n, size):
        stop = min(start + size, n)
        m = stop - start
        if single is None:
            np.take(row_reference_ns, rows[start:stop], out=elapsed[:m])
            np.subtract(t_ns[start:stop], elapsed[:m], out=elapsed[:m])
        else:
            np.subtract(t_ns[start:stop], single, out=elapsed[:m])
        exponent[:m] = elapsed[:m]
        exponent[:m] /= scale
        out = result[start:stop]
        if in_range:
            blocks.in_range(exponent[:m], out)
        else:
            blocks.into(exponent[:m], out)
        out *= weight
    return result
