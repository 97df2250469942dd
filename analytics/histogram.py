"""Decaying exponential histograms with the stock VPA recommender's semantics.

`DecayingHistogram` is one histogram, updated sample by sample exactly as upstream's
`decayingHistogram` is (including its min/max bucket bookkeeping). `HistogramArrays` holds many
histograms of one layout as dense arrays, for vectorized percentiles, merges and ingestion.
Both serialize to the same compact form: only non-empty buckets, with exact float64 weights.

Weights are relative: a sample at time t weighs `weight * 2 ** ((t - reference) / half_life)`,
where the reference timestamp is a multiple of the half-life (counted from Go's zero time) and
moves forward, rescaling every weight by a power of two, when a sample lands more than
`MAX_DECAY_EXPONENT` half-lives after it.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from analytics.arrays import FloatArray, Int64Array
from analytics.go_semantics import UNSET_NS, reference_exponent, round_time
from analytics.histogram_layout import MAX_DECAY_EXPONENT, HistogramLayout, decay_factors

__all__ = ["DecayingHistogram", "HistogramArrays", "LayoutMismatchError"]


_MAGIC: Final = b"VH1"
_HEADER: Final = struct.Struct("<3s4dqqdHHH")
_BUCKET: Final = struct.Struct("<Hd")


class LayoutMismatchError(ValueError):
    """Histograms of different bucket layouts or half-lives cannot be merged or loaded together."""


def _check_compatible(
    layout: HistogramLayout, half_life_ns: int, other_layout: HistogramLayout, other_half_life: int
) -> None:
    if layout != other_layout:
        raise LayoutMismatchError(
            f"histogram bucket layout mismatch: {other_layout.describe()} "
            f"is not {layout.describe()}"
        )
    if half_life_ns != other_half_life:
        raise LayoutMismatchError(
            f"histogram half-life mismatch: {other_half_life / 1e9:g}s "
            f"is not {half_life_ns / 1e9:g}s"
        )


class DecayingHistogram:
    """One decaying histogram, updated in place like upstream's `decayingHistogram`."""

    def __init__(self, layout: HistogramLayout, half_life_ns: int) -> None:
        if half_life_ns <= 0:
            raise ValueError(f"half_life_ns must be positive, got {half_life_ns}")
        self.layout = layout
        self.half_life_ns = half_life_ns
        self.weights: FloatArray = np.zeros(layout.num_buckets, dtype=np.float64)
        self.total_weight = 0.0
        self.min_bucket = layout.num_buckets - 1
        self.max_bucket = 0
        self.reference_ns: int = UNSET_NS

    # -- updates -------------------------------------------------------------------------------

    def _bucket(self, value: float) -> int:
        return int(self.layout.bucket_index(np.array([value], dtype=np.float64))[0])

    def decay_factor(self, t_ns: int) -> float:
        """Weight multiplier of a sample at t_ns; moves the reference forward first if needed."""
        limit = self.reference_ns + self.half_life_ns * MAX_DECAY_EXPONENT
        if self.reference_ns == UNSET_NS or t_ns > limit:
            self.shift_reference(t_ns)
        factor = decay_factors(
            np.array([t_ns], dtype=np.int64),
            np.array([self.reference_ns], dtype=np.int64),
            self.half_life_ns,
        )
        return float(factor[0])

    def shift_reference(self, t_ns: int) -> None:
        """Move the reference to t_ns rounded to the half-life, rescaling weights by 2**k."""
        new_reference = round_time(t_ns, self.half_life_ns)
        exponent = reference_exponent(self.reference_ns, new_reference, self.half_life_ns)
        self.scale(math.ldexp(1.0, max(exponent, -1_000_000)))
        self.reference_ns = new_reference

    def scale(self, factor: float) -> None:
        """Multiply every weight by factor (>= 0)."""
        if factor < 0:
            raise ValueError(f"scale factor must be non-negative, got {factor}")
        for bucket in range(self.min_bucket, self.max_bucket + 1):
            self.weights[bucket] *= factor
        self.total_weight *= factor
        self._update_min_max()

    def add_sample(self, value: float, weight: float, t_ns: int) -> None:
        """Add a sample of value (cores or bytes) with weight (before decay) at time t_ns."""
        if weight < 0:
            raise ValueError(f"sample weight must be non-negative, got {weight}")
        decayed = weight * self.decay_factor(t_ns)
        bucket = self._bucket(value)
        self.weights[bucket] += decayed
        self.total_weight += decayed
        epsilon = self.layout.epsilon
        if bucket < self.min_bucket and self.weights[bucket] >= epsilon:
            self.min_bucket = bucket
        if bucket > self.max_bucket and self.weights[bucket] >= epsilon:
            self.max_bucket = bucket

    def subtract_sample(self, value: float, weight: float, t_ns: int) -> None:
        """Remove a sample added earlier with the same value, weight and time."""
        if weight < 0:
            raise ValueError(f"sample weight must be non-negative, got {weight}")
        decayed = weight * self.decay_factor(t_ns)
        bucket = self._bucket(value)
        epsilon = self.layout.epsilon
        # Below epsilon a weight is rounding noise of earlier additions: it snaps to zero.
        total = self.total_weight - decayed
        self.total_weight = 0.0 if total < epsilon else total
        remaining = float(self.weights[bucket]) - decayed
        self.weights[bucket] = 0.0 if remaining < epsilon else remaining
        self._update_min_max()

    def _update_min_max(self) -> None:
        epsilon = self.layout.epsilon
        last = self.layout.num_buckets - 1
        while self.weights[self.min_bucket] < epsilon and self.min_bucket < last:
            self.min_bucket += 1
        while self.weights[self.max_bucket] < epsilon and self.max_bucket > 0:
            self.max_bucket -= 1

    def merge(self, other: DecayingHistogram) -> None:
        """Add other's weights into this histogram, first aligning both references to the later one.

        Like upstream, other's reference may be moved (its weights rescaled) by the alignment.
        """
        _check_compatible(self.layout, self.half_life_ns, other.layout, other.half_life_ns)
        if self.reference_ns < other.reference_ns:
            self.shift_reference(other.reference_ns)
        elif other.reference_ns < self.reference_ns:
            other.shift_reference(self.reference_ns)
        for bucket in range(other.min_bucket, other.max_bucket + 1):
            self.weights[bucket] += other.weights[bucket]
        self.total_weight += other.total_weight
        self.min_bucket = min(self.min_bucket, other.min_bucket)
        self.max_bucket = max(self.max_bucket, other.max_bucket)

    # -- queries -------------------------------------------------------------------------------

    def is_empty(self) -> bool:
        """True when no bucket holds at least epsilon of weight."""
        return bool(self.weights[self.min_bucket] < self.layout.epsilon)

    def percentile(self, percentile: float) -> float:
        """End of the first bucket where the cumulative weight reaches percentile * total.

        0 for an empty histogram; the last bucket returns its start.
        """
        if self.is_empty():
            return 0.0
        threshold = percentile * self.total_weight
        partial = 0.0
        bucket = self.min_bucket
        while bucket < self.max_bucket:
            partial += float(self.weights[bucket])
            if partial >= threshold:
                break
            bucket += 1
        return float(self.layout.percentile_values[bucket])

    def copy(self) -> DecayingHistogram:
        """An independent copy."""
        clone = DecayingHistogram(self.layout, self.half_life_ns)
        clone.weights = self.weights.copy()
        clone.total_weight = self.total_weight
        clone.min_bucket = self.min_bucket
        clone.max_bucket = self.max_bucket
        clone.reference_ns = self.reference_ns
        return clone

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DecayingHistogram):
            return NotImplemented
        return (
            self.layout == other.layout
            and self.half_life_ns == other.half_life_ns
            and self.reference_ns == other.reference_ns
            and self.total_weight == other.total_weight
            and self.min_bucket == other.min_bucket
            and self.max_bucket == other.max_bucket
            and bool(np.array_equal(self.weights, other.weights))
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        nonzero = int(np.count_nonzero(self.weights))
        return (
            f"DecayingHistogram(total_weight={self.total_weight!r}, buckets={nonzero}, "
            f"min={self.min_bucket}, max={self.max_bucket}, reference_ns={self.reference_ns})"
        )

    # -- serialization -------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Compact form: a header, then (bucket, weight) for each bucket with a non-zero weight."""
        return _encode(
            layout=self.layout,
            half_life_ns=self.half_life_ns,
            reference_ns=self.reference_ns,
            total_weight=self.total_weight,
            min_bucket=self.min_bucket,
            max_bucket=self.max_bucket,
            weights=self.weights,
        )

    @classmethod
    def from_bytes(
        cls, data: bytes, layout: HistogramLayout, half_life_ns: int
    ) -> DecayingHistogram:
        """Inverse of `to_bytes`; raises LayoutMismatchError if the layout or half-life differ."""
        decoded = _decode(data, layout, half_life_ns)
        histogram = cls(layout, half_life_ns)
        histogram.reference_ns = decoded.reference_ns
        histogram.total_weight = decoded.total_weight
        histogram.min_bucket = decoded.min_bucket
        histogram.max_bucket = decoded.max_bucket
        histogram.weights = decoded.weights
        return histogram


@dataclass
class _Decoded:
    reference_ns: int
    total_weight: float
    min_bucket: int
    max_bucket: int
    weights: FloatArray
    size: int


def _encode(
    *,
    layout: HistogramLayout,
    half_life_ns: int,
    reference_ns: int,
    total_weight: float,
    min_bucket: int,
    max_bucket: int,
    weights: FloatArray,
) -> bytes:
    nonzero = np.flatnonzero(weights)
    header = _HEADER.pack(
        _MAGIC,
        layout.max_value,
        layout.first_bucket_size,
        layout.ratio,
        layout.epsilon,
        half_life_ns,
        reference_ns,
        total_weight,
        min_bucket,
        max_bucket,
        len(nonzero),
    )
    body = b"".join(_BUCKET.pack(int(b), float(weights[b])) for b in nonzero)
    return header + body


def _decode(data: bytes, layout: HistogramLayout, half_life_ns: int) -> _Decoded:
    if len(data) < _HEADER.size or data[:3] != _MAGIC:
        raise ValueError("not a serialized histogram (bad header)")
    (_, max_value, first, ratio, epsilon, stored_half_life, reference_ns, total, lo, hi, count) = (
        _HEADER.unpack_from(data)
    )
    try:
        stored_layout = HistogramLayout(max_value, first, ratio, epsilon)
    except ValueError as error:
        raise ValueError(f"serialized histogram has an invalid layout: {error}") from None
    _check_compatible(layout, half_life_ns, stored_layout, stored_half_life)
    size = _HEADER.size + count * _BUCKET.size
    if len(data) < size:
        raise ValueError("serialized histogram is truncated")
    n = layout.num_buckets
    weights = np.zeros(n, dtype=np.float64)
    for bucket, weight in _BUCKET.iter_unpack(data[_HEADER.size : size]):
        if bucket >= n:
            raise ValueError(f"serialized histogram has bucket {bucket} beyond the last ({n - 1})")
        weights[bucket] = weight
    if not (0 <= lo < n and 0 <= hi < n):
        raise ValueError(f"serialized histogram has min/max bucket {lo}/{hi} outside 0..{n - 1}")
    return _Decoded(reference_ns, total, lo, hi, weights, size)


@dataclass
class HistogramArrays:
    """Many decaying histograms of one layout and half-life, as dense arrays (one row each).

    `weights` has shape (n, num_buckets); `total_weight` and `reference_ns` have shape (n,).
    Min and max buckets are not stored: in every histogram built by upstream's operations they
    are the lowest and highest buckets holding at least epsilon (see `bucket_bounds`).
    """

    layout: HistogramLayout
    half_life_ns: int
    weights: FloatArray
    total_weight: FloatArray
    reference_ns: Int64Array

    @classmethod
    def empty(cls, layout: HistogramLayout, half_life_ns: int, n: int = 0) -> HistogramArrays:
        """n empty histograms."""
        return cls(
            layout,
            half_life_ns,
            np.zeros((n, layout.num_buckets), dtype=np.float64),
            np.zeros(n, dtype=np.float64),
            np.full(n, UNSET_NS, dtype=np.int64),
        )

    def __len__(self) -> int:
        return int(self.total_weight.shape[0])

    def bucket_bounds(self) -> tuple[Int64Array, Int64Array]:
        """(min_bucket, max_bucket) per histogram, as upstream tracks them."""
        significant = self.weights >= self.layout.epsilon
        any_significant = significant.any(axis=1)
        last = self.layout.num_buckets - 1
        lowest = np.where(any_significant, significant.argmax(axis=1), last)
        highest = np.where(any_significant, last - significant[:, ::-1].argmax(axis=1), 0)
        return lowest.astype(np.int64), highest.astype(np.int64)

    def is_empty(self) -> npt.NDArray[np.bool_]:
        """Per histogram: no bucket holds at least epsilon."""
        significant = np.asarray((self.weights >= self.layout.epsilon).any(axis=1))
        result: npt.NDArray[np.bool_] = ~significant
        return result

    def percentile(self, percentile: float) -> FloatArray:
        """`DecayingHistogram.percentile` of every histogram at once."""
        return self.walk().percentile(percentile)

    def walk(self) -> PercentileWalk:
        """Cumulative weights of every histogram, to answer several percentiles cheaply."""
        lowest, highest = self.bucket_bounds()
        columns = np.arange(self.layout.num_buckets)
        walked = (columns >= lowest[:, None]) & (columns < highest[:, None])
        # Upstream sums from the min bucket and stops before the max bucket; the zeros outside
        # leave those partial sums (and their rounding) unchanged.
        partial = np.cumsum(np.where(walked, self.weights, 0.0), axis=1)
        return PercentileWalk(
            self.layout, partial, self.total_weight.copy(), lowest, highest, self.is_empty()
        )

    def row(self, index: int) -> DecayingHistogram:
        """Histogram `index` as a scalar histogram (a copy)."""
        histogram = DecayingHistogram(self.layout, self.half_life_ns)
        histogram.weights = self.weights[index].copy()
        histogram.total_weight = float(self.total_weight[index])
        histogram.reference_ns = int(self.reference_ns[index])
        lowest, highest = _bounds_of(histogram.weights, self.layout)
        histogram.min_bucket, histogram.max_bucket = lowest, highest
        return histogram

    def set_row(self, index: int, histogram: DecayingHistogram) -> None:
        """Overwrite histogram `index` with a scalar histogram of the same layout."""
        _check_compatible(self.layout, self.half_life_ns, histogram.layout, histogram.half_life_ns)
        self.weights[index] = histogram.weights
        self.total_weight[index] = histogram.total_weight
        self.reference_ns[index] = histogram.reference_ns

    @classmethod
    def from_histograms(
        cls, layout: HistogramLayout, half_life_ns: int, histograms: list[DecayingHistogram]
    ) -> HistogramArrays:
        """Stack scalar histograms into arrays."""
        arrays = cls.empty(layout, half_life_ns, len(histograms))
        for index, histogram in enumerate(histograms):
            arrays.set_row(index, histogram)
        return arrays

    def take(self, indices: Int64Array) -> HistogramArrays:
        """A new HistogramArrays holding the given rows, in that order."""
        return HistogramArrays(
            self.layout,
            self.half_life_ns,
            self.weights[indices],
            self.total_weight[indices],
            self.reference_ns[indices],
        )

    def extend(self, n: int) -> None:
        """Append n empty histograms."""
        more = HistogramArrays.empty(self.layout, self.half_life_ns, n)
        self.weights = np.concatenate([self.weights, more.weights])
        self.total_weight = np.concatenate([self.total_weight, more.total_weight])
        self.reference_ns = np.concatenate([self.reference_ns, more.reference_ns])

    def merge(self, other: HistogramArrays, into: Int64Array, source: Int64Array) -> None:
        """Merge row source[i] of other into row into[i] of self, in order, as upstream merges.

        Each pair aligns both references to the later one first (other is not modified).
        """
        _check_compatible(self.layout, self.half_life_ns, other.layout, other.half_life_ns)
        into = np.asarray(into, dtype=np.int64)
        source = np.asarray(source, dtype=np.int64)
        # Merges into the same row must happen one after the other: do them in rounds.
        occurrence = np.zeros(into.shape[0], dtype=np.int64)
        if into.shape[0]:
            order = np.argsort(into, kind="stable")
            sorted_into = into[order]
            starts = np.flatnonzero(np.r_[True, sorted_into[1:] != sorted_into[:-1]])
            run = np.arange(into.shape[0]) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
            occurrence[order] = run
        for round_index in range(int(occurrence.max(initial=-1)) + 1):
            chosen = occurrence == round_index
            self._merge_unique(other.take(source[chosen]), into[chosen])

    def _merge_unique(self, other: HistogramArrays, into: Int64Array) -> None:
        mine = self.reference_ns[into]
        theirs = other.reference_ns
        behind = mine < theirs
        self.move_references(into[behind], theirs[behind])
        ahead = theirs < mine
        other.move_references(np.flatnonzero(ahead), mine[ahead])
        lowest, highest = other.bucket_bounds()
        columns = np.arange(self.layout.num_buckets)
        inside = (columns >= lowest[:, None]) & (columns <= highest[:, None])
        self.weights[into] = self.weights[into] + np.where(inside, other.weights, 0.0)
        self.total_weight[into] = self.total_weight[into] + other.total_weight

    def move_references(self, rows: Int64Array, new_reference_ns: Int64Array) -> None:
        """Move the reference of `rows` (already rounded), rescaling weights by powers of two.

        Like upstream, only buckets between the min and max bucket are rescaled.
        """
        factor = reference_scale(self.reference_ns[rows], new_reference_ns, self.half_life_ns)
        block = self.take(rows)
        lowest, highest = block.bucket_bounds()
        columns = np.arange(self.layout.num_buckets)
        inside = (columns >= lowest[:, None]) & (columns <= highest[:, None])
        self.weights[rows] = np.where(inside, block.weights * factor[:, None], block.weights)
        self.total_weight[rows] = block.total_weight * factor
        self.reference_ns[rows] = new_reference_ns

    def row_bytes(self, index: int) -> bytes:
        """Serialized histogram `index` (same format as `DecayingHistogram.to_bytes`)."""
        lowest, highest = _bounds_of(self.weights[index], self.layout)
        return _encode(
            layout=self.layout,
            half_life_ns=self.half_life_ns,
            reference_ns=int(self.reference_ns[index]),
            total_weight=float(self.total_weight[index]),
            min_bucket=lowest,
            max_bucket=highest,
            weights=self.weights[index],
        )

    def load_row(self, index: int, data: bytes) -> int:
        """Load a serialized histogram into row `index`; returns the number of bytes consumed."""
        decoded = _decode(data, self.layout, self.half_life_ns)
        self.weights[index] = decoded.weights
        self.total_weight[index] = decoded.total_weight
        self.reference_ns[index] = decoded.reference_ns
        return decoded.size


@dataclass(frozen=True)
class PercentileWalk:
    """Cumulative bucket weights of many histograms, as upstream's percentile walk sums them."""

    layout: HistogramLayout
    partial: FloatArray
    total_weight: FloatArray
    lowest: Int64Array
    highest: Int64Array
    empty: npt.NDArray[np.bool_]

    def percentile(self, percentile: float | FloatArray) -> FloatArray:
        """Per histogram: end of the first bucket whose cumulative weight reaches the threshold
        (one percentile for all, or one per histogram)."""
        threshold = percentile * self.total_weight
        # Partial sums never decrease, so counting those below the threshold finds the bucket.
        below = np.count_nonzero(self.partial < threshold[:, None], axis=1)
        bucket = np.clip(below, self.lowest, self.highest)
        values = self.layout.percentile_values[bucket]
        result: FloatArray = np.where(self.empty, 0.0, values)
        return result


def reference_scale(old_ns: Int64Array, new_ns: Int64Array, half_life_ns: int) -> FloatArray:
    """2 ** round((old - new) / half_life), or 0 where old is unset (`reference_exponent`)."""
    unset = old_ns == UNSET_NS
    delta = np.where(unset, 0, old_ns - new_ns).astype(np.float64) / float(half_life_ns)
    exponent = np.floor(delta + 0.5)
    with np.errstate(under="ignore"):
        scale = np.ldexp(1.0, np.clip(exponent, -4000, 4000).astype(np.int32))
    result: FloatArray = np.where(unset, 0.0, scale)
    return result


def _bounds_of(weights: FloatArray, layout: HistogramLayout) -> tuple[int, int]:
    significant = np.flatnonzero(weights >= layout.epsilon)
    if len(significant) == 0:
        return layout.num_buckets - 1, 0
    return int(significant[0]), int(significant[-1])


def serialized_size(data: bytes) -> int:
    """Length of the serialized histogram at the start of data."""
    if len(data) < _HEADER.size or data[:3] != _MAGIC:
        raise ValueError("not a serialized histogram (bad header)")
    count = _HEADER.unpack_from(data)[-1]
    return int(_HEADER.size + count * _BUCKET.size)
