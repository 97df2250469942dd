"""The vectorized path equals the scalar path bit for bit, in one batch or several."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.ingest import ingest_samples
from analytics.model_params import ModelParams
from analytics.scalar_model import ScalarModel
from analytics.store import AggregateStore
from analytics.usage import prepare_samples

from .traces import mixed_trace, model_params, sample_frame, sample_rows

START = dt.datetime(2024, 3, 1, 9, 30)
MIB = 1024 * 1024


def assert_identical(expected: AggregateStore, actual: AggregateStore) -> None:
    """Same aggregates and containers (matched by key), every number bit for bit."""
    rows = {actual.aggregate_key(i): i for i in range(actual.n_aggregates)}
    assert sorted(rows) == sorted(expected.aggregate_key(i) for i in range(expected.n_aggregates))
    for i in range(expected.n_aggregates):
        j = rows[expected.aggregate_key(i)]
        for name in ("cpu", "memory"):
            mine, theirs = getattr(expected, name), getattr(actual, name)
            assert mine.weights[i].tobytes() == theirs.weights[j].tobytes(), name
            assert mine.total_weight[i] == theirs.total_weight[j], name
            assert mine.reference_ns[i] == theirs.reference_ns[j], name
        for name in (
            "first_sample_start_ns",
            "last_sample_start_ns",
            "total_samples_count",
            "creation_ns",
        ):
            assert getattr(expected, name)[i] == getattr(actual, name)[j], name
    pairs = expected.container_keys.with_row_index("a").join(
        actual.container_keys.with_row_index("b"), on=expected.container_keys.columns
    )
    assert pairs.height == expected.n_containers == actual.n_containers
    a, b = pairs["a"].to_numpy(), pairs["b"].to_numpy()
    for name in (
        "last_cpu_sample_start_ns",
        "window_end_ns",
        "last_memory_sample_start_ns",
        "memory_peak_bytes",
        "oom_peak_bytes",
    ):
        assert np.array_equal(getattr(expected, name)[a], getattr(actual, name)[b]), name


def run_both(
    frame: pl.DataFrame, params: ModelParams, cuts: list[int]
) -> tuple[AggregateStore, AggregateStore, Counter[str], Counter[str]]:
    scalar = ScalarModel(params)
    scalar_skipped = scalar.ingest(prepare_samples(frame))
    store = AggregateStore.empty(params)
    vector_skipped: Counter[str] = Counter()
    ordered = frame.sort("timestamp", maintain_order=True)
    bounds = [0, *sorted(set(cuts)), ordered.height]
    for lo, hi in itertools.pairwise(bounds):
        part = ordered[lo:hi]
        if part.height:
            vector_skipped.update(ingest_samples(store, prepare_samples(part)))
    return scalar.to_store(), store, scalar_skipped, vector_skipped


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(sample_rows(), min_size=1, max_size=60),
    model_params,
    st.lists(st.integers(0, 60), max_size=3),
)
def test_vectorized_equals_scalar(
    rows: list[dict[str, object]], model: ModelParams, cuts: list[int]
) -> None:
    frame = sample_frame(rows).sort("timestamp", maintain_order=True)
    times = frame["timestamp"]
    # Only cut between different timestamps, like batches of a live loop.
    safe = [c for c in cuts if 0 < c < frame.height and times[c] != times[c - 1]]
    scalar, vector, scalar_skipped, vector_skipped = run_both(frame, model, safe)
    assert_identical(scalar, vector)
    assert scalar_skipped == vector_skipped


def test_vectorized_equals_scalar_on_a_realistic_trace() -> None:
    frame = mixed_trace(3, days=2, step_minutes=5)
    scalar, vector, scalar_skipped, vector_skipped = run_both(frame, ModelParams(), [900])
    assert_identical(scalar, vector)
    assert scalar_skipped == vector_skipped


def test_long_history_moves_references_identically() -> None:
    # 120 days at a 1-day half-life: every histogram's reference moves once.
    frame = mixed_trace(5, days=120, step_minutes=240)
    scalar, vector, _, _ = run_both(frame, ModelParams(), [])
    assert_identical(scalar, vector)
    assert (vector.cpu.reference_ns > vector.first_sample_start_ns + 99 * 86400 * 10**9).all()


def test_late_batches_drop_what_the_scalar_path_drops() -> None:
    # A second batch that reaches back before the first one ended: stale CPU and memory samples
    # are dropped and counted, a recent-enough OOM kill is kept, exactly as sample by sample.
    frame = mixed_trace(9, days=2, step_minutes=10).with_columns(
        pl.Series("oom", [i % 97 == 0 for i in range(1152)])
    )
    ordered = frame.sort("timestamp", maintain_order=True)
    first, late = ordered[:800], ordered[600:]
    scalar = ScalarModel()
    expected = scalar.ingest(prepare_samples(first)) + scalar.ingest(prepare_samples(late))
    store = AggregateStore.empty()
    actual = ingest_samples(store, prepare_samples(first)) + ingest_samples(
        store, prepare_samples(late)
    )
    assert_identical(scalar.to_store(), store)
    assert actual == expected
    assert actual["cpu_not_newer"] == 200
    assert actual["memory_older"] > 0
