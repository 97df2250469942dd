"""Hourly profiles in workload snapshots: bit-exact round trips through JSON, compact bytes,
snapshots without one, and corrupt ones reported without losing the rest."""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

import numpy as np
import polars as pl
import pytest

from analytics.estimation import recommend_rows, store_for
from analytics.ingest import ingest_samples
from analytics.snapshot import (
    AggregateSnapshot,
    SnapshotError,
    decode_profile,
    encode_profile,
    export_workload,
    import_workload,
    snapshot_from_json,
    snapshot_to_json,
)
from analytics.store import AggregateStore
from analytics.strategies import build_estimators
from analytics.strategy_profile import HOUR_NS, HourlyProfile
from analytics.usage import prepare_samples
from tests.unit.analytics.traces import mixed_trace

WORKLOAD = ("prod", "shop", "api")
WHERE = "checkpoint shop/api"


def _bits_equal(a: HourlyProfile, b: HourlyProfile) -> bool:
    left, right = a.to_arrays(), b.to_arrays()
    return left.keys() == right.keys() and all(
        left[k].dtype == right[k].dtype
        and left[k].shape == right[k].shape
        and left[k].tobytes() == right[k].tobytes()
        for k in left
    )


def _default_store() -> AggregateStore:
    params, estimators = build_estimators("default")
    return store_for(params, estimators)


def _rows_by_container(store: AggregateStore) -> np.ndarray:
    return np.argsort(store.aggregate_keys["container"].to_numpy(), kind="stable")


def _through_json(snapshots: tuple[AggregateSnapshot, ...]) -> tuple[AggregateSnapshot, ...]:
    text = json.dumps(snapshot_to_json(snapshots))
    params, _ = build_estimators("default")
    return snapshot_from_json(json.loads(text), WHERE, params.model_fields_only())


# -- round trips -----------------------------------------------------------------------------


def test_round_trip_keeps_the_profile_bit_for_bit_and_the_recommendations() -> None:
    frame = mixed_trace(2, days=3)
    assert frame["oom"].any()  # kills bump the profile's memory too
    source = _default_store()
    ingest_samples(source, prepare_samples(frame))
    snapshots = _through_json(export_workload(source, *WORKLOAD))
    assert all(s.profile is not None for s in snapshots)
    target = _default_store()
    assert import_workload(target, *WORKLOAD, snapshots) == []
    assert source.profile is not None and target.profile is not None
    assert _bits_equal(
        source.profile.take(_rows_by_container(source)),
        target.profile.take(_rows_by_container(target)),
    )
    _, estimators = build_estimators("default")
    now = (int(prepare_samples(frame).t_ns.max()) // HOUR_NS + 1) * HOUR_NS
    assert (
        recommend_rows(source, source.all_rows(), estimators, now).recommendations
        == recommend_rows(target, target.all_rows(), estimators, now).recommendations
    )
    # Samples after the round trip fold in as they would have without it.
    later = mixed_trace(3, days=1).with_columns(pl.col("timestamp") + pl.duration(days=3))
    for store in (source, target):
        ingest_samples(store, prepare_samples(later))
    assert _bits_equal(
        source.profile.take(_rows_by_container(source)),
        target.profile.take(_rows_by_container(target)),
    )


def test_a_snapshot_without_a_profile_imports_with_an_empty_one() -> None:
    plain = AggregateStore.empty(build_estimators("default")[0].model_fields_only())
    ingest_samples(plain, prepare_samples(mixed_trace(1, days=1)))
    snapshots = _through_json(export_workload(plain, *WORKLOAD))
    assert all(s.profile is None for s in snapshots)
    assert all("profile" not in item for item in snapshot_to_json(snapshots))
    target = _default_store()
    assert import_workload(target, *WORKLOAD, snapshots) == []
    assert target.profile is not None
    assert _bits_equal(target.profile, HourlyProfile.empty(2, target.profile.slots))


def test_a_store_without_a_profile_ignores_the_snapshots_profiles() -> None:
    source = _default_store()
    ingest_samples(source, prepare_samples(mixed_trace(1, days=1)))
    params, _ = build_estimators("default")
    target = AggregateStore.empty(params.model_fields_only())
    assert import_workload(target, *WORKLOAD, export_workload(source, *WORKLOAD)) == []
    assert target.profile is None and target.n_aggregates == 2


# -- the bytes -------------------------------------------------------------------------------


def _random_profile(seed: int, slots: int = 168) -> HourlyProfile:
    """A profile whose values need every encoding: big hours, float64-only values, -0.0,
    NaN, empty slots between filled ones."""
    rng = np.random.default_rng(seed)
    profile = HourlyProfile.empty(1, slots)
    filled = rng.random(slots) < 0.7
    hours = 500_000 + np.arange(slots) + slots * rng.integers(0, 3, slots)
    profile.hour[0] = np.where(filled, hours, -1)
    for array in (profile.cpu_peak, profile.cpu_sum, profile.cpu_count, profile.memory_peak):
        values = rng.choice([rng.random(), 1e15 + rng.random(), -0.0, float("nan"), 3.0], slots)
        array[0] = np.where(filled, values * (1 + rng.random(slots)), 0.0)
    profile.first_hour[0] = 2**40 + seed
    return profile


@pytest.mark.parametrize("seed", range(8))
def test_profile_bytes_round_trip_exactly(seed: int) -> None:
    profile = _random_profile(seed)
    assert _bits_equal(decode_profile(encode_profile(profile), WHERE), profile)


def test_profile_bytes_are_compact() -> None:
    empty = encode_profile(HourlyProfile.empty(1))
    assert len(empty) < 120
    store = _default_store()
    ingest_samples(store, prepare_samples(mixed_trace(4, days=8, step_minutes=5)))
    assert store.profile is not None
    week = encode_profile(store.profile.take(np.array([0])))
    raw = sum(a.nbytes for a in store.profile.take(np.array([0])).to_arrays().values())
    assert int((store.profile.hour[0] >= 0).sum()) == store.profile.slots  # a full week
    assert len(week) < raw / 2, (len(week), raw)


def test_encode_takes_one_aggregate() -> None:
    with pytest.raises(ValueError, match="one aggregate, got 2"):
        encode_profile(HourlyProfile.empty(2))


# -- corrupt profiles ------------------------------------------------------------------------


def _json_with(profile: object) -> list[dict[str, Any]]:
    source = _default_store()
    ingest_samples(source, prepare_samples(mixed_trace(1, days=1)))
    entries = snapshot_to_json(export_workload(source, *WORKLOAD))
    entries[0]["profile"] = profile
    return entries


def _deflated(raw: bytes) -> str:
    return base64.b64encode(zlib.compress(raw)).decode()


def _valid_profile_bytes() -> bytes:
    return zlib.decompress(encode_profile(_random_profile(0)))


CORRUPT = {
    "not a string": (42, "must be a base64 string, got int 42"),
    "bad base64": ("&&&", "not valid base64"),
    "not deflated": (base64.b64encode(b"hello").decode(), "Error -3"),
    "truncated": (_deflated(_valid_profile_bytes()[:-9]), "truncated: "),
    "trailing": (_deflated(_valid_profile_bytes() + b"x"), "1 unexpected byte(s)"),
    "other magic": (_deflated(b"XX" + _valid_profile_bytes()[2:]), "not an hourly profile"),
    "unknown array": (
        _deflated(_valid_profile_bytes().replace(b"cpu_sum", b"cpu_xyz")),
        "array 'cpu_xyz' is not part of an hourly profile",
    ),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_a_corrupt_profile_is_reported_and_the_rest_is_kept(case: str) -> None:
    value, message = CORRUPT[case]
    entries = _json_with(value)
    problems: list[str] = []
    snapshots = snapshot_from_json(
        entries, WHERE, build_estimators("default")[0].model_fields_only(), problems
    )
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{WHERE}: container 'app' (containers[0]): profile: ")
    assert message in problems[0]
    assert problems[0].endswith("restored with an empty profile")
    assert snapshots[0].profile is None and snapshots[1].profile is not None
    assert snapshots[0].state == base64.b64decode(entries[0]["state"])
    # Without a list to report to, it is an error like any other.
    with pytest.raises(SnapshotError, match="containers\\[0\\]\\): profile: "):
        snapshot_from_json(entries, WHERE, build_estimators("default")[0].model_fields_only())


def test_import_reports_a_profile_that_does_not_decode_and_imports_the_rest() -> None:
    source = _default_store()
    ingest_samples(source, prepare_samples(mixed_trace(1, days=1)))
    exported = export_workload(source, *WORKLOAD)
    broken = (
        AggregateSnapshot(exported[0].container, exported[0].state, exported[0].running, b"x"),
        exported[1],
    )
    target = _default_store()
    problems = import_workload(target, *WORKLOAD, broken)
    assert len(problems) == 1
    assert "container 'app' (containers[0]): profile: " in problems[0]
    assert problems[0].endswith("imported with an empty profile")
    assert target.n_aggregates == 2
    assert target.profile is not None
    app, proxy = (
        int(np.flatnonzero(target.aggregate_keys["container"] == c)[0]) for c in ("app", "proxy")
    )
    assert (target.profile.hour[app] == -1).all()
    assert source.profile is not None
    proxy_source = int(np.flatnonzero(source.aggregate_keys["container"] == "proxy")[0])
    assert _bits_equal(
        target.profile.take(np.array([proxy])), source.profile.take(np.array([proxy_source]))
    )
    assert target.aggregate_bytes(app) == exported[0].state
