"""Reads what a report needs from one cluster: its VPAs and their matched running pods from
the API server, and the pods' usage and OOM kills from Prometheus, batched one query set per
namespace (as the loop reads history). Failures stay where they happened: a namespace whose
pods, targets or history cannot be read is reported as a problem and the others go on."""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from urllib3.exceptions import HTTPError

from analytics.sources.prometheus import PrometheusHistory, PrometheusQueryError
from recommender.kube.rest import KubeApiError, KubeClient
from recommender.kube.targets import TargetResolver
from recommender.loop.pods import matched_pods, pod_view
from recommender.loop.samples import pod_status_kills
from recommender.report.compute import KILL_SCHEMA
from recommender.report.inventory import (
    POD_SCHEMA,
    TARGET_SCHEMA,
    WORKLOAD_SCHEMA,
    InventoryError,
    frame,
    is_running,
    pod_rows,
    target_rows,
    workload_row,
)
from recommender.vpa.objects import InvalidVpaError, VerticalPodAutoscaler, parse_vpa
from recommender.vpa.selection import is_selected

VPA_API = "/apis/autoscaling.k8s.io/v1"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ScanOptions:
    """Which VPAs of which namespaces (empty: all), over which window."""

    cluster: str
    start: dt.datetime
    end: dt.datetime
    namespaces: Sequence[str] = ()
    recommender_name: str = "vpa-fleet"
    all_recommenders: bool = False
    serves: Callable[[str], bool] | None = None
    """Namespaces of this cluster to report (a fleet file's include/exclude); None: all."""


@dataclass
class Scan:
    """The frames of one or more clusters (see `recommender.report.inventory`), samples
    (`analytics.sources.prometheus.USAGE_COLUMNS`), OOM kills per pod container, and the
    problems met on the way (`failures`: what could not be read at all)."""

    pods: list[pl.DataFrame] = field(default_factory=list)
    targets: list[pl.DataFrame] = field(default_factory=list)
    workloads: list[pl.DataFrame] = field(default_factory=list)
    samples: list[pl.DataFrame] = field(default_factory=list)
    kills: list[pl.DataFrame] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    queries: int = 0
    vpas: int = 0

    def frames(self) -> tuple[pl.DataFrame, ...]:
        def concat(parts: list[pl.DataFrame], schema: dict[str, Any]) -> pl.DataFrame:
            return pl.concat(parts, how="vertical") if parts else pl.DataFrame(schema=schema)

        sample_schema: dict[str, Any] = {
            "timestamp": pl.Datetime("ms", "UTC"),
            "cluster": pl.String,
            "namespace": pl.String,
            "pod": pl.String,
            "container": pl.String,
            "cpu": pl.Float64,
            "memory": pl.Float64,
        }
        return (
            concat(self.pods, POD_SCHEMA),
            concat(self.targets, TARGET_SCHEMA),
            concat(self.workloads, WORKLOAD_SCHEMA),
            concat(self.samples, sample_schema),
            concat(self.kills, KILL_SCHEMA),
        )


def _list_vpas(kube: KubeClient, namespaces: Sequence[str]) -> list[dict[str, Any]]:
    paths = [f"{VPA_API}/namespaces/{ns}/verticalpodautoscalers" for ns in namespaces] or [
        f"{VPA_API}/verticalpodautoscalers"
    ]
    items: list[dict[str, Any]] = []
    for path in paths:
        found, _ = kube.list_all(path)
        items.extend(found)
    return items


def scan_cluster(
    kube: KubeClient,
    prometheus: PrometheusHistory,
    options: ScanOptions,
    scan: Scan,
    progress: Progress,
) -> None:
    """Add one cluster's frames to `scan`."""
    by_namespace: dict[str, list[VerticalPodAutoscaler]] = defaultdict(list)
    try:
        listed = _list_vpas(kube, options.namespaces)
    except (KubeApiError, HTTPError) as error:
        scan.failures.append(f"{options.cluster}: cannot list VPAs: {error}")
        progress(scan.failures[-1])
        return
    for obj in listed:
        try:
            vpa = parse_vpa(obj)
        except InvalidVpaError as error:
            scan.problems.append(f"{options.cluster}: skipped: {error}")
            continue
        if options.serves is not None and not options.serves(vpa.metadata.namespace):
            continue
        if options.all_recommenders or is_selected(vpa, options.recommender_name):
            by_namespace[vpa.metadata.namespace].append(vpa)
    total = len(by_namespace)
    chosen = "any recommender" if options.all_recommenders else options.recommender_name
    progress(
        f"{options.cluster}: {sum(map(len, by_namespace.values()))} VPA(s) of {chosen} "
        f"in {total} namespace(s)"
    )
    resolver = TargetResolver(kube)
    for number, namespace in enumerate(sorted(by_namespace), 1):
        began = time.monotonic()
        queries_before = prometheus.query_count
        vpas = sorted(by_namespace[namespace], key=lambda v: v.metadata.name)
        try:
            pods, samples = _namespace(kube, prometheus, resolver, options, vpas, scan=scan)
        except (KubeApiError, HTTPError, PrometheusQueryError, InventoryError) as error:
            scan.failures.append(f"{options.cluster}/{namespace}: {error}")
            progress(f"{options.cluster}: [{number}/{total}] {namespace}: failed: {error}")
            continue
        finally:
            scan.queries += prometheus.query_count - queries_before
        progress(
            f"{options.cluster}: [{number}/{total}] {namespace}: {len(vpas)} VPA(s), "
            f"{pods} pod(s), {prometheus.query_count - queries_before} queries, "
            f"{samples} samples ({time.monotonic() - began:.1f} s)"
        )


def _namespace(
    kube: KubeClient,
    prometheus: PrometheusHistory,
    resolver: TargetResolver,
    options: ScanOptions,
    vpas: Sequence[VerticalPodAutoscaler],
    *,
    scan: Scan,
) -> tuple[int, int]:
    """One namespace's frames added to `scan`; returns (matched pods, samples)."""
    cluster, namespace = options.cluster, vpas[0].metadata.namespace
    items, _ = kube.list_all(f"/api/v1/namespaces/{namespace}/pods")
    running = [pod for pod in items if is_running(pod)]
    views = [pod_view(pod) for pod in running]
    by_name = {view.name: pod for view, pod in zip(views, running, strict=True)}
    resolver.prefetch(namespace, vpas)
    pod_part, target_part, workload_part = [], [], []
    matched_names: set[str] = set()
    matched_views = []
    for vpa in vpas:
        resolution = resolver.resolve(vpa)
        if resolution.config_unsupported:
            scan.problems.append(f"{cluster}: VPA {vpa.key}: {resolution.config_unsupported}")
        for view in matched_pods(resolution.selector, views):
            pod_part += pod_rows(cluster, vpa.metadata.name, by_name[view.name])
            if view.name not in matched_names:
                matched_names.add(view.name)
                matched_views.append(view)
        target_part += target_rows(cluster, vpa)
        workload_part.append(workload_row(cluster, vpa))
    history = prometheus.fetch(namespace, options.start, options.end)
    samples = history.samples.filter(pl.col("pod").is_in(sorted(matched_names)))
    scan.pods.append(frame(pod_part, POD_SCHEMA))
    scan.targets.append(frame(target_part, TARGET_SCHEMA))
    scan.workloads.append(frame(workload_part, WORKLOAD_SCHEMA))
    scan.samples.append(samples)
    scan.kills.append(_kills(history.oom_kills, cluster, matched_views, options))
    scan.vpas += len(vpas)
    return len(matched_names), samples.height


def _kills(
    from_prometheus: pl.DataFrame,
    cluster: str,
    views: Sequence[Any],
    options: ScanOptions,
) -> pl.DataFrame:
    """OOM kills per pod container in the window: Prometheus' count, or 1 when only the pod's
    status (`lastState.terminated`, which holds the last termination only) shows one."""
    keys = ["cluster", "namespace", "pod", "container"]
    counted = from_prometheus.group_by(keys).agg(pl.len().cast(pl.Int64).alias("prometheus"))
    status = pod_status_kills(cluster, views)
    start = pl.lit(options.start).cast(pl.Datetime("ms", "UTC"))
    end = pl.lit(options.end).cast(pl.Datetime("ms", "UTC"))
    status = (
        status.filter((pl.col("timestamp") >= start) & (pl.col("timestamp") < end))
        .group_by(keys)
        .agg(pl.len().cast(pl.Int64).alias("status"))
    )
    both = counted.join(status, on=keys, how="full", coalesce=True)
    merged = both.select(
        *keys,
        pl.max_horizontal(pl.col("prometheus").fill_null(0), pl.col("status").fill_null(0)).alias(
            "oom_kills"
        ),
    )
    return merged.cast(KILL_SCHEMA)  # type: ignore[arg-type]
