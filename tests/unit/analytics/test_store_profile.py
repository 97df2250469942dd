"""The hourly profile kept in the engine's store: created and dropped with the aggregates, fed
by the ingestion that feeds the histograms, read by `recommend_rows`, and the simulator's
replay going through the same path."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from analytics.estimation import recommend_rows, store_for
from analytics.ingest import ingest_samples
from analytics.model_params import ModelParams
from analytics.scalar_model import ScalarModel
from analytics.simulate.families import generate
from analytics.simulate.replay import _intervals, _Replay, prepare_trace
from analytics.store import AggregateStore
from analytics.strategies import build_estimators
from analytics.strategy_profile import HOUR_NS, HourlyProfile
from analytics.usage import prepare_samples
from tests.unit.analytics.test_ingest_parity import assert_identical
from tests.unit.analytics.traces import MIB, START, mixed_trace, steady_trace


def _arrays(profile: HourlyProfile) -> dict[str, np.ndarray]:
    return {name: array.copy() for name, array in profile.to_arrays().items()}


def _same(a: HourlyProfile, b: HourlyProfile) -> bool:
    left, right = a.to_arrays(), b.to_arrays()
    return left.keys() == right.keys() and all(
        left[name].dtype == right[name].dtype and np.array_equal(left[name], right[name])
        for name in left
    )


def _ns(moment: dt.datetime) -> int:
    return int(moment.replace(tzinfo=dt.UTC).timestamp()) * 1_000_000_000


# -- which stores keep one -------------------------------------------------------------------


def test_a_store_for_default_keeps_a_profile_and_one_for_vpa_does_not() -> None:
    params, default = build_estimators("default")
    assert store_for(params, default).profile is not None
    params, vpa = build_estimators("vpa")
    store = store_for(params, vpa)
    assert store.profile is None
    ingest_samples(store, prepare_samples(mixed_trace(0, days=1)))
    assert store.profile is None  # nothing is kept for the parity strategy, ever
    assert AggregateStore.empty().profile is None


# -- alignment with the store's rows ---------------------------------------------------------


def test_the_profile_has_a_row_per_aggregate_as_they_come_and_go() -> None:
    store = AggregateStore.empty(profile=True)
    assert store.profile is not None and len(store.profile) == 0
    ingest_samples(store, prepare_samples(mixed_trace(0, days=1)))
    assert len(store.profile) == store.n_aggregates == 2
    later = steady_trace(workload="web", containers=("app", "side"), minutes=60)
    ingest_samples(store, prepare_samples(later))
    assert len(store.profile) == store.n_aggregates == 4
    before = _arrays(store.profile)
    keys = store.aggregate_keys
    keep = (keys["workload"] == "web").to_numpy() | (keys["container"] == "app").to_numpy()
    rows = np.flatnonzero(keep)
    store.keep_aggregates(keep)
    assert len(store.profile) == store.n_aggregates == 3
    for name, array in store.profile.to_arrays().items():
        assert np.array_equal(array, before[name][rows]), name
    # A new aggregate starts with no history, whatever its row.
    ingest_samples(store, prepare_samples(steady_trace(workload="new", minutes=1)))
    assert store.profile.first_hour[-1] != -1
    assert np.array_equal(store.profile.to_arrays()["cpu_peak"][:3], before["cpu_peak"][rows])


def test_keeping_a_profile_later_starts_it_empty_for_the_known_aggregates() -> None:
    store = AggregateStore.empty()
    ingest_samples(store, prepare_samples(mixed_trace(0, days=1)))
    store.keep_profile()
    assert store.profile is not None
    assert _same(store.profile, HourlyProfile.empty(store.n_aggregates, store.profile.slots))
    kept = store.profile
    store.keep_profile()
    assert store.profile is kept


# -- feeding ---------------------------------------------------------------------------------


def test_ingestion_feeds_the_profile_as_observe_would_in_one_batch() -> None:
    frame = mixed_trace(3, days=2).with_columns(pl.lit(False).alias("oom"))
    samples = prepare_samples(frame)
    store = AggregateStore.empty(profile=True)
    ingest_samples(store, samples)
    expected = HourlyProfile.empty(store.n_aggregates)
    row_of = (
        samples.container_keys.join(
            store.aggregate_keys.with_row_index("row"),
            on=["cluster", "namespace", "workload", "container"],
            how="left",
            maintain_order="left",
        )["row"]
        .cast(pl.Int64)
        .to_numpy()
    )
    expected.observe(
        row_of[samples.container],
        samples.t_ns,
        cpu_millicores=samples.cpu_millicores,
        cpu_valid=samples.cpu_valid,
        memory_bytes=samples.memory_bytes,
        memory_valid=samples.memory_valid,
    )
    assert store.profile is not None
    assert _same(store.profile, expected)
    assert int(store.profile.cpu_count.sum()) > 0


def test_batches_give_the_profile_of_one_batch_and_repeated_samples_count_once() -> None:
    frame = mixed_trace(5, days=2).with_columns(pl.lit(False).alias("oom"))
    whole = AggregateStore.empty(profile=True)
    ingest_samples(whole, prepare_samples(frame))
    split = AggregateStore.empty(profile=True)
    cut = START + dt.timedelta(hours=30)
    ingest_samples(split, prepare_samples(frame.filter(pl.col("timestamp") < cut)))
    # The next window overlaps the last hour: samples already taken are not counted again,
    # as the loop sees when Prometheus windows overlap.
    again = frame.filter(pl.col("timestamp") >= cut - dt.timedelta(hours=1))
    skipped = ingest_samples(split, prepare_samples(again))
    assert skipped["cpu_not_newer"] > 0
    assert whole.profile is not None and split.profile is not None
    assert _same(whole.profile, split.profile)


def test_an_oom_kill_counts_at_the_memory_the_histograms_record() -> None:
    params = ModelParams()
    t0 = START + dt.timedelta(minutes=5)
    rows = [
        {"timestamp": t0, "memory": 300.0 * MIB, "oom": False, "memory_request": None},
        {
            "timestamp": t0 + dt.timedelta(minutes=1),
            "memory": None,
            "oom": True,
            "memory_request": 200.0 * MIB,
        },
    ]
    frame = pl.DataFrame(
        [
            {"cluster": "prod", "namespace": "shop", "workload": "api", "pod": "api-1"}
            | {"container": "app", "cpu": 0.1}
            | row
            for row in rows
        ]
    )
    store = AggregateStore.empty(params, profile=True)
    ingest_samples(store, prepare_samples(frame))
    # The kill is recorded from the larger of the request and the interval's usage peak
    # (300 MiB), bumped: max(300 MiB + 100 MiB, 1.2 x 300 MiB) = 400 MiB; the memory
    # histogram's peak is the same.
    assert params.oom_min_bump_up_bytes == 100 * MIB and params.oom_bump_up_ratio == 1.2
    assert store.profile is not None
    hour = _ns(t0) // HOUR_NS
    slot = hour % store.profile.slots
    assert store.profile.hour[0, slot] == hour
    assert store.profile.memory_peak[0, slot] == 400.0 * MIB
    assert int(store.oom_peak_bytes[0]) == 400 * MIB


# -- estimation ------------------------------------------------------------------------------


def _diurnal_frame() -> pl.DataFrame:
    return generate(["diurnal", "batch"], seeds=[0], days=4, step_s=300)


def test_recommend_rows_reads_the_profile_for_default() -> None:
    frame = _diurnal_frame()
    samples = prepare_samples(frame)
    params, estimators = build_estimators("default")
    with_profile = store_for(params, estimators)
    without = AggregateStore.empty(params.model_fields_only())
    for store in (with_profile, without):
        ingest_samples(store, samples)
    assert samples.end_ns is not None
    now = (samples.end_ns // HOUR_NS + 1) * HOUR_NS
    profiled = recommend_rows(with_profile, with_profile.all_rows(), estimators, now)
    histograms = recommend_rows(without, without.all_rows(), estimators, now)
    assert [r.container_name for r in profiled.recommendations] == [
        r.container_name for r in histograms.recommendations
    ]
    # After days of a daily cycle the profile rule decides: recommendations differ.
    assert profiled.recommendations != histograms.recommendations


@pytest.mark.parametrize("hours", [30, 80])
def test_the_replay_recommends_what_recommend_rows_does_from_the_same_samples(hours: int) -> None:
    """Requests far above usage and no limit: nothing is killed, so the replay ingests the
    trace itself, and must recommend what `recommend_rows` does for a store fed with it."""
    frame = _diurnal_frame().with_columns(
        pl.lit(64.0).alias("cpu_request"),
        pl.lit(float(2**40)).alias("memory_request"),
        pl.lit(None, dtype=pl.Float64).alias("memory_limit"),
    )
    trace = prepare_trace(frame)
    params, estimators = build_estimators("default")
    replay_store = store_for(params, estimators)
    interval_ns = HOUR_NS
    replay = _Replay(trace, estimators, replay_store, interval_ns, 300 * 1_000_000_000)
    bounds = _intervals(trace.samples.t_ns, interval_ns)
    edges = np.searchsorted(trace.samples.t_ns, bounds, side="left")
    for k in range(hours):
        if k > 0:
            replay.apply(int(bounds[k]), int(bounds[k + 1]))
        assert int(replay.play(int(edges[k]), int(edges[k + 1])).sum()) == 0
    now = int(bounds[hours])
    replayed = replay.recommend(now)

    store = store_for(params, estimators)
    ingest_samples(store, prepare_samples(frame.filter(pl.col("timestamp") < _datetime(now))))
    estimated = recommend_rows(store, store.all_rows(), estimators, now)
    by_key = {
        (r.cluster, r.namespace, r.workload, r.container_name): r for r in estimated.recommendations
    }
    keys = trace.aggregate_keys.rows()
    assert int(replayed.present.sum()) == len(by_key) == len(keys)
    for index, key in enumerate(keys):
        r = by_key[key]
        assert (
            int(replayed.target_cpu[index]),
            int(replayed.target_memory[index]),
            int(replayed.lower_cpu[index]),
            int(replayed.lower_memory[index]),
            int(replayed.upper_cpu[index]),
            int(replayed.upper_memory[index]),
        ) == (
            r.target.cpu_millicores,
            r.target.memory_whole_bytes,
            r.lower_bound.cpu_millicores,
            r.lower_bound.memory_whole_bytes,
            r.upper_bound.cpu_millicores,
            r.upper_bound.memory_whole_bytes,
        ), key
    assert replay_store.profile is not None and store.profile is not None
    order = replay_store.aggregate_keys.with_row_index("row").join(
        store.aggregate_keys.with_row_index("other"), on=list(store.aggregate_keys.columns)
    )
    assert _same(
        replay_store.profile.take(order["row"].cast(pl.Int64).to_numpy()),
        store.profile.take(order["other"].cast(pl.Int64).to_numpy()),
    )


def _datetime(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).replace(tzinfo=None)


# -- long half-lives -------------------------------------------------------------------------


@pytest.mark.parametrize("days", [900.0, 1100.0, 100_000.0])
def test_memory_half_lives_beyond_int64_limits_ingest_as_the_scalar_path(days: float) -> None:
    """100 half-lives of more than ~1,067 days do not fit in int64 ns; the memory path
    compares distances to the reference, never that sum."""
    params = ModelParams(memory_histogram_decay_half_life_s=days * 86400.0)
    samples = prepare_samples(mixed_trace(1, days=2))
    scalar = ScalarModel(params)
    scalar.ingest(samples)
    store = AggregateStore.empty(params)
    ingest_samples(store, samples)
    assert_identical(scalar.to_store(), store)
