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

A store that keeps an hourly profile (`analytics.strategy_profile`, for `default`) adds its
row to each container as `"profile": "<base64>"` (`encode_profile`): the profile's named
arrays (`HourlyProfile.to_arrays`, whatever they are), slots still empty left out, integers as
successive differences, each array in the narrowest of int32/float32 that gives back the same
bits (else as it is), deflated.
A snapshot without one imports with an empty profile; a profile that does not decode is a
problem reported on its own (the container's other state still imports, its profile empty),
never a reason to refuse the rest.

Pure: no I/O. Model parameters are not part of a snapshot: the histograms' layouts and
half-lives are checked when reading and importing (a snapshot of other half-lives is refused),
the memory interval and OOM settings are the store's.
"""

from __future__ import annotations

import base64
import binascii
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from analytics.arrays import Int64Array
from analytics.container_state import AggregateState
from analytics.model_params import ModelParams
from analytics.store import AggregateStore
from analytics.strategy_profile import HourlyProfile
from analytics.usage import AGGREGATE_KEYS, CONTAINER_KEYS

__all__ = [
    "FORMAT_VERSION",
    "AggregateSnapshot",
    "RunningSnapshot",
    "SnapshotError",
    "decode_profile",
    "decode_state",
    "encode_profile",
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
    """One workload container: its serialized aggregate state, its running containers and,
    from a store that keeps one, its hourly profile (`encode_profile`; None without)."""

    container: str
    state: bytes
    running: tuple[RunningSnapshot, ...]
    profile: bytes | None = field(default=None, repr=False)


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
    profile = store.profile
    snapshots = [
        AggregateSnapshot(
            container=containers[row],
            state=store.aggregate_bytes(row),
            running=tuple(sorted(running_of[row], key=lambda r: r.pod)),
            profile=None
            if profile is None
            else encode_profile(profile.take(np.array([row], dtype=np.int64))),
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
) -> list[str]:
    """Add one workload's containers and running containers to the store, as exported.

    The store must not know the workload yet (import at start, before ingesting); otherwise,
    or for a snapshot that does not decode with the store's parameters, SnapshotError, and
    the store is left unchanged.

    A store that keeps an hourly profile takes the snapshots' profiles (empty where a snapshot
    has none); a profile that does not decode leaves that container's profile empty and is
    returned as a problem, the rest imports. A store without one ignores them.
    """
    where = f"workload {cluster}/{namespace}/{workload}"
    if store.workload_rows(cluster, namespace, workload).shape[0]:
        raise SnapshotError(f"{where}: the store already has state for this workload")
    states = _check_snapshots(snapshots, store.params, where)
    if not snapshots:
        return []
    problems: list[str] = []
    profiles = [] if store.profile is None else _profiles(snapshots, store.profile.slots, where)
    for _, problem in profiles:
        if problem:
            problems.append(problem)

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
    if store.profile is not None and any(p is not None for p, _ in profiles):
        arrays = store.profile.to_arrays()
        for offset, (profile, _) in enumerate(profiles):
            if profile is not None:
                for name, values in profile.to_arrays().items():
                    arrays[name][base + offset] = values[0]
        store.profile = HourlyProfile.from_arrays(arrays)

    running = [(base + i, s.container, r) for i, s in enumerate(snapshots) for r in s.running]
    if not running:
        return problems
    first = store.n_containers
    store.add_containers(
        _keys(CONTAINER_KEYS, [(cluster, namespace, workload, r.pod, c) for _, c, r in running]),
        np.array([row for row, _, _ in running], dtype=np.int64),
    )
    added = slice(first, first + len(running))
    for name in _RUNNING_INTS:
        column: Int64Array = getattr(store, name)
        column[added] = np.array([getattr(r, name) for _, _, r in running], dtype=np.int64)
    return problems


def _profiles(
    snapshots: Sequence[AggregateSnapshot], slots: int, where: str
) -> list[tuple[HourlyProfile | None, str]]:
    """Each snapshot's decoded profile (None without one) and the problem that left it out."""
    result: list[tuple[HourlyProfile | None, str]] = []
    for index, snapshot in enumerate(snapshots):
        if snapshot.profile is None:
            result.append((None, ""))
            continue
        prefix = f"{where}: {_label(index, snapshot.container)}: profile"
        try:
            profile = decode_profile(snapshot.profile, prefix)
        except SnapshotError as error:
            result.append((None, f"{error}; imported with an empty profile"))
            continue
        if profile.slots != slots:
            result.append(
                (
                    None,
                    f"{prefix}: {profile.slots} hourly slots, the store keeps {slots}; "
                    "imported with an empty profile",
                )
            )
            continue
        result.append((profile, ""))
    return result


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


# -- hourly profiles <-> bytes ---------------------------------------------------------------

_PROFILE_MAGIC: Final = b"HP\x01"
_PROFILE_MAX_BYTES: Final = 1 << 22
"""Largest inflated profile read back (a week of hourly slots takes a few KiB)."""
_SLOT, _ROW = 0, 1
_NARROWER: Final = {"<i8": "<i4", "<f8": "<f4"}
_DTYPES: Final = frozenset({"<i8", "<i4", "<f8", "<f4", "|b1"})


def encode_profile(profile: HourlyProfile) -> bytes:
    """One aggregate's profile (a profile of one row) as compact bytes, bit-exact.

    Layout (then deflated): magic, slots (u16), the filled slots as a bit mask, the number
    of arrays (u8), then per array its name, kind (per slot or per row), dtype as written,
    dtype as stored, and its values (of the filled slots only, for a per-slot array; integers
    as successive differences).
    """
    if len(profile) != 1:
        raise ValueError(f"encode_profile takes the profile of one aggregate, got {len(profile)}")
    slots = profile.slots
    arrays = profile.to_arrays()
    blank = HourlyProfile.empty(1, slots).to_arrays()
    filled = np.zeros(slots, dtype=bool)
    kinds = {}
    for name, array in arrays.items():
        if array.shape == (1, slots):
            kinds[name] = _SLOT
            filled |= _bits(array[0]) != _bits(blank[name][0].astype(array.dtype))
        elif array.shape == (1,):
            kinds[name] = _ROW
        else:
            raise ValueError(f"hourly profile array {name!r} has unexpected shape {array.shape}")
    parts = [_PROFILE_MAGIC, struct.pack("<HB", slots, len(arrays)), np.packbits(filled).tobytes()]
    for name, array in arrays.items():
        values = array[0][filled] if kinds[name] == _SLOT else array
        written = values.dtype.str
        stored = _narrowest(_differences(values))
        encoded = name.encode()
        parts.append(struct.pack("<B", len(encoded)) + encoded)
        parts.append(
            struct.pack("<B3s3s", kinds[name], written.encode(), stored.dtype.str.encode())
        )
        parts.append(stored.tobytes())
    return zlib.compress(b"".join(parts), 9)


def decode_profile(data: bytes, where: str) -> HourlyProfile:
    """The one-row profile of `encode_profile`'s bytes; SnapshotError starting with `where`."""
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(data, _PROFILE_MAX_BYTES)
        if inflater.unconsumed_tail or not inflater.eof:
            raise ValueError("not a complete deflated profile")
        if inflater.unused_data:
            raise ValueError(f"{len(inflater.unused_data)} unexpected byte(s) after it")
        return _profile_from_raw(raw)
    except (ValueError, zlib.error, struct.error) as error:
        raise SnapshotError(f"{where}: {error}") from None


def _profile_from_raw(raw: bytes) -> HourlyProfile:
    if not raw.startswith(_PROFILE_MAGIC):
        raise ValueError("not an hourly profile in the form the recommender writes")
    offset = len(_PROFILE_MAGIC)
    _need(raw, offset, 3)
    slots, count = struct.unpack_from("<HB", raw, offset)
    offset += 3
    mask_bytes = (slots + 7) // 8
    _need(raw, offset, mask_bytes)
    filled = np.unpackbits(np.frombuffer(raw, np.uint8, mask_bytes, offset))[:slots].astype(bool)
    offset += mask_bytes
    blank = HourlyProfile.empty(1, slots).to_arrays()
    arrays: dict[str, npt.NDArray[np.generic]] = {}
    for _ in range(count):
        _need(raw, offset, 1)
        (length,) = struct.unpack_from("<B", raw, offset)
        _need(raw, offset + 1, length + 7)
        name = raw[offset + 1 : offset + 1 + length].decode()
        offset += 1 + length
        kind, written_code, stored_code = struct.unpack_from("<B3s3s", raw, offset)
        offset += 7
        written, stored = written_code.decode(), stored_code.decode()
        if written not in _DTYPES or stored not in _DTYPES or kind not in (_SLOT, _ROW):
            raise ValueError(f"array {name!r}: unknown kind or dtype ({kind}, {written}, {stored})")
        if name in arrays:
            raise ValueError(f"array {name!r} appears twice")
        if name not in blank:
            raise ValueError(f"array {name!r} is not part of an hourly profile")
        size = int(filled.sum()) if kind == _SLOT else 1
        _need(raw, offset, size * np.dtype(stored).itemsize)
        values = np.frombuffer(raw, np.dtype(stored), size, offset)
        offset += values.nbytes
        widened = _sums(values.astype(written))
        if kind == _SLOT:
            array = blank[name].astype(written).copy()
            array[0][filled] = widened
        else:
            array = widened.copy()
        arrays[name] = array
    if offset != len(raw):
        raise ValueError(f"{len(raw) - offset} unexpected byte(s) after the arrays")
    return HourlyProfile.from_arrays(arrays)


def _need(raw: bytes, offset: int, size: int) -> None:
    if offset + size > len(raw):
        raise ValueError(f"truncated: {len(raw)} bytes inflated, {offset + size} needed")


def _differences(values: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    """Integers as their first value and successive differences (modulo 2**64, so exact);
    other values as they are. Neighbouring hours differ by little: the differences deflate."""
    if values.dtype.kind != "i" or values.shape[0] == 0:
        return values
    result: npt.NDArray[np.generic] = np.diff(values, prepend=np.zeros(1, values.dtype))
    return result


def _sums(values: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    """Inverse of `_differences`."""
    if values.dtype.kind != "i" or values.shape[0] == 0:
        return values
    result: npt.NDArray[np.generic] = np.cumsum(values, dtype=values.dtype)
    return result


def _bits(values: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    """The values' bit patterns (NaN payloads and -0.0 compare exactly)."""
    return values.view(f"u{values.dtype.itemsize}") if values.dtype.kind == "f" else values


def _narrowest(values: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    """`values` as the narrower dtype when that gives back the same bits, else as they are."""
    narrower = _NARROWER.get(values.dtype.str)
    if narrower is None:
        return values
    with np.errstate(over="ignore", invalid="ignore"):
        narrow = values.astype(narrower)
    if np.array_equal(_bits(narrow.astype(values.dtype)), _bits(values)):
        return narrow
    return values


# -- snapshots <-> JSON ------------------------------------------------------------------------


def snapshot_to_json(snapshots: Sequence[AggregateSnapshot]) -> list[dict[str, object]]:
    """The JSON form: one object per container, the state (and profile) in base64, integers
    as integers."""
    result: list[dict[str, object]] = []
    for snapshot in snapshots:
        item: dict[str, object] = {
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
        if snapshot.profile is not None:
            item["profile"] = base64.b64encode(snapshot.profile).decode("ascii")
        result.append(item)
    return result


def snapshot_from_json(
    data: object,
    where: str,
    params: ModelParams | None = None,
    problems: list[str] | None = None,
) -> tuple[AggregateSnapshot, ...]:
    """Inverse of `snapshot_to_json`, checking everything `import_workload` would.

    Each state must decode with `params` (the stock defaults when None): histograms of the
    expected layouts and half-lives, not truncated, nothing after them. SnapshotError for
    that, a missing field, a wrong type, bad base64, a duplicate container or pod, or an
    unsupported format version; the message starts with `where` and names the container and
    the field. An entry's optional `profile` that does not decode is appended to `problems`
    and left out, the entry kept (SnapshotError as well when `problems` is None).
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
                profile=_profile(item, prefix, problems),
            )
        )
    return tuple(snapshots)


def _profile(item: Mapping[str, object], prefix: str, problems: list[str] | None) -> bytes | None:
    """The entry's profile bytes, checked to decode; None without one. A profile that does not
    decode is appended to `problems` and left out (SnapshotError when `problems` is None)."""
    if "profile" not in item:
        return None
    value = item["profile"]
    try:
        if not isinstance(value, str):
            raise SnapshotError(
                f"{prefix}: profile: must be a base64 string, got {_describe(value)}"
            )
        try:
            data = base64.b64decode(value.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError) as error:
            raise SnapshotError(f"{prefix}: profile: not valid base64 ({error})") from None
        decode_profile(data, f"{prefix}: profile")
    except SnapshotError as error:
        if problems is None:
            raise
        problems.append(f"{error}; restored with an empty profile")
        return None
    return data


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
