"""A live Prometheus exported to the Parquet trace format, to replay one's own cluster.

`export_trace` reads each namespace with `PrometheusHistory` (a few range queries per
namespace and chunk, whatever the number of pods), adds what the simulator starts from
(kube-state-metrics' `kube_pod_container_resource_requests` and `..._limits`), names each
pod's workload, and marks OOM kills; the result is the usage frame of `analytics.usage`
that `vpa-fleet simulate` and `vpa-fleet recommend` read.

Workloads: with `workload_label`, a pod's workload is the value of that Kubernetes label as
kube-state-metrics exports it (`kube_pod_labels{label_<name>=...}`). Without it, the workload
is the pod name without the suffixes Kubernetes controllers add: `<deployment>-<template
hash>-<5 chars>` (Deployment via ReplicaSet), `<name>-<5 chars>` (DaemonSet, Job, bare
ReplicaSet), `<statefulset>-<ordinal>`. A pod matching none of them is its own workload.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import polars as pl

from analytics.sources.prometheus import PrometheusHistory
from analytics.sources.promql import (
    Chunk,
    LabelMatcher,
    LabelNames,
    evaluation_grid,
    matrix_samples,
    plan_chunks,
    selector,
)

__all__ = [
    "TRACE_COLUMNS",
    "ExportReport",
    "PrometheusExport",
    "export_trace",
    "workload_of_pod",
]

TRACE_COLUMNS: Final = (
    "timestamp",
    "cluster",
    "namespace",
    "workload",
    "pod",
    "container",
    "cpu",
    "memory",
    "cpu_request",
    "memory_request",
    "memory_limit",
    "oom",
)
"""Columns of an exported trace, in order."""

# Pod name suffixes come from Kubernetes' `rand.SafeEncodeString` alphabet (no vowels, no
# 0/1/3, so that generated names never spell words).
_SAFE: Final = "[bcdfghjklmnpqrstvwxz2456789]"
_REPLICASET_POD: Final = re.compile(rf"^(.+)-{_SAFE}{{6,10}}-{_SAFE}{{5}}$")
_GENERATED_POD: Final = re.compile(rf"^(.+)-{_SAFE}{{5}}$")
_STATEFUL_POD: Final = re.compile(r"^(.+)-\d+$")
_SPEC_STEP_S: Final = 3600
"""Requests, limits and labels change rarely: read them hourly."""


def workload_of_pod(pod: str) -> str:
    """The workload a pod name says it belongs to (see the module docstring)."""
    for pattern in (_REPLICASET_POD, _GENERATED_POD, _STATEFUL_POD):
        match = pattern.match(pod)
        if match:
            return match.group(1)
    return pod


@dataclass(frozen=True)
class ExportReport:
    """What an export read: rows and containers per namespace, HTTP calls, samples dropped
    by reason, and containers without a CPU or memory request (the simulator needs one)."""

    rows: dict[str, int]
    containers: dict[str, int]
    queries: int
    dropped: Counter[str]
    without_request: list[str]


class PrometheusExport(PrometheusHistory):
    """`PrometheusHistory` plus the kube-state-metrics series a trace also needs."""

    def spec_series(self, namespace: str, metric: str, *matchers: LabelMatcher) -> str:
        """A kube-state-metrics selector for one namespace."""
        scope = [*self.config.kube_state_metrics_selector, *self._scope(namespace), *matchers]
        return selector(metric, scope)

    def pod_labels(
        self,
        namespace: str,
        query: str,
        window: tuple[datetime, datetime],
        pod_label: str,
        label: str,
    ) -> pl.DataFrame:
        """Each pod's first value of `label` on the series of `query`: columns pod, workload."""
        result = []
        for chunk in self._spec_chunks(window):
            result.extend(self._range_query(namespace, query, chunk))
        pairs = {}
        for series in result:
            metric = series.get("metric", {})
            pod, value = metric.get(pod_label), metric.get(label)
            if pod and value and pod not in pairs:
                pairs[str(pod)] = str(value)
        return pl.DataFrame(
            {"pod": list(pairs), "workload": list(pairs.values())},
            schema={"pod": pl.String, "workload": pl.String},
        )

    def _spec_chunks(self, window: tuple[datetime, datetime]) -> list[Chunk]:
        """Hourly points over the window (one point at its start if shorter than an hour)."""
        start_us = _unix_us(window[0])
        grid = evaluation_grid(start_us, _unix_us(window[1]), _SPEC_STEP_S)
        first, last = grid if grid is not None else (start_us // 1_000_000,) * 2
        return plan_chunks(first, last, _SPEC_STEP_S, self.config.max_points_per_series)

    def first_values(
        self, namespace: str, query: str, start: datetime, end: datetime, labels: LabelNames
    ) -> pl.DataFrame:
        """Each (pod, container)'s first value of `query` over [start, end), read hourly:
        columns pod, container, value."""
        empty = pl.DataFrame(schema={"pod": pl.String, "container": pl.String, "value": pl.Float64})
        chunks = self._spec_chunks((start, end))
        result = []
        for chunk in chunks:
            result.extend(self._range_query(namespace, query, chunk))
        first_ms, last_ms = chunks[0].start_s * 1000, chunks[-1].end_s * 1000
        frame, _ = matrix_samples(result, labels, first_ms, last_ms, "spec")
        if frame.height == 0:
            return empty
        return (
            frame.sort("timestamp_ms")
            .group_by("pod", "container", maintain_order=True)
            .agg(pl.col("value").first())
            .sort("pod", "container")
        )


def _unix_us(moment: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is UTC (as in `analytics.usage`)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _workloads(
    source: PrometheusExport,
    namespace: str,
    window: tuple[datetime, datetime],
    *,
    workload_label: str | None,
    labels: LabelNames,
) -> pl.Expr:
    """The `workload` column: from the pod label when asked for, else from the pod name."""
    by_name = pl.col("pod").map_elements(workload_of_pod, return_dtype=pl.String)
    if workload_label is None:
        return by_name.alias("workload")
    series = f"label_{workload_label}"
    query = source.spec_series(namespace, "kube_pod_labels")
    points = source.pod_labels(namespace, query, window, labels.pod, series)
    if points.height == 0:
        return by_name.alias("workload")
    mapping = dict(zip(points["pod"], points["workload"], strict=True))
    return (
        pl.col("pod")
        .replace_strict(mapping, default=None, return_dtype=pl.String)
        .fill_null(by_name)
        .alias("workload")
    )


def _mark_kills(samples: pl.DataFrame, kills: pl.DataFrame) -> pl.DataFrame:
    """`oom`: true on the sample of each container nearest to each of its kills."""
    if kills.height == 0 or samples.height == 0:
        return samples.with_columns(pl.lit(False).alias("oom"))
    indexed = samples.with_row_index("row").sort("timestamp")
    nearest = (
        kills.select("pod", "container", "timestamp")
        .sort("timestamp")
        .join_asof(
            indexed.select("pod", "container", "timestamp", "row"),
            on="timestamp",
            by=["pod", "container"],
            strategy="nearest",
            # Both sides are sorted by time; polars cannot check it within `by` groups.
            check_sortedness=False,
        )
        .drop_nulls("row")
    )
    killed = nearest["row"].unique()
    return (
        samples.with_row_index("row")
        .with_columns(pl.col("row").is_in(killed.implode()).alias("oom"))
        .drop("row")
    )


def export_trace(
    source: PrometheusExport,
    namespaces: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    workload_label: str | None = None,
) -> tuple[pl.DataFrame, ExportReport]:
    """Every container of `namespaces` over [start, end) as a trace (`TRACE_COLUMNS`).

    Requests and the memory limit are each container's first value in the window (the
    simulator starts from them); a container without kube-state-metrics requests has null
    ones and is listed in the report. Raises `PrometheusQueryError` on a failed query.
    """
    config = source.config
    label_names = LabelNames(pod=config.labels.pod, container=config.labels.container)
    frames = []
    rows: dict[str, int] = {}
    containers: dict[str, int] = {}
    dropped: Counter[str] = Counter()
    queries_before = source.query_count
    for namespace in namespaces:
        history = source.fetch(namespace, start, end)
        dropped.update(history.dropped)
        samples = history.samples
        resource = LabelMatcher(name="resource", value="cpu")
        memory = LabelMatcher(name="resource", value="memory")
        spec = {
            "cpu_request": source.spec_series(
                namespace, "kube_pod_container_resource_requests", resource
            ),
            "memory_request": source.spec_series(
                namespace, "kube_pod_container_resource_requests", memory
            ),
            "memory_limit": source.spec_series(
                namespace, "kube_pod_container_resource_limits", memory
            ),
        }
        for column, query in spec.items():
            values = source.first_values(namespace, query, start, end, label_names)
            samples = samples.join(
                values.rename({"value": column}), on=["pod", "container"], how="left"
            )
        samples = samples.with_columns(
            _workloads(
                source,
                namespace,
                (start, end),
                workload_label=workload_label,
                labels=label_names,
            )
        )
        samples = _mark_kills(samples, history.oom_kills)
        frame = samples.select(TRACE_COLUMNS).sort("pod", "container", "timestamp")
        rows[namespace] = frame.height
        containers[namespace] = frame.select("pod", "container").unique().height
        frames.append(frame)
    trace = pl.concat(frames) if frames else pl.DataFrame()
    missing = (
        trace.filter(pl.col("cpu_request").is_null() | pl.col("memory_request").is_null())
        .select("namespace", "pod", "container")
        .unique()
        .sort("namespace", "pod", "container")
        if trace.height
        else pl.DataFrame(schema={"namespace": pl.String, "pod": pl.String, "container": pl.String})
    )
    report = ExportReport(
        rows=rows,
        containers=containers,
        queries=source.query_count - queries_before,
        dropped=dropped,
        without_request=["/".join(row) for row in missing.iter_rows()],
    )
    return trace, report
