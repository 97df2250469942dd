"""What a report compares, read from Kubernetes objects: each matched pod's container
requests, and each VPA's recommended target. Pure: callers bring the JSON and the VPAs.

Frames:

* `POD_SCHEMA`: one row per (VPA, pod, container) of a running pod the VPA's selector
  matches, with the container's requests from the pod spec (cores, bytes; null when unset).
* `TARGET_SCHEMA`: one row per container of a VPA's `status.recommendation`, its target per
  pod (cores, bytes; null when the recommendation leaves a resource out).
* `WORKLOAD_SCHEMA`: one row per VPA: its targetRef and which recommender it names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import polars as pl

from analytics.quantity import parse_cpu_cores, parse_memory_bytes
from recommender.vpa.objects import VerticalPodAutoscaler

JSON = dict[str, Any]

KEY: Final = ("cluster", "namespace", "workload")
"""A workload of a report is a VPA: `workload` is the VPA's name."""

POD_SCHEMA: Final = {
    "cluster": pl.String,
    "namespace": pl.String,
    "workload": pl.String,
    "pod": pl.String,
    "container": pl.String,
    "cpu_request": pl.Float64,
    "memory_request": pl.Float64,
}
TARGET_SCHEMA: Final = {
    "cluster": pl.String,
    "namespace": pl.String,
    "workload": pl.String,
    "container": pl.String,
    "cpu_target": pl.Float64,
    "memory_target": pl.Float64,
}
WORKLOAD_SCHEMA: Final = {
    "cluster": pl.String,
    "namespace": pl.String,
    "workload": pl.String,
    "target_kind": pl.String,
    "target_name": pl.String,
    "recommender": pl.String,
}

FINISHED_PHASES: Final = frozenset({"Succeeded", "Failed"})
"""Pods in these phases hold no resources: left out."""


class InventoryError(ValueError):
    """A quantity that does not parse; the message names the object, field and value."""


def _quantity(text: object, cpu: bool, where: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_cpu_cores(str(text)) if cpu else float(parse_memory_bytes(str(text)))
    except ValueError as error:
        raise InventoryError(f"{where}: {error} (got {text!r})") from None


def is_running(pod: JSON) -> bool:
    """Whether the pod holds its requests: not deleted and not finished."""
    metadata = pod.get("metadata") or {}
    phase = (pod.get("status") or {}).get("phase")
    return not metadata.get("deletionTimestamp") and phase not in FINISHED_PHASES


def pod_rows(cluster: str, workload: str, pod: JSON) -> list[tuple[Any, ...]]:
    """`POD_SCHEMA` rows of one pod matched by the VPA `workload`."""
    metadata = pod.get("metadata") or {}
    namespace, name = str(metadata.get("namespace", "")), str(metadata.get("name", ""))
    rows = []
    for index, container in enumerate((pod.get("spec") or {}).get("containers") or []):
        requests = (container.get("resources") or {}).get("requests") or {}
        where = f"Pod {namespace}/{name}: spec.containers[{index}].resources.requests"
        rows.append(
            (
                cluster,
                namespace,
                workload,
                name,
                str(container.get("name", "")),
                _quantity(requests.get("cpu"), True, f"{where}.cpu"),
                _quantity(requests.get("memory"), False, f"{where}.memory"),
            )
        )
    return rows


def target_rows(cluster: str, vpa: VerticalPodAutoscaler) -> list[tuple[Any, ...]]:
    """`TARGET_SCHEMA` rows of the VPA's recommendation (none without one)."""
    recommendation = vpa.status.recommendation
    if recommendation is None:
        return []
    rows = []
    for index, entry in enumerate(recommendation.container_recommendations):
        where = (
            f"VerticalPodAutoscaler {vpa.key}: "
            f"status.recommendation.containerRecommendations[{index}].target"
        )
        rows.append(
            (
                cluster,
                vpa.metadata.namespace,
                vpa.metadata.name,
                entry.container_name,
                _quantity(entry.target.get("cpu"), True, f"{where}.cpu"),
                _quantity(entry.target.get("memory"), False, f"{where}.memory"),
            )
        )
    return rows


def workload_row(cluster: str, vpa: VerticalPodAutoscaler) -> tuple[Any, ...]:
    ref = vpa.spec.target_ref
    names = ",".join(r.name for r in vpa.spec.recommenders) or "default"
    return (
        cluster,
        vpa.metadata.namespace,
        vpa.metadata.name,
        ref.kind if ref else "",
        ref.name if ref else "",
        names,
    )


def frame(rows: Iterable[tuple[Any, ...]], schema: Mapping[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=dict(schema), orient="row")
