"""Workload snapshots: lossless round trips through JSON into a store, and corrupt input named."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.histogram import DecayingHistogram, serialized_size
from analytics.histogram_layout import MEMORY_LAYOUT, HistogramLayout
from analytics.ingest import ingest_samples
from analytics.model_params import ModelParams
from analytics.snapshot import (
    FORMAT_VERSION,
    AggregateSnapshot,
    RunningSnapshot,
    SnapshotError,
    export_workload,
    import_workload,
    snapshot_from_json,
    snapshot_to_json,
)
from analytics.store import AggregateStore
from analytics.strategies import build_estimators
from analytics.usage import prepare_samples

from .traces import mixed_trace, model_params, sample_frame, sample_rows

START = dt.datetime(2024, 3, 1, 9, 30)
MIB = 1024 * 1024
WHERE = "checkpoint shop/api"

Workload = tuple[str, str, str]


# -- helpers ---------------------------------------------------------------------------------


def _store(frame: pl.DataFrame, params: ModelParams | None = None) -> AggregateStore:
    store = AggregateStore.empty(params)
    ingest_samples(store, prepare_samples(frame))
    return store


def _workloads(store: AggregateStore) -> list[Workload]:
    keys = store.aggregate_keys.select("cluster", "namespace", "workload").unique()
    return sorted(keys.iter_rows())


def _round_trip(source: AggregateStore, target: AggregateStore, workload: Workload) -> None:
    """Export from source, through JSON text, import into target."""
    exported = export_workload(source, *workload)
    text = json.dumps(snapshot_to_json(exported))
    restored = snapshot_from_json(json.loads(text), "test", source.params)
    assert restored == exported
    import_workload(target, *workload, restored)


def _aggregate_order(store: AggregateStore) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Aggregate rows sorted by key."""
    keys = store.aggregate_keys.with_row_index("row").sort(
        ["cluster", "namespace", "workload", "container"]
    )
    return keys["row"].to_numpy().astype(np.int64)


def assert_identical(expected: AggregateStore, actual: AggregateStore) -> None:
    """The same aggregates and running containers (matched by key), every number bit for bit,
    and each running container feeding the aggregate of the same key."""
    a, b = _aggregate_order(expected), _aggregate_order(actual)
    assert expected.aggregate_keys[a].equals(actual.aggregate_keys[b])
    for name in ("cpu", "memory"):
        mine, theirs = getattr(expected, name), getattr(actual, name)
        assert mine.weights[a].tobytes() == theirs.weights[b].tobytes(), name
        assert mine.total_weight[a].tobytes() == theirs.total_weight[b].tobytes(), name
        assert np.array_equal(mine.reference_ns[a], theirs.reference_ns[b]), name
    for name in ("first_sample_start_ns", "last_sample_start_ns", "total_samples_count"):
        assert np.array_equal(getattr(expected, name)[a], getattr(actual, name)[b]), name
    assert np.array_equal(expected.creation_ns[a], actual.creation_ns[b]), "creation_ns"

    def containers(store: AggregateStore) -> pl.DataFrame:
        feeds = store.aggregate_keys[store.container_aggregate]
        frame = store.container_keys.with_columns(
            feeds["container"].alias("feeds"), feeds["workload"].alias("feeds_workload")
        )
        for name in (
            "last_cpu_sample_start_ns",
            "window_end_ns",
            "last_memory_sample_start_ns",
            "memory_peak_bytes",
            "oom_peak_bytes",
        ):
            frame = frame.with_columns(pl.Series(name, getattr(store, name)))
        return frame.sort(["cluster", "namespace", "workload", "pod", "container"])

    mine, theirs = containers(expected), containers(actual)
    assert mine.height == expected.n_containers
    assert mine.equals(theirs), (mine, theirs)
    assert (mine["feeds"] == mine["container"]).all()
    assert (mine["feeds_workload"] == mine["workload"]).all()


def assert_same_estimates(expected: AggregateStore, actual: AggregateStore) -> None:
    """Identical estimator input and identical `vpa` estimates, per aggregate key."""
    a, b = _aggregate_order(expected), _aggregate_order(actual)
    left, right = expected.estimation_input(a), actual.estimation_input(b)
    for name in ("cpu", "memory"):
        mine, theirs = getattr(left, name), getattr(right, name)
        assert mine.weights.tobytes() == theirs.weights.tobytes()
        assert mine.total_weight.tobytes() == theirs.total_weight.tobytes()
        assert np.array_equal(mine.reference_ns, theirs.reference_ns)
    for name in (
        "first_sample_start_ns",
        "last_sample_start_ns",
        "total_samples_count",
        "containers_per_pod",
    ):
        assert np.array_equal(getattr(left, name), getattr(right, name)), name
    _, estimators = build_estimators("vpa", expected.params.model_dump())
    mine_estimates, their_estimates = estimators.estimate(left), estimators.estimate(right)
    for name in (
        "target_cpu",
        "target_memory",
        "lower_cpu",
        "lower_memory",
        "upper_cpu",
        "upper_memory",
    ):
        assert np.array_equal(getattr(mine_estimates, name), getattr(their_estimates, name)), name


def _later(frame: pl.DataFrame, days: float) -> pl.DataFrame:
    return frame.with_columns(pl.col("timestamp") + dt.timedelta(days=days))


# -- round trips -----------------------------------------------------------------------------


def test_round_trip_into_an_empty_store_is_bit_exact() -> None:
    original = _store(mixed_trace(3, days=3))
    restored = AggregateStore.empty()
    _round_trip(original, restored, ("prod", "shop", "api"))
    assert_identical(original, restored)
    assert_same_estimates(original, restored)
    # Exporting again gives the same bytes: nothing is lost or re-encoded.
    assert export_workload(restored, "prod", "shop", "api") == export_workload(
        original, "prod", "shop", "api"
    )


def test_export_is_sorted_and_complete() -> None:
    frame = mixed_trace(4, days=1)
    store = _store(frame.with_columns(pl.col("container").replace({"app": "zz-app"})))
    exported = export_workload(store, "prod", "shop", "api")
    assert [s.container for s in exported] == ["proxy", "zz-app"]
    for snapshot in exported:
        assert [r.pod for r in snapshot.running] == ["api-7f9c-a", "api-7f9c-b"]
    assert export_workload(store, "prod", "shop", "unknown") == ()
    assert export_workload(store, "other", "shop", "api") == ()


def test_continued_ingestion_after_a_round_trip_equals_no_round_trip() -> None:
    history = mixed_trace(5, days=3)
    later = _later(mixed_trace(6, days=2), 3)
    original = _store(history)
    restored = AggregateStore.empty()
    _round_trip(original, restored, ("prod", "shop", "api"))
    assert ingest_samples(original, prepare_samples(later)) == ingest_samples(
        restored, prepare_samples(later)
    )
    assert_identical(original, restored)
    assert_same_estimates(original, restored)


def test_import_into_a_store_holding_other_workloads() -> None:
    frame = pl.concat(
        [
            mixed_trace(seed, days=2).with_columns(pl.lit(name).alias("workload"))
            for seed, name in enumerate(("api", "billing", "cart"))
        ]
    )
    original = _store(frame)
    # A restarted recommender: some workloads already ingested fresh, others restored.
    restarted = _store(frame.filter(pl.col("workload") == "billing"))
    _round_trip(original, restarted, ("prod", "shop", "cart"))
    _round_trip(original, restarted, ("prod", "shop", "api"))
    assert_identical(original, restarted)
    assert_same_estimates(original, restarted)
    later = _later(frame, 2)
    ingest_samples(original, prepare_samples(later))
    ingest_samples(restarted, prepare_samples(later))
    assert_identical(original, restarted)


def test_workload_without_running_containers_and_new_pods_after_import() -> None:
    original = _store(mixed_trace(7, days=2))
    # The pods went away: only the aggregates remain (no running containers).
    original.container_keys = original.container_keys.clear()
    for name in (
        "container_aggregate",
        "last_cpu_sample_start_ns",
        "window_end_ns",
        "last_memory_sample_start_ns",
        "memory_peak_bytes",
        "oom_peak_bytes",
    ):
        setattr(original, name, getattr(original, name)[:0])
    exported = export_workload(original, "prod", "shop", "api")
    assert all(s.running == () for s in exported)
    restored = AggregateStore.empty()
    _round_trip(original, restored, ("prod", "shop", "api"))
    assert restored.n_containers == 0
    # New pods feed the restored aggregates exactly as they feed the original ones.
    later = _later(mixed_trace(8, days=1), 2).with_columns(pl.col("pod") + "-new")
    ingest_samples(original, prepare_samples(later))
    ingest_samples(restored, prepare_samples(later))
    assert_identical(original, restored)
    assert_same_estimates(original, restored)


def test_empty_snapshot_imports_nothing() -> None:
    store = _store(mixed_trace(1, days=1))
    before = store.n_aggregates, store.n_containers
    import_workload(store, "prod", "shop", "nothing", ())
    assert (store.n_aggregates, store.n_containers) == before


def test_unset_times_survive_json() -> None:
    unset = np.iinfo(np.int64).min
    running = RunningSnapshot("p", unset, unset, unset, 0, 0)
    state = _store(mixed_trace(1, days=1)).aggregate_bytes(0)
    snapshot = (AggregateSnapshot("app", state, (running,)),)
    data = json.loads(json.dumps(snapshot_to_json(snapshot)))
    assert data[0]["running"][0]["windowEndNs"] == unset
    assert data[0]["formatVersion"] == FORMAT_VERSION
    assert snapshot_from_json(data, WHERE) == snapshot


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(sample_rows(4000), min_size=1, max_size=80),
    model_params,
    st.integers(0, 80),
    st.booleans(),
)
def test_round_trip_then_ingestion_equals_no_round_trip(
    sampled: list[dict[str, Any]], params: ModelParams, cut: int, reverse: bool
) -> None:
    frame = sample_frame(sampled).sort("timestamp", maintain_order=True)
    times = frame["timestamp"]
    # Checkpoints are taken between batches, so cut between different timestamps.
    while 0 < cut < frame.height and times[cut] == times[cut - 1]:
        cut += 1
    before, after = frame[:cut], frame[cut:]
    original = AggregateStore.empty(params)
    if before.height:
        ingest_samples(original, prepare_samples(before))
    restored = AggregateStore.empty(params)
    workloads = _workloads(original)
    for workload in reversed(workloads) if reverse else workloads:
        _round_trip(original, restored, workload)
    assert_identical(original, restored)
    assert_same_estimates(original, restored)
    if after.height:
        expected = ingest_samples(original, prepare_samples(after))
        assert ingest_samples(restored, prepare_samples(after)) == expected
        assert_identical(original, restored)
        assert_same_estimates(original, restored)


def test_long_history_with_moved_references_round_trips() -> None:
    # 120 days at a 1-day half-life: every reference has moved once.
    frame = mixed_trace(5, days=120, step_minutes=240)
    cut = frame.filter(pl.col("timestamp") < START + dt.timedelta(days=110))
    original = _store(cut)
    restored = AggregateStore.empty()
    _round_trip(original, restored, ("prod", "shop", "api"))
    rest = frame.filter(pl.col("timestamp") >= START + dt.timedelta(days=110))
    ingest_samples(original, prepare_samples(rest))
    ingest_samples(restored, prepare_samples(rest))
    assert_identical(original, restored)
    assert_same_estimates(original, restored)


# -- refusals --------------------------------------------------------------------------------


def _snapshot_of(store: AggregateStore) -> tuple[AggregateSnapshot, ...]:
    return export_workload(store, "prod", "shop", "api")


def test_import_refuses_a_workload_the_store_already_has() -> None:
    store = _store(mixed_trace(2, days=1))
    snapshot = _snapshot_of(store)
    before = copy.deepcopy(store)
    with pytest.raises(SnapshotError, match="prod/shop/api: the store already has state"):
        import_workload(store, "prod", "shop", "api", snapshot)
    assert_identical(before, store)


def test_import_refuses_other_half_lives_and_leaves_the_store_unchanged() -> None:
    snapshot = _snapshot_of(_store(mixed_trace(2, days=1)))
    other = ModelParams(cpu_histogram_decay_half_life_s=3600.0)
    store = _store(mixed_trace(3, days=1).with_columns(pl.lit("web").alias("workload")), other)
    before = copy.deepcopy(store)
    with pytest.raises(SnapshotError) as raised:
        import_workload(store, "prod", "shop", "api", snapshot)
    message = str(raised.value)
    assert "prod/shop/api" in message
    assert "container 'app'" in message
    assert "state" in message
    assert "half-life mismatch" in message
    assert_identical(before, store)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: (s[0], s[0]), "name: container 'app' appears twice"),
        (lambda s: (AggregateSnapshot("", s[0].state, ()),), "name: must be a non-empty string"),
        (
            lambda s: (AggregateSnapshot("app", s[0].state[:-3], ()),),
            "container 'app' (containers[0]): state:",
        ),
        (
            lambda s: (AggregateSnapshot("app", s[0].state, (s[0].running[0],) * 2),),
            "running[1].pod: pod 'api-7f9c-a' appears twice",
        ),
        (
            lambda s: (
                AggregateSnapshot("app", s[0].state, (RunningSnapshot("p", 2**63, 0, 0, 0, 0),)),
            ),
            "running[0].last_cpu_sample_start_ns: 9223372036854775808 is outside the int64",
        ),
    ],
)
def test_import_refuses_inconsistent_snapshots(
    change: Callable[[tuple[AggregateSnapshot, ...]], tuple[AggregateSnapshot, ...]], field: str
) -> None:
    snapshot = change(_snapshot_of(_store(mixed_trace(2, days=1))))
    store = AggregateStore.empty()
    with pytest.raises(SnapshotError) as raised:
        import_workload(store, "prod", "shop", "api", snapshot)
    assert "workload prod/shop/api" in str(raised.value)
    assert field in str(raised.value)
    assert store.n_aggregates == store.n_containers == 0


# -- corrupt JSON ----------------------------------------------------------------------------

COUNTERS = struct.calcsize("<qqqq")


def _json() -> list[dict[str, Any]]:
    data = snapshot_to_json(_snapshot_of(_store(mixed_trace(2, days=1))))
    copied: list[dict[str, Any]] = json.loads(json.dumps(data))
    return copied


def _with_state(transform: Callable[[bytes], bytes]) -> Callable[[list[dict[str, Any]]], None]:
    def change(data: list[dict[str, Any]]) -> None:
        state = base64.b64decode(data[0]["state"])
        data[0]["state"] = base64.b64encode(transform(state)).decode()

    return change


def _other_cpu_layout(state: bytes) -> bytes:
    cpu_size = serialized_size(state[COUNTERS:])
    other = DecayingHistogram(HistogramLayout(500.0, 0.01, 1.05), 86400 * 10**9)
    other.add_sample(0.5, 1.0, 10**18)
    return state[:COUNTERS] + other.to_bytes() + state[COUNTERS + cpu_size :]


def _memory_as_cpu(state: bytes) -> bytes:
    cpu_size = serialized_size(state[COUNTERS:])
    memory = DecayingHistogram(MEMORY_LAYOUT, 86400 * 10**9).to_bytes()
    return state[:COUNTERS] + memory + state[COUNTERS + cpu_size :]


def _set(path: str, value: object) -> Callable[[list[dict[str, Any]]], None]:
    def change(data: list[dict[str, Any]]) -> None:
        *parents, name = path.split(".")
        target: Any = data[0]
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        last: int | str = int(name) if name.isdigit() else name
        if value is _MISSING:
            del target[last]
        else:
            target[last] = value

    return change


_MISSING = object()

CORRUPT = {
    "bad base64": (_set("state", "not base64!"), "state: not valid base64"),
    "base64 of garbage": (_set("state", base64.b64encode(b"x" * 64).decode()), "state:"),
    "truncated state": (_with_state(lambda s: s[:-5]), "state: serialized histogram is truncated"),
    "truncated counters": (_with_state(lambda s: s[:20]), "state: serialized aggregate state"),
    "cut after the CPU histogram": (
        _with_state(lambda s: s[: COUNTERS + serialized_size(s[COUNTERS:])]),
        "state: not a serialized histogram",
    ),
    "trailing bytes": (_with_state(lambda s: s + b"\0\0"), "state: 2 unexpected byte(s)"),
    "wrong CPU layout": (_with_state(_other_cpu_layout), "state: histogram bucket layout mismatch"),
    "memory histogram in the CPU slot": (
        _with_state(_memory_as_cpu),
        "state: histogram bucket layout mismatch",
    ),
    "state missing": (_set("state", _MISSING), "state: missing"),
    "state not a string": (_set("state", 12), "state: must be a base64 string, got int 12"),
    "running missing": (_set("running", _MISSING), "running: missing"),
    "running not a list": (_set("running", {}), "running: must be a list"),
    "running item not an object": (_set("running.0", "pod"), "running[0]: must be an object"),
    "pod missing": (_set("running.0.pod", _MISSING), "running[0].pod: missing"),
    "pod not a string": (_set("running.1.pod", 7), "running[1].pod: must be a non-empty string"),
    "duplicate pod": (_set("running.1.pod", "api-7f9c-a"), "running[1].pod: pod 'api-7f9c-a'"),
    "window end missing": (_set("running.0.windowEndNs", _MISSING), "running[0].windowEndNs:"),
    "peak a string": (
        _set("running.0.memoryPeakBytes", "1Gi"),
        "running[0].memoryPeakBytes: must be an integer, got str '1Gi'",
    ),
    "peak a float": (
        _set("running.0.oomPeakBytes", 1.5),
        "running[0].oomPeakBytes: must be an integer, got float",
    ),
    "time a bool": (
        _set("running.0.lastCpuSampleStartNs", True),
        "running[0].lastCpuSampleStartNs: must be an integer, got bool",
    ),
    "time beyond int64": (
        _set("running.0.lastMemorySampleStartNs", 2**64),
        "running[0].lastMemorySampleStartNs: 18446744073709551616 is outside the int64 range",
    ),
    "format version missing": (_set("formatVersion", _MISSING), "formatVersion: missing"),
    "format version unknown": (_set("formatVersion", 2), "formatVersion: 2 is not supported"),
    "format version a string": (_set("formatVersion", "1"), "formatVersion: must be an integer"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_json_names_where_container_and_field(case: str) -> None:
    change, expected = CORRUPT[case]
    data = _json()
    assert snapshot_from_json(data, WHERE)  # valid before the change
    change(data)
    with pytest.raises(SnapshotError) as raised:
        snapshot_from_json(data, WHERE)
    message = str(raised.value)
    assert message.startswith(f"{WHERE}: container 'app' (containers[0]): "), message
    assert expected in message, message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"name": "app"}, "containers: must be a list, got dict"),
        (["app"], "containers[0]: must be an object, got str 'app'"),
        ([{"state": ""}], "containers[0]: name: missing"),
        ([{"name": 3}], "containers[0]: name: must be a non-empty string, got int 3"),
        ([{"name": ""}], "containers[0]: name: must be a non-empty string"),
    ],
)
def test_corrupt_json_without_a_container_name_names_its_position(
    data: object, expected: str
) -> None:
    with pytest.raises(SnapshotError, match=r"^checkpoint shop/api: ") as raised:
        snapshot_from_json(data, WHERE)
    assert expected in str(raised.value)


def test_duplicate_container_is_refused() -> None:
    data = _json()
    data[1]["name"] = "app"
    with pytest.raises(SnapshotError) as raised:
        snapshot_from_json(data, WHERE)
    assert "container 'app' (containers[1]): name: container 'app' appears twice" in str(
        raised.value
    )


def test_states_of_other_half_lives_are_refused_when_read() -> None:
    params = ModelParams(memory_histogram_decay_half_life_s=3600.0)
    data = snapshot_to_json(_snapshot_of(_store(mixed_trace(2, days=1), params)))
    assert snapshot_from_json(data, WHERE, params)
    with pytest.raises(SnapshotError) as raised:
        snapshot_from_json(data, WHERE)
    assert "container 'app' (containers[0]): state: histogram half-life mismatch: 3600s" in str(
        raised.value
    )
