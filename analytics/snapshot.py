"""Snapshots of one workload's state in an `AggregateStore`, to carry history across restarts.

A snapshot holds, per container of the workload, its serialized aggregate state
(`AggregateState.to_bytes`: both histograms with exact weights, the CPU bookkeeping and the
creation time) and the state of every running container (pod) feeding it. Importing a snapshot
into a store gives the same numbers bit for bit: estimates are unchanged, and later samples
ingest exactly as they would have without the round trip.

The JSON form (`snapshot_to_json`) is one object per container:

    {"formatVersion": 1, "name": "app", "state": "<base64>",
     "running": [{"pod": "web-1", "lastCpuSampleStartNs": ..., "windowEndNs": ...,
                  "lastMemorySampleStartNs": ..., "memoryPeakBytes": ..., "oomPeakBytes": ...}]}

Times are int64 ns since the Unix epoch (the smallest int64 when unset), amounts int64 bytes.
Pure: no I/O. Model parameters are not part of a snapshot: the histograms' layouts and
half-lives are checked when reading and importing (a snapshot of other half-lives is refused),
the memory interval and OOM settings are the store's.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Final

import numpy as np
import polars as pl

from analytics.arrays import Int64Array
from analytics.container_state import AggregateState
from analytics.model_params import ModelParams
from analytics.store import AggregateStore
from analytics.usage import AGGREGATE_KEYS, CONTAINER_KEYS

__all__ = [
    "FORMAT_VERSION",
    "AggregateSnapshot",
    "RunningSnapshot",
    "SnapshotError",
    "decode_state",
    "export_workload",
    "import_workload",
    "snapshot_from_json",
    "snapshot_to_json",
]

FORMAT_VERSION: Final = 1
"""Version of the JSON form written by `snapshot_to_json`; the only one read back."""

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


class SnapshotError(ValueError):
    """A snapshot that cannot be read or imported; the message names where, container, field."""


@dataclass(frozen=True)
class RunningSnapshot:
    """One running container (a pod's container): CPU dedup time and current memory interval."""

    pod: str
    last_cpu_sample_start_ns: int
    window_end_ns: int
    last_memory_sample_start_ns: int
    memory_peak_bytes: int
    oom_peak_bytes: int


@dataclass(frozen=True)
class AggregateSnapshot:
    """One workload container: its serialized aggregate state and its running containers."""

    container: str
    state: bytes
    running: tuple[RunningSnapshot, ...]


_RUNNING_INTS: Final = tuple(f.name for f in fields(RunningSnapshot) if f.name != "pod")
_JSON_NAMES: Final = {
    "last_cpu_sample_start_ns": "lastCpuSampleStartNs",
    "window_end_ns": "windowEndNs",
    "last_memory_sample_start_ns": "lastMemorySampleStartNs",
    "memory_peak_bytes": "memoryPeakBytes",
    "oom_peak_bytes": "oomPeakBytes",
}


# -- store <-> snapshots ---------------------------------------------------------------------


def export_workload(
    store: AggregateStore, cluster: str, namespace: str, workload: str
) -> tuple[AggregateSnapshot, ...]:
    """Snapshots of every container of one workload, sorted by container name.

    Running containers are sorted by pod name. A workload the store does not know gives ().
    """
    rows = store.workload_rows(cluster, namespace, workload)
    if rows.shape[0] == 0:
        return ()
    containers = store.aggregate_keys["container"].to_list()
    pods = store.container_keys["pod"].to_list()
    running_of: dict[int, list[RunningSnapshot]] = {int(row): [] for row in rows}
    for index in np.flatnonzero(np.isin(store.container_aggregate, rows)):
        i = int(index)
        running_of[int(store.container_aggregate[i])].append(
            RunningSnapshot(
                pod=pods[i],
                last_cpu_sample_start_ns=int(store.last_cpu_sample_start_ns[i]),
                window_end_ns=int(store.window_end_ns[i]),
                last_memory_sample_start_ns=int(store.last_memory_sample_start_ns[i]),
                memory_peak_bytes=int(store.memory_peak_bytes[i]),
                oom_peak_bytes=int(store.oom_peak_bytes[i]),
            )
        )
    snapshots = [
        AggregateSnapshot(
            container=containers[row],
            state=store.aggregate_bytes(row),
            running=tuple(sorted(running_of[row], key=lambda r: r.pod)),
        )
        for row in (int(r) for r in rows)
    ]
    return tuple(sorted(snapshots, key=lambda s: s.container))


def import_workload(
    store: AggregateStore,
    cluster: str,
    namespace: str,
    workload: str,
    snapshots: Sequence[AggregateSnapshot],
) -> None:
    """Add one workload's containers and running containers to the store, as exported.

    The store must not know the workload yet (import at start, before ingesting); otherwise,
    or for a snapshot that does not decode with the store's parameters, SnapshotError, and
    the store is left unchanged.
    """
    where = f"workload {cluster}/{namespace}/{workload}"
    if store.workload_rows(cluster, namespace, workload).shape[0]:
        raise SnapshotError(f"{where}: the store already has state for this workload")
    states = _check_snapshots(snapshots, store.params, where)
    if not snapshots:
        return

    base = store.n_aggregates
    names = [s.container for s in snapshots]
    store.add_aggregates(
        _keys(AGGREGATE_KEYS, [(cluster, namespace, workload, name) for name in names]),
        np.array([state.creation_ns for state in states], dtype=np.int64),
    )
    for offset, state in enumerate(states):
        row = base + offset
        store.cpu.set_row(row, state.cpu)
        store.memory.set_row(row, state.memory)
        store.first_sample_start_ns[row] = state.first_sample_start_ns
        store.last_sample_start_ns[row] = state.last_sample_start_ns
        store.total_samples_count[row] = state.total_samples_count

    running = [(base + i, s.container, r) for i, s in enumerate(snapshots) for r in s.running]
    if not running:
        return
    first = store.n_containers
    store.add_containers(
        _keys(CONTAINER_KEYS, [(cluster, namespace, workload, r.pod, c) for _, c, r in running]),
        np.array([row for row, _, _ in running], dtype=np.int64),
    )
    added = slice(first, first + len(running))
    for name in _RUNNING_INTS:
        column: Int64Array = getattr(store, name)
        column[added] = np.array([getattr(r, name) for _, _, r in running], dtype=np.int64)


def _keys(names: tuple[str, ...], rows: list[tuple[str, ...]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=dict.fromkeys(names, pl.String), orient="row")


def _check_snapshots(
    snapshots: Sequence[AggregateSnapshot], params: ModelParams, where: str
) -> list[AggregateState]:
    """Decoded states of valid snapshots; SnapshotError naming the first problem."""
    states = []
    seen: set[str] = set()
    for index, snapshot in enumerate(snapshots):
        container = snapshot.container
        label = _label(index, container)
        if not isinstance(container, str) or not container:
            raise SnapshotError(f"{where}: {label}: name: must be a non-empty string")
        if container in seen:
            raise SnapshotError(f"{where}: {label}: name: container {container!r} appears twice")
        seen.add(container)
        if not isinstance(snapshot.state, bytes):
            raise SnapshotError(f"{where}: {label}: state: must be bytes")
        states.append(decode_state(snapshot.state, params, f"{where}: {label}: state"))
        pods: set[str] = set()
        for position, running in enumerate(snapshot.running):
            field = f"running[{position}]"
            if not isinstance(running.pod, str) or not running.pod:
                raise SnapshotError(f"{where}: {label}: {field}.pod: must be a non-empty string")
            if running.pod in pods:
                raise SnapshotError(
                    f"{where}: {label}: {field}.pod: pod {running.pod!r} appears twice"
                )
            pods.add(running.pod)
            for name in _RUNNING_INTS:
                problem = _int64_problem(getattr(running, name))
                if problem:
                    raise SnapshotError(f"{where}: {label}: {field}.{name}: {problem}")
    return states


def decode_state(data: bytes, params: ModelParams, where: str) -> AggregateState:
    """An aggregate state from `AggregateState.to_bytes` output, checked to the last byte.

    SnapshotError (message starting with `where`) for truncated or trailing bytes, histograms
    of another layout or half-life, or anything else that is not exactly what `to_bytes`
    writes.
    """
    try:
        state = AggregateState.from_bytes(data, params)
    except (ValueError, ArithmeticError, struct.error) as error:
        raise SnapshotError(f"{where}: {error}") from None
    canonical = state.to_bytes()
    if canonical != data:
        if data.startswith(canonical):
            extra = len(data) - len(canonical)
            raise SnapshotError(f"{where}: {extra} unexpected byte(s) after the serialized state")
        raise SnapshotError(f"{where}: not in the form the recommender writes (corrupt)")
    if state.total_samples_count < 0:
        raise SnapshotError(f"{where}: negative CPU sample count {state.total_samples_count}")
    return state


def _label(index: int, container: object) -> str:
    if isinstance(container, str) and container:
        return f"container {container!r} (containers[{index}])"
    return f"containers[{index}]"


def _int64_problem(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be an integer, got {_describe(value)}"
    if not _INT64_MIN <= value <= _INT64_MAX:
        return f"{value} is outside the int64 range"
    return None


def _describe(value: object) -> str:
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{type(value).__name__} {shown}"


# -- snapshots <-> JSON ------------------------------------------------------------------------


def snapshot_to_json(snapshots: Sequence[AggregateSnapshot]) -> list[dict[str, object]]:
    """The JSON form: one object per container, the state in base64, integers as integers."""
    return [
        {
            "formatVersion": FORMAT_VERSION,
            "name": snapshot.container,
            "state": base64.b64encode(snapshot.state).decode("ascii"),
            "running": [
                {
                    "pod": running.pod,
                    **{_JSON_NAMES[name]: getattr(running, name) for name in _RUNNING_INTS},
                }
                for running in snapshot.running
            ],
        }
        for snapshot in snapshots
    ]


def snapshot_from_json(
    data: object, where: str, params: ModelParams | None = None
) -> tuple[AggregateSnapshot, ...]:
    """Inverse of `snapshot_to_json`, checking everything `import_workload` would.

    Each state must decode with `params` (the stock defaults when None): histograms of the
    expected layouts and half-lives, not truncated, nothing after them. SnapshotError for
    that, a missing field, a wrong type, bad base64, a duplicate container or pod, or an
    unsupported format version; the message starts with `where` and names the container and
    the field.
    """
    params = params or ModelParams()
    if not isinstance(data, list):
        raise SnapshotError(f"{where}: containers: must be a list, got {_describe(data)}")
    snapshots = []
    seen: set[str] = set()
    for index, item in enumerate(data):
        if not isinstance(item, Mapping):
            raise SnapshotError(
                f"{where}: containers[{index}]: must be an object, got {_describe(item)}"
            )
        name = item.get("name")
        label = _label(index, name)
        if "name" not in item:
            raise SnapshotError(f"{where}: {label}: name: missing")
        if not isinstance(name, str) or not name:
            raise SnapshotError(
                f"{where}: {label}: name: must be a non-empty string, got {_describe(name)}"
            )
        if name in seen:
            raise SnapshotError(f"{where}: {label}: name: container {name!r} appears twice")
        seen.add(name)
        prefix = f"{where}: {label}"
        version = _field(item, "formatVersion", prefix)
        if isinstance(version, bool) or not isinstance(version, int):
            raise SnapshotError(f"{prefix}: formatVersion: must be an integer, got {version!r}")
        if version != FORMAT_VERSION:
            raise SnapshotError(
                f"{prefix}: formatVersion: {version} is not supported (only {FORMAT_VERSION})"
            )
        snapshots.append(
            AggregateSnapshot(
                container=name,
                state=_state(_field(item, "state", prefix), prefix, params),
                running=_running(_field(item, "running", prefix), prefix),
            )
        )
    return tuple(snapshots)


def _field(item: Mapping[str, object], name: str, prefix: str, parent: str = "") -> object:
    if name not in item:
        raise SnapshotError(f"{prefix}: {parent}{name}: missing")
    return item[name]


def _state(value: object, prefix: str, params: ModelParams) -> bytes:
    if not isinstance(value, str):
        raise SnapshotError(f"{prefix}: state: must be a base64 string, got {_describe(value)}")
    try:
        state = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as error:
        raise SnapshotError(f"{prefix}: state: not valid base64 ({error})") from None
    decode_state(state, params, f"{prefix}: state")
    return state


def _running(value: object, prefix: str) -> tuple[RunningSnapshot, ...]:
    if not isinstance(value, list):
        raise SnapshotError(f"{prefix}: running: must be a list, got {_describe(value)}")
    result = []
    pods: set[str] = set()
    for position, item in enumerate(value):
        field = f"running[{position}]"
        if not isinstance(item, Mapping):
            raise SnapshotError(f"{prefix}: {field}: must be an object, got {_describe(item)}")
        pod = _field(item, "pod", prefix, f"{field}.")
        if not isinstance(pod, str) or not pod:
            raise SnapshotError(
                f"{prefix}: {field}.pod: must be a non-empty string, got {_describe(pod)}"
            )
        if pod in pods:
            raise SnapshotError(f"{prefix}: {field}.pod: pod {pod!r} appears twice")
        pods.add(pod)
        numbers: dict[str, int] = {}
        for name in _RUNNING_INTS:
            key = _JSON_NAMES[name]
            number = _field(item, key, prefix, f"{field}.")
            problem = _int64_problem(number)
            if problem:
                raise SnapshotError(f"{prefix}: {field}.{key}: {problem}")
            assert isinstance(number, int)
            numbers[name] = number
        result.append(RunningSnapshot(pod=pod, **numbers))
    return tuple(result)
