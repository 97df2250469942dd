"""Decaying exponential histograms: layout, decay, percentiles, merge, serialization."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.histogram import DecayingHistogram, HistogramArrays, LayoutMismatchError
from analytics.histogram_layout import CPU_LAYOUT, EPSILON, MEMORY_LAYOUT, HistogramLayout

HOUR = 3600 * 10**9
DAY = 24 * HOUR
T0 = 1_709_285_400 * 10**9  # 2024-03-01T09:30:00Z


def cpu_histogram() -> DecayingHistogram:
    return DecayingHistogram(CPU_LAYOUT, DAY)


def bucket(value: float, layout: HistogramLayout = CPU_LAYOUT) -> int:
    return int(layout.bucket_index(np.array([value]))[0])


def test_stock_layouts_have_176_buckets() -> None:
    assert CPU_LAYOUT.num_buckets == 176
    assert MEMORY_LAYOUT.num_buckets == 176
    assert CPU_LAYOUT.bucket_starts[1] == 0.01
    assert MEMORY_LAYOUT.bucket_starts[1] == 1e7
    assert 1020 < CPU_LAYOUT.bucket_starts[-1] < 1022


def test_bucket_index() -> None:
    assert bucket(0.0) == 0
    assert bucket(0.0099) == 0
    assert bucket(0.01) == 1
    assert bucket(0.1) == 8
    assert bucket(1e6) == 175
    assert CPU_LAYOUT.percentile_values[8] == pytest.approx(0.11027, abs=1e-5)


@given(st.floats(min_value=0.0, max_value=2000.0))
def test_value_lies_in_its_bucket(value: float) -> None:
    index = bucket(value)
    starts = CPU_LAYOUT.bucket_starts
    assert starts[index] <= value * (1 + 1e-12)
    if index < CPU_LAYOUT.num_buckets - 1:
        assert value < starts[index + 1] * (1 + 1e-12)


def test_empty_histogram() -> None:
    histogram = cpu_histogram()
    assert histogram.is_empty()
    assert histogram.percentile(0.9) == 0.0


def test_percentile_returns_bucket_end() -> None:
    histogram = cpu_histogram()
    for minute in range(10):
        histogram.add_sample(0.1, 0.1, T0 + minute * 60 * 10**9)
    histogram.add_sample(0.5, 0.1, T0 + 11 * 60 * 10**9)
    assert histogram.percentile(0.5) == CPU_LAYOUT.percentile_values[8]
    assert histogram.percentile(1.0) == CPU_LAYOUT.percentile_values[bucket(0.5)]


def test_last_bucket_returns_its_start() -> None:
    histogram = cpu_histogram()
    histogram.add_sample(5000.0, 1.0, T0)
    assert histogram.percentile(0.5) == CPU_LAYOUT.bucket_starts[-1]


def test_newer_samples_weigh_more_by_half_life() -> None:
    histogram = cpu_histogram()
    histogram.add_sample(0.1, 1.0, T0)
    histogram.add_sample(1.0, 1.0, T0 + DAY)
    old, new = histogram.weights[bucket(0.1)], histogram.weights[bucket(1.0)]
    assert new / old == pytest.approx(2.0, rel=1e-12)


def test_reference_is_a_rounded_multiple_and_shifts_after_100_half_lives() -> None:
    histogram = cpu_histogram()
    histogram.add_sample(0.1, 1.0, T0)
    assert histogram.reference_ns == (T0 // DAY) * DAY  # 09:30 rounds down to midnight
    first = histogram.reference_ns
    histogram.add_sample(0.1, 1.0, first + 100 * DAY)
    assert histogram.reference_ns == first
    histogram.add_sample(1.0, 1.0, first + 100 * DAY + HOUR)
    assert histogram.reference_ns == first + 100 * DAY
    # After the shift the weights are rescaled: a sample 100 days old is below epsilon.
    assert histogram.weights[bucket(1.0)] == pytest.approx(2 ** (1 / 24), rel=1e-12)
    assert histogram.min_bucket == bucket(0.1)


def test_subtract_snaps_to_zero_and_moves_bounds() -> None:
    histogram = DecayingHistogram(MEMORY_LAYOUT, DAY)
    histogram.add_sample(2e8, 1.0, T0)
    histogram.add_sample(5e8, 1.0, T0)
    histogram.subtract_sample(2e8, 1.0, T0)
    assert histogram.weights[bucket(2e8, MEMORY_LAYOUT)] == 0.0
    assert histogram.min_bucket == histogram.max_bucket == bucket(5e8, MEMORY_LAYOUT)
    histogram.subtract_sample(5e8, 1.0, T0)
    assert histogram.is_empty()
    assert histogram.total_weight == 0.0


def test_merge_aligns_references_to_the_later_one() -> None:
    early, late = cpu_histogram(), cpu_histogram()
    early.add_sample(0.1, 1.0, T0)
    late.add_sample(1.0, 1.0, T0 + 3 * DAY)
    early.merge(late)
    assert early.reference_ns == late.reference_ns
    assert early.weights[bucket(1.0)] / early.weights[bucket(0.1)] == pytest.approx(8.0)
    assert early.min_bucket == bucket(0.1)
    assert early.max_bucket == bucket(1.0)


def test_merge_refuses_another_layout() -> None:
    with pytest.raises(LayoutMismatchError, match="bucket layout mismatch"):
        cpu_histogram().merge(DecayingHistogram(MEMORY_LAYOUT, DAY))
    with pytest.raises(LayoutMismatchError, match="half-life mismatch"):
        cpu_histogram().merge(DecayingHistogram(CPU_LAYOUT, HOUR))


samples = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=2000.0),
        st.integers(min_value=0, max_value=200 * DAY),
    ),
    max_size=40,
)


def fed(values: list[tuple[float, int]]) -> DecayingHistogram:
    histogram = cpu_histogram()
    for value, offset in sorted(values, key=lambda item: item[1]):
        histogram.add_sample(value, 0.1, T0 + offset)
    return histogram


@given(samples)
def test_serialization_round_trips_exactly(values: list[tuple[float, int]]) -> None:
    histogram = fed(values)
    data = histogram.to_bytes()
    assert DecayingHistogram.from_bytes(data, CPU_LAYOUT, DAY) == histogram
    assert len(data) == 65 + 10 * int(np.count_nonzero(histogram.weights))


def test_loading_another_layout_is_a_clear_error() -> None:
    data = fed([(0.5, 0)]).to_bytes()
    with pytest.raises(LayoutMismatchError) as raised:
        DecayingHistogram.from_bytes(data, MEMORY_LAYOUT, DAY)
    assert "first bucket 0.01" in str(raised.value)
    assert "first bucket 1e+07" in str(raised.value)
    with pytest.raises(ValueError, match="bad header"):
        DecayingHistogram.from_bytes(b"garbage" * 20, CPU_LAYOUT, DAY)


@settings(max_examples=50)
@given(st.lists(samples, min_size=1, max_size=6), st.floats(min_value=0.0, max_value=1.0))
def test_arrays_agree_with_scalar_histograms(
    feeds: list[list[tuple[float, int]]], percentile: float
) -> None:
    histograms = [fed(values) for values in feeds]
    arrays = HistogramArrays.from_histograms(CPU_LAYOUT, DAY, histograms)
    lowest, highest = arrays.bucket_bounds()
    assert lowest.tolist() == [h.min_bucket for h in histograms]
    assert highest.tolist() == [h.max_bucket for h in histograms]
    assert arrays.percentile(percentile).tolist() == [h.percentile(percentile) for h in histograms]
    assert arrays.is_empty().tolist() == [h.is_empty() for h in histograms]
    assert [arrays.row_bytes(i) for i in range(len(histograms))] == [
        h.to_bytes() for h in histograms
    ]


@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 5), st.integers(0, 300)),
        max_size=40,
    )
)
def test_min_max_bounds_are_the_significant_buckets(ops: list[tuple[bool, int, int]]) -> None:
    # Peaks added and later removed, with the reference moving now and then: upstream's
    # incremental min/max bookkeeping always equals "lowest/highest bucket >= epsilon".
    histogram = DecayingHistogram(MEMORY_LAYOUT, HOUR)
    live: list[tuple[float, int]] = []
    for remove, size, hour in ops:
        if remove and live:
            value, t_ns = live.pop(size % len(live))
            histogram.subtract_sample(value, 1.0, t_ns)
        else:
            peak = (value := 1e7 * 1.5**size, T0 + hour * HOUR)
            histogram.add_sample(value, 1.0, peak[1])
            live.append(peak)
        significant = np.flatnonzero(histogram.weights >= EPSILON)
        if significant.size:
            assert (histogram.min_bucket, histogram.max_bucket) == (
                significant[0],
                significant[-1],
            )
        else:
            assert histogram.is_empty()


@settings(max_examples=40)
@given(
    st.lists(samples, min_size=1, max_size=4),
    st.lists(samples, min_size=1, max_size=4),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=6),
)
def test_array_merge_equals_scalar_merges(
    targets: list[list[tuple[float, int]]],
    sources: list[list[tuple[float, int]]],
    pairs: list[tuple[int, int]],
) -> None:
    scalar_targets = [fed(values) for values in targets]
    scalar_sources = [fed(values) for values in sources]
    arrays = HistogramArrays.from_histograms(CPU_LAYOUT, DAY, scalar_targets)
    other = HistogramArrays.from_histograms(CPU_LAYOUT, DAY, scalar_sources)
    into = [i % len(targets) for i, _ in pairs]
    source = [j % len(sources) for _, j in pairs]
    for i, j in zip(into, source, strict=True):
        scalar_targets[i].merge(scalar_sources[j].copy())
    arrays.merge(other, np.array(into, dtype=np.int64), np.array(source, dtype=np.int64))
    for index, histogram in enumerate(scalar_targets):
        assert arrays.row(index) == histogram


def test_array_merge_refuses_another_layout() -> None:
    cpu = HistogramArrays.empty(CPU_LAYOUT, DAY, 1)
    memory = HistogramArrays.empty(MEMORY_LAYOUT, DAY, 1)
    with pytest.raises(LayoutMismatchError):
        cpu.merge(memory, np.array([0]), np.array([0]))
