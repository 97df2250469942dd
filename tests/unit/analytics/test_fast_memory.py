"""Memory ingestion chunk by chunk equals the scalar path, whatever the chunk size."""

from __future__ import annotations

from collections import Counter
from unittest import mock

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics import ingest_memory
from analytics.ingest import ingest_samples
from analytics.model_params import ModelParams
from analytics.scalar_model import ScalarModel
from analytics.store import AggregateStore
from analytics.usage import prepare_samples

from .test_ingest_parity import assert_identical, run_both
from .traces import MIB, mixed_trace, model_params, sample_frame, sample_rows


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(sample_rows(), min_size=1, max_size=60),
    model_params,
    st.lists(st.integers(0, 60), max_size=3),
    st.integers(1, 9),
)
def test_small_chunks_equal_scalar(
    rows: list[dict[str, object]], model: ModelParams, cuts: list[int], chunk: int
) -> None:
    frame = sample_frame(rows).sort("timestamp", maintain_order=True)
    times = frame["timestamp"]
    safe = [c for c in cuts if 0 < c < frame.height and times[c] != times[c - 1]]
    with mock.patch.object(ingest_memory, "_CHUNK", chunk):
        scalar, vector, scalar_skipped, vector_skipped = run_both(frame, model, safe)
    assert_identical(scalar, vector)
    assert scalar_skipped == vector_skipped


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
@pytest.mark.parametrize("growing", [False, True])
@pytest.mark.parametrize("value_bits", [47, 60])
def test_chunks_on_a_realistic_trace(chunk: int, growing: bool, value_bits: int) -> None:
    # Without OOM kills (those take the general path); growing memory raises a peak with
    # almost every sample, carried across chunk boundaries.
    frame = mixed_trace(4, days=2, step_minutes=5).drop("oom")
    if growing:
        frame = frame.with_columns(
            pl.Series("memory", (200 * MIB + np.arange(frame.height) * 4096).astype(float))
        )
    params = ModelParams(memory_aggregation_interval_s=3600.0)
    # 60 value bits leave room for interval indices below 3 only: most chunks are gathered
    # without packing.
    with (
        mock.patch.object(ingest_memory, "_CHUNK", chunk),
        mock.patch.object(ingest_memory, "_VALUE_BITS", value_bits),
    ):
        scalar, vector, scalar_skipped, vector_skipped = run_both(frame, params, [700])
    assert_identical(scalar, vector)
    assert scalar_skipped == vector_skipped


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(sample_rows(), min_size=2, max_size=60),
    model=model_params,
    end=st.integers(1, 60),
    back=st.integers(0, 60),
    chunk=st.integers(1, 9),
    with_kills=st.booleans(),
)
def test_overlapping_batches_equal_scalar(
    *,
    rows: list[dict[str, object]],
    model: ModelParams,
    end: int,
    back: int,
    chunk: int,
    with_kills: bool,
) -> None:
    # The second batch re-sends some of the first one's samples: they are dropped (and the
    # chunked path hands such a batch to the general one) exactly as sample by sample.
    frame = sample_frame(rows).sort("timestamp", maintain_order=True)
    if not with_kills:
        frame = frame.drop("oom")
    end = min(end, frame.height)
    first, late = frame[:end], frame[max(end - back, 0) :]
    scalar = ScalarModel(model)
    expected = scalar.ingest(prepare_samples(first))
    store = AggregateStore.empty(model)
    with mock.patch.object(ingest_memory, "_CHUNK", chunk):
        actual = ingest_samples(store, prepare_samples(first))
        if late.height:
            expected += scalar.ingest(prepare_samples(late))
            actual += ingest_samples(store, prepare_samples(late))
    assert_identical(scalar.to_store(), store)
    assert actual == expected


@pytest.mark.parametrize("chunk", [5, 32768])
def test_late_usage_batch_drops_what_the_scalar_path_drops(chunk: int) -> None:
    frame = mixed_trace(9, days=2, step_minutes=10).drop("oom")
    ordered = frame.sort("timestamp", maintain_order=True)
    first, late = ordered[:800], ordered[600:]
    scalar = ScalarModel()
    expected = scalar.ingest(prepare_samples(first)) + scalar.ingest(prepare_samples(late))
    store = AggregateStore.empty()
    with mock.patch.object(ingest_memory, "_CHUNK", chunk):
        actual = ingest_samples(store, prepare_samples(first)) + ingest_samples(
            store, prepare_samples(late)
        )
    assert_identical(scalar.to_store(), store)
    assert actual == expected
    assert actual["memory_older"] > 0


def test_a_resent_batch_whose_containers_interleave() -> None:
    # The second container's first re-sent sample is older than its last one, the first
    # container's is not: only the former is dropped (a case found by the property above).
    rows = [
        {"minute": 0, "workload": "w2", "container": "app"},
        {"minute": 1, "workload": "w1", "container": "side"},
        {"minute": 2, "workload": "w1", "container": "side"},
    ]
    frame = sample_frame(
        [
            {"pod": "a", "cpu": 0.0, "memory_mib": 0, "oom": False, "request_mib": None} | r
            for r in rows
        ]
    ).drop("oom")
    scalar = ScalarModel()
    expected = scalar.ingest(prepare_samples(frame)) + scalar.ingest(prepare_samples(frame))
    store = AggregateStore.empty()
    actual = ingest_samples(store, prepare_samples(frame)) + ingest_samples(
        store, prepare_samples(frame)
    )
    assert_identical(scalar.to_store(), store)
    assert actual == expected == Counter({"cpu_not_newer": 3, "memory_older": 1})


def test_a_resent_batch_with_a_kill_in_another_container() -> None:
    # One container has an OOM kill (general path), the other re-sends an old sample (which
    # the chunked path cannot drop): the whole batch takes the general path.
    rows = [
        {"minute": 0, "workload": "w2", "container": "app", "oom": False},
        {"minute": 1, "workload": "w1", "container": "side", "oom": False},
        {"minute": 2, "workload": "w1", "container": "side", "oom": False},
        {"minute": 3, "workload": "w2", "container": "app", "oom": True},
    ]
    frame = sample_frame(
        [{"pod": "a", "cpu": 0.1, "memory_mib": 300, "request_mib": 512} | r for r in rows]
    )
    scalar = ScalarModel()
    store = AggregateStore.empty()
    expected = scalar.ingest(prepare_samples(frame[:3])) + scalar.ingest(prepare_samples(frame[1:]))
    actual = ingest_samples(store, prepare_samples(frame[:3])) + ingest_samples(
        store, prepare_samples(frame[1:])
    )
    assert_identical(scalar.to_store(), store)
    assert actual == expected
    assert actual["memory_older"] == 1
