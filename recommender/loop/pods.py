"""What the loop reads from pods: labels (to match VPA selectors), the containers of the spec
with their memory requests (the memory an OOM kill is recorded at, as upstream), and OOM kills
from `status.containerStatuses[].lastState.terminated`. Pure: callers bring the JSON."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from analytics.quantity import parse_memory_bytes
from recommender.vpa.targets import Selector

JSON = dict[str, Any]

OOM_KILLED = "OOMKilled"

ASSIGNMENT_SCHEMA = {
    "namespace": pl.String,
    "pod": pl.String,
    "container": pl.String,
    "workload": pl.String,
    "memory_request": pl.Float64,
}
"""Which VPA (`workload`) each running container feeds, and its memory request (bytes)."""


def slim_pod(obj: JSON) -> JSON:
    """The fields of a pod the loop reads; the watch cache keeps only these."""
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    return {
        "metadata": {
            key: metadata[key]
            for key in ("name", "namespace", "uid", "resourceVersion", "labels")
            if key in metadata
        },
        "spec": {
            "containers": [
                {"name": c.get("name"), "resources": c.get("resources") or {}}
                for c in spec.get("containers") or []
            ]
        },
        "status": {
            "phase": status.get("phase"),
            "containerStatuses": [
                {"name": s.get("name"), "lastState": s.get("lastState") or {}}
                for s in status.get("containerStatuses") or []
            ],
        },
    }


@dataclass(frozen=True)
class OomKill:
    container: str
    finished_at: dt.datetime


@dataclass(frozen=True)
class PodView:
    """One pod as the loop sees it; `memory_requests` is None for a container without one."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    memory_requests: Mapping[str, int | None]
    oom_kills: tuple[OomKill, ...]


def _memory_request(container: Mapping[str, Any]) -> int | None:
    resources = container.get("resources") or {}
    requests = resources.get("requests") or {}
    value = requests.get("memory")
    if value is None:
        return None
    try:
        return parse_memory_bytes(str(value))
    except ValueError:
        return None  # the API server validates requests; nothing sensible to record


def _time(text: object) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def pod_view(obj: JSON) -> PodView:
    """A pod (full or `slim_pod`) as a PodView; missing fields read as empty."""
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    containers = [c for c in spec.get("containers") or [] if c.get("name")]
    kills = []
    for container_status in status.get("containerStatuses") or []:
        terminated = (container_status.get("lastState") or {}).get("terminated") or {}
        finished = _time(terminated.get("finishedAt"))
        if terminated.get("reason") == OOM_KILLED and finished and container_status.get("name"):
            kills.append(OomKill(str(container_status["name"]), finished))
    return PodView(
        namespace=str(metadata.get("namespace", "")),
        name=str(metadata.get("name", "")),
        labels={str(k): str(v) for k, v in (metadata.get("labels") or {}).items()},
        memory_requests={str(c["name"]): _memory_request(c) for c in containers},
        oom_kills=tuple(kills),
    )


def matched_pods(selector: Selector, pods: Iterable[PodView]) -> list[PodView]:
    """The pods a VPA's selector matches."""
    return [pod for pod in pods if selector.matches(pod.labels)]


def assignment(matches: Mapping[str, Sequence[PodView]]) -> pl.DataFrame:
    """`ASSIGNMENT_SCHEMA` rows for each VPA name and its matched pods' containers. A pod
    matched by two VPAs feeds both, as upstream aggregates it into every matching VPA."""
    rows: dict[str, list[Any]] = {name: [] for name in ASSIGNMENT_SCHEMA}
    for vpa_name, pods in matches.items():
        for pod in pods:
            for container, request in pod.memory_requests.items():
                rows["namespace"].append(pod.namespace)
                rows["pod"].append(pod.name)
                rows["container"].append(container)
                rows["workload"].append(vpa_name)
                rows["memory_request"].append(None if request is None else float(request))
    return pl.DataFrame(rows, schema=ASSIGNMENT_SCHEMA)
