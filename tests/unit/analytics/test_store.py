"""AggregateStore bookkeeping: forgetting workloads, finding a workload's rows."""

from __future__ import annotations

import numpy as np
import polars as pl

from analytics.ingest import ingest_samples
from analytics.store import AggregateStore
from analytics.usage import prepare_samples

from .traces import mixed_trace


def _store(frame: pl.DataFrame) -> AggregateStore:
    store = AggregateStore.empty()
    ingest_samples(store, prepare_samples(frame))
    return store


def _three_workloads() -> pl.DataFrame:
    return pl.concat(
        [
            mixed_trace(seed, days=1).with_columns(pl.lit(name).alias("workload"))
            for seed, name in enumerate(("api", "billing", "cart"))
        ]
    )


def _assert_same(left: AggregateStore, right: AggregateStore) -> None:
    assert left.aggregate_keys.equals(right.aggregate_keys)
    assert left.container_keys.equals(right.container_keys)
    for name in (
        "first_sample_start_ns",
        "last_sample_start_ns",
        "total_samples_count",
        "creation_ns",
        "container_aggregate",
        "last_cpu_sample_start_ns",
        "window_end_ns",
        "last_memory_sample_start_ns",
        "memory_peak_bytes",
        "oom_peak_bytes",
    ):
        np.testing.assert_array_equal(getattr(left, name), getattr(right, name), err_msg=name)
    for resource in ("cpu", "memory"):
        a, b = getattr(left, resource), getattr(right, resource)
        np.testing.assert_array_equal(a.weights, b.weights)
        np.testing.assert_array_equal(a.total_weight, b.total_weight)
        np.testing.assert_array_equal(a.reference_ns, b.reference_ns)


def test_forgetting_a_workload_leaves_the_others_as_if_it_never_was() -> None:
    frame = _three_workloads()
    store = _store(frame)
    keep = (store.aggregate_keys["workload"] != "billing").to_numpy()
    store.keep_aggregates(keep)
    _assert_same(store, _store(frame.filter(pl.col("workload") != "billing")))
    # The kept state goes on ingesting like a store that never had the workload.
    later = mixed_trace(7, days=1).with_columns(
        pl.col("timestamp") + pl.duration(days=1), pl.lit("cart").alias("workload")
    )
    reference = _store(frame.filter(pl.col("workload") != "billing"))
    ingest_samples(store, prepare_samples(later))
    ingest_samples(reference, prepare_samples(later))
    _assert_same(store, reference)


def test_workload_rows() -> None:
    store = _store(_three_workloads())
    rows = store.workload_rows("prod", "shop", "cart")
    assert store.aggregate_keys[rows]["workload"].unique().to_list() == ["cart"]
    assert sorted(store.aggregate_keys[rows]["container"].to_list()) == ["app", "proxy"]
    assert store.workload_rows("prod", "shop", "nothing").shape == (0,)
    np.testing.assert_array_equal(store.all_rows(), np.arange(store.n_aggregates))
