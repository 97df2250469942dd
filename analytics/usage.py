"""The usage sample frame: its schema, validation, and preparation for ingestion.

One row is one (timestamp, container) sample:

| column | type | meaning |
|---|---|---|
| timestamp | Datetime (naive = UTC) | when the sample was measured |
| cluster, namespace, workload, pod, container | String | which container |
| cpu | float | CPU usage, cores |
| memory | float | memory working set, bytes |
| cpu_request | float, optional | CPU request, cores (informational) |
| memory_request | float, optional | memory request, bytes; used as the OOM-kill memory |
| memory_limit | float, optional | memory limit, bytes (informational) |
| oom | bool, optional | the container was OOM-killed at this time (our extension) |

Validation is strict about structure (a missing column, a wrong type, a null key, a negative or
non-finite request is an error naming the column and the row) and lenient about measurements:
a missing, NaN, infinite or negative `cpu` or `memory` value drops that one sample and is counted
by reason, as the stock recommender drops invalid samples.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Final

import numpy as np
import polars as pl

from analytics.arrays import BoolArray, Int64Array
from analytics.go_semantics import resource_amount_array

__all__ = [
    "AGGREGATE_KEYS",
    "CONTAINER_KEYS",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "PreparedSamples",
    "SampleError",
    "prepare_samples",
]


AGGREGATE_KEYS: Final = ("cluster", "namespace", "workload", "container")
"""One aggregate (histograms, recommendation) per workload container; pods are replicas."""

CONTAINER_KEYS: Final = ("cluster", "namespace", "workload", "pod", "container")
"""One container instance: a container of one pod."""

REQUIRED_COLUMNS: Final = ("timestamp", *CONTAINER_KEYS, "cpu", "memory")
OPTIONAL_COLUMNS: Final = ("cpu_request", "memory_request", "memory_limit", "oom")
_NUMERIC_OPTIONAL: Final = ("cpu_request", "memory_request", "memory_limit")


class SampleError(ValueError):
    """A usage frame that does not follow the schema; the message names the column and row."""


@dataclass(frozen=True)
class PreparedSamples:
    """Valid samples in canonical order: by timestamp, then by container key.

    `container_keys` has one row per distinct container (sorted by key); `container` maps each
    sample to its row there. CPU is in millicores and memory in bytes, truncated to integers like
    the stock recommender's resource amounts; `*_valid` says which samples are usable.
    """

    t_ns: Int64Array
    container: Int64Array
    container_keys: pl.DataFrame
    cpu_millicores: Int64Array
    cpu_valid: BoolArray
    memory_bytes: Int64Array
    memory_valid: BoolArray
    oom: BoolArray
    oom_memory_bytes: Int64Array
    skipped: Counter[str]

    def __len__(self) -> int:
        return int(self.t_ns.shape[0])

    @property
    def end_ns(self) -> int | None:
        """Timestamp of the last sample, or None when there is none."""
        return int(self.t_ns[-1]) if len(self) else None


def _fail(column: str, row: int | None, problem: str) -> SampleError:
    where = f"column '{column}'" + (f", row {row}" if row is not None else "")
    return SampleError(f"{where}: {problem}")


def _first_row(frame: pl.DataFrame, condition: pl.Expr) -> int | None:
    hits = frame.select(pl.arg_where(condition).first()).item()
    return None if hits is None else int(hits)


def _check_structure(frame: pl.DataFrame) -> None:
    missing = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
    if missing:
        raise SampleError(
            f"missing column(s) {', '.join(repr(m) for m in missing)}; "
            f"required: {', '.join(REQUIRED_COLUMNS)}"
        )
    schema = frame.schema
    if not isinstance(schema["timestamp"], pl.Datetime):
        raise _fail("timestamp", None, f"must be a Datetime, got {schema['timestamp']}")
    for name in CONTAINER_KEYS:
        if schema[name] not in (pl.String, pl.Categorical) and not isinstance(
            schema[name], pl.Enum
        ):
            raise _fail(name, None, f"must be a string, got {schema[name]}")
    for name in ("cpu", "memory", *_NUMERIC_OPTIONAL):
        if name in schema and not schema[name].is_numeric():
            raise _fail(name, None, f"must be numeric, got {schema[name]}")
    if "oom" in schema and schema["oom"] != pl.Boolean:
        raise _fail("oom", None, f"must be Boolean, got {schema['oom']}")


def _check_values(frame: pl.DataFrame) -> None:
    row = _first_row(frame, pl.col("timestamp").is_null())
    if row is not None:
        raise _fail("timestamp", row, "is null")
    for name in CONTAINER_KEYS:
        row = _first_row(frame, pl.col(name).is_null() | (pl.col(name).cast(pl.String) == ""))
        if row is not None:
            raise _fail(name, row, "is null or empty")
    for name in _NUMERIC_OPTIONAL:
        if name not in frame.columns:
            continue
        value = pl.col(name).cast(pl.Float64)
        bad = value.is_not_null() & (value.is_nan() | value.is_infinite() | (value < 0))
        row = _first_row(frame, bad)
        if row is not None:
            found = frame[name][row]
            raise _fail(name, row, f"must be a finite, non-negative number, got {found}")


def _measurement_checks(name: str) -> dict[str, pl.Expr]:
    value = pl.col(name).cast(pl.Float64)
    return {
        f"{name}_missing": value.is_null(),
        f"{name}_nan": value.is_nan(),
        f"{name}_infinite": value.is_infinite(),
        f"{name}_negative": value < 0,
    }


def _in_canonical_order(t_ns: Int64Array, container: Int64Array) -> bool:
    later = t_ns[1:] > t_ns[:-1]
    tied = (t_ns[1:] == t_ns[:-1]) & (container[1:] >= container[:-1])
    return bool((later | tied).all())


def prepare_samples(frame: pl.DataFrame) -> PreparedSamples:
    """Validate a usage frame and put its samples in canonical order, counting dropped samples."""
    _check_structure(frame)
    _check_values(frame)
    skipped: Counter[str] = Counter()
    timestamp = pl.col("timestamp")
    time_type = frame.schema["timestamp"]
    if isinstance(time_type, pl.Datetime) and time_type.time_zone is not None:
        timestamp = timestamp.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    columns = [timestamp.dt.cast_time_unit("ns").cast(pl.Int64).alias("t_ns")]
    for resource in ("cpu", "memory"):
        checks = _measurement_checks(resource)
        invalid = pl.lit(False)
        for reason, condition in checks.items():
            # Reasons are exclusive: count a sample under the first that applies.
            counted = condition.fill_null(False) & ~invalid
            columns.append(counted.alias(reason))
            invalid = invalid | condition.fill_null(False)
        columns.append((~invalid).alias(f"{resource}_valid"))
        columns.append(pl.col(resource).cast(pl.Float64).alias(f"{resource}_value"))
    oom = pl.col("oom").fill_null(False) if "oom" in frame.columns else pl.lit(False)
    columns.append(oom.alias("oom"))
    request = (
        pl.col("memory_request").cast(pl.Float64)
        if "memory_request" in frame.columns
        else pl.lit(None, dtype=pl.Float64)
    )
    columns.append(request.alias("memory_request_value"))
    keys = [pl.col(name).cast(pl.String) for name in CONTAINER_KEYS]
    work = frame.select(*keys, *columns)

    for resource in ("cpu", "memory"):
        for reason in _measurement_checks(resource):
            count = int(work[reason].sum())
            if count:
                skipped[reason] = count

    container_keys = work.select(CONTAINER_KEYS).unique().sort(CONTAINER_KEYS)
    container_keys = container_keys.with_row_index("container_index").with_columns(
        pl.col("container_index").cast(pl.Int64)
    )
    work = work.join(container_keys, on=list(CONTAINER_KEYS), how="left", maintain_order="left")
    if not _in_canonical_order(work["t_ns"].to_numpy(), work["container_index"].to_numpy()):
        work = work.sort(["t_ns", "container_index"], maintain_order=True)

    cpu = resource_amount_array(work["cpu_value"].fill_null(0.0).fill_nan(0.0).to_numpy() * 1000.0)
    memory = resource_amount_array(work["memory_value"].fill_null(0.0).fill_nan(0.0).to_numpy())
    memory_valid = work["memory_valid"].to_numpy()
    oom_flag = work["oom"].to_numpy()
    request_column = work["memory_request_value"]
    has_request = request_column.is_not_null().to_numpy()
    request_bytes = resource_amount_array(request_column.fill_null(0.0).to_numpy())
    oom_memory = np.where(has_request, request_bytes, memory)
    oom_usable = has_request | memory_valid
    unusable_ooms = int(np.count_nonzero(oom_flag & ~oom_usable))
    if unusable_ooms:
        skipped["oom_without_memory"] = unusable_ooms
    return PreparedSamples(
        t_ns=work["t_ns"].to_numpy(),
        container=work["container_index"].to_numpy(),
        container_keys=container_keys.drop("container_index"),
        cpu_millicores=cpu,
        cpu_valid=work["cpu_valid"].to_numpy(),
        memory_bytes=memory,
        memory_valid=memory_valid,
        oom=oom_flag & oom_usable,
        oom_memory_bytes=oom_memory,
        skipped=skipped,
    )
