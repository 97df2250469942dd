"""Prometheus history and pod-status OOM kills turned into the engine's usage frame
(`analytics.usage`), with each container's VPA as its `workload`. Pure polars.

Series of containers that no matched pod runs are left out (upstream records samples only for
containers of pods it tracks): a pod deleted before its history is read contributes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from analytics.sources.prometheus import KILL_COLUMNS, TIMESTAMP
from recommender.loop.pods import PodView

_KEYS = ["namespace", "pod", "container"]

USAGE_SCHEMA: dict[str, pl.DataType] = {
    "timestamp": TIMESTAMP,
    "cluster": pl.String(),
    "namespace": pl.String(),
    "workload": pl.String(),
    "pod": pl.String(),
    "container": pl.String(),
    "cpu": pl.Float64(),
    "memory": pl.Float64(),
    "memory_request": pl.Float64(),
    "oom": pl.Boolean(),
}


def usage_rows(samples: pl.DataFrame, assigned: pl.DataFrame) -> pl.DataFrame:
    """Samples (`USAGE_COLUMNS`) of the assigned containers, one row per VPA they feed."""
    joined = samples.join(assigned.select([*_KEYS, "workload"]), on=_KEYS, how="inner")
    return joined.with_columns(
        pl.lit(None, pl.Float64).alias("memory_request"), pl.lit(False).alias("oom")
    ).select(USAGE_SCHEMA.keys())


def oom_rows(kills: pl.DataFrame, assigned: pl.DataFrame) -> pl.DataFrame:
    """OOM kills (`KILL_COLUMNS`) of the assigned containers, recorded at their memory request.

    A kill of a container without a memory request is kept; the engine counts it as
    `oom_without_memory` and drops it (there is no usage value on a kill row).
    """
    joined = kills.join(
        assigned.select([*_KEYS, "workload", "memory_request"]), on=_KEYS, how="inner"
    )
    return joined.with_columns(
        pl.lit(None, pl.Float64).alias("cpu"),
        pl.lit(None, pl.Float64).alias("memory"),
        pl.lit(True).alias("oom"),
    ).select(USAGE_SCHEMA.keys())


def pod_status_kills(cluster: str, pods: Iterable[PodView]) -> pl.DataFrame:
    """`KILL_COLUMNS` rows for the OOM kills pods report in `lastState`."""
    rows = [
        (kill.finished_at, cluster, pod.namespace, pod.name, kill.container)
        for pod in pods
        for kill in pod.oom_kills
    ]
    schema: dict[str, pl.DataType] = {name: pl.String() for name in KILL_COLUMNS}
    schema["timestamp"] = TIMESTAMP
    return pl.DataFrame(rows, schema=schema, orient="row")


def empty_usage() -> pl.DataFrame:
    return pl.DataFrame(schema=USAGE_SCHEMA)
