"""Pods, workloads and PodDisruptionBudgets as the actuator's core sees them, parsed from the
API's JSON (pure). A field that cannot be read raises InputError naming the object, the field
and the value."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from analytics.quantity import parse_quantity
from recommender.actuator.runtimes import BootMemory, detect_container
from recommender.vpa.targets import Selector, SelectorError, from_label_selector

JSON = dict[str, Any]

RESIZE_PENDING = "PodResizePending"
RESIZE_IN_PROGRESS = "PodResizeInProgress"
RESTART_CONTAINER = "RestartContainer"
NOT_REQUIRED = "NotRequired"
IN_PLACE_UPDATED = "vpaInPlaceUpdated"
"""The annotation the stock updater puts on a pod it resized in place."""
RESIZABLE = ("cpu", "memory")


class InputError(ValueError):
    """An object the actuator cannot read; the message names object, field and value."""


def _quantities(values: object, where: str) -> dict[str, Fraction]:
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise InputError(f"{where}: expected a map of resource quantities, got {values!r}")
    result = {}
    for name, value in values.items():
        if name not in RESIZABLE:
            continue
        try:
            result[str(name)] = parse_quantity(str(value))
        except ValueError as error:
            raise InputError(f"{where}.{name}: not a quantity ({value!r}): {error}") from None
    return result


def parse_time(text: object, where: str) -> dt.datetime | None:
    if text is None or text == "":
        return None
    try:
        moment = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{where}: not an RFC 3339 time ({text!r})") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class ContainerSpec:
    """A container of a pod or pod template: its CPU and memory, resize policy, runtime."""

    name: str
    requests: Mapping[str, Fraction]
    limits: Mapping[str, Fraction]
    resize_policy: Mapping[str, str]
    boot_memory: BootMemory | None

    def restarts_for(self, resource: str) -> bool:
        return self.resize_policy.get(resource) == RESTART_CONTAINER


def parse_container(container: Mapping[str, Any], where: str) -> ContainerSpec:
    name = container.get("name")
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}.name: a container needs a name (got {name!r})")
    where = f"{where}[{name}]"
    resources = container.get("resources") or {}
    if not isinstance(resources, Mapping):
        raise InputError(f"{where}.resources: expected an object, got {resources!r}")
    policy = {}
    for entry in container.get("resizePolicy") or []:
        if isinstance(entry, Mapping) and entry.get("resourceName"):
            policy[str(entry["resourceName"])] = str(entry.get("restartPolicy") or NOT_REQUIRED)
    return ContainerSpec(
        name=name,
        requests=_quantities(resources.get("requests"), f"{where}.resources.requests"),
        limits=_quantities(resources.get("limits"), f"{where}.resources.limits"),
        resize_policy=policy,
        boot_memory=detect_container(container),
    )


@dataclass(frozen=True)
class ResizeCondition:
    """`PodResizePending` (reason Deferred or Infeasible) or `PodResizeInProgress`."""

    type: str
    reason: str
    since: dt.datetime | None
    message: str = ""


@dataclass(frozen=True)
class OwnerRef:
    kind: str
    name: str


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    uid: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    owner: OwnerRef | None
    containers: tuple[ContainerSpec, ...]
    actual_requests: Mapping[str, Mapping[str, Fraction]]
    """Container -> the requests the kubelet reports running (status); absent when not
    reported."""
    resize: tuple[ResizeCondition, ...]
    live: bool
    """Not terminating and not finished."""

    def container(self, name: str) -> ContainerSpec | None:
        return next((c for c in self.containers if c.name == name), None)

    def current_requests(self, name: str) -> Mapping[str, Fraction]:
        """What the container runs with: the kubelet's report, else the spec (as the updater
        reads it)."""
        if name in self.actual_requests:
            return self.actual_requests[name]
        spec = self.container(name)
        return spec.requests if spec else {}

    def pending(self, reason: str) -> ResizeCondition | None:
        return next(
            (c for c in self.resize if c.type == RESIZE_PENDING and c.reason == reason), None
        )

    @property
    def resized_in_place(self) -> bool:
        return self.annotations.get(IN_PLACE_UPDATED) == "true"


def parse_pod(obj: Mapping[str, Any]) -> PodInfo:
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    where = f"pod {metadata.get('namespace', '')}/{metadata.get('name', '?')}"
    owner = next(
        (
            OwnerRef(str(ref.get("kind", "")), str(ref.get("name", "")))
            for ref in metadata.get("ownerReferences") or []
            if ref.get("controller")
        ),
        None,
    )
    containers = tuple(
        parse_container(c, f"{where}: spec.containers") for c in spec.get("containers") or []
    )
    actual = {}
    for container_status in status.get("containerStatuses") or []:
        resources = container_status.get("resources")
        if resources is not None and container_status.get("name"):
            name = str(container_status["name"])
            actual[name] = _quantities(
                resources.get("requests"),
                f"{where}: status.containerStatuses[{name}].resources.requests",
            )
    resize = tuple(
        ResizeCondition(
            type=str(c["type"]),
            reason=str(c.get("reason") or ""),
            since=parse_time(
                c.get("lastTransitionTime"), f"{where}: status.conditions[{c['type']}]"
            ),
            message=str(c.get("message") or ""),
        )
        for c in status.get("conditions") or []
        if c.get("type") in (RESIZE_PENDING, RESIZE_IN_PROGRESS) and c.get("status") == "True"
    )
    return PodInfo(
        namespace=str(metadata.get("namespace", "")),
        name=str(metadata.get("name", "")),
        uid=str(metadata.get("uid", "")),
        labels={str(k): str(v) for k, v in (metadata.get("labels") or {}).items()},
        annotations={str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()},
        owner=owner,
        containers=containers,
        actual_requests=actual,
        resize=resize,
        live=not metadata.get("deletionTimestamp")
        and status.get("phase") not in ("Succeeded", "Failed"),
    )


@dataclass(frozen=True)
class WorkloadRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


ROLLED_KINDS = ("Deployment", "StatefulSet")
"""Owners the actuator rolls out; every other owner (DaemonSet, a bare pod, Job, ...) is
reported only."""


@dataclass(frozen=True)
class WorkloadInfo:
    """A Deployment or StatefulSet, with what a rollout decision needs."""

    ref: WorkloadRef
    uid: str
    annotations: Mapping[str, str]
    containers: tuple[ContainerSpec, ...]
    update_strategy: str
    """Deployment: RollingUpdate or Recreate; StatefulSet: RollingUpdate or OnDelete."""
    rolling: bool
    """A rollout is under way (the controller has not caught up with the spec yet)."""
    template_annotations: Mapping[str, str] = field(default_factory=dict)

    def container(self, name: str) -> ContainerSpec | None:
        return next((c for c in self.containers if c.name == name), None)


def parse_workload(obj: Mapping[str, Any]) -> WorkloadInfo:
    kind = str(obj.get("kind") or "")
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    where = f"{kind} {metadata.get('namespace', '')}/{metadata.get('name', '?')}"
    if kind not in ROLLED_KINDS:
        raise InputError(f"{where}: kind {kind!r} is not one of {', '.join(ROLLED_KINDS)}")
    template = spec.get("template") or {}
    containers = tuple(
        parse_container(c, f"{where}: spec.template.spec.containers")
        for c in (template.get("spec") or {}).get("containers") or []
    )
    strategy_field = "strategy" if kind == "Deployment" else "updateStrategy"
    strategy = str((spec.get(strategy_field) or {}).get("type") or "RollingUpdate")
    replicas = int(spec.get("replicas", 1))
    generation = int(metadata.get("generation", 0))
    observed = int(status.get("observedGeneration", 0))
    if kind == "Deployment":
        rolling = observed < generation or any(
            int(status.get(name, 0)) != replicas
            for name in ("updatedReplicas", "replicas", "availableReplicas")
        )
    else:
        current, update = status.get("currentRevision"), status.get("updateRevision")
        rolling = observed < generation or (
            strategy != "OnDelete"
            and (current != update or int(status.get("updatedReplicas", 0)) != replicas)
        )
    return WorkloadInfo(
        ref=WorkloadRef(kind, str(metadata.get("namespace", "")), str(metadata.get("name", ""))),
        uid=str(metadata.get("uid", "")),
        annotations={str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()},
        containers=containers,
        update_strategy=strategy,
        rolling=rolling,
        template_annotations={
            str(k): str(v)
            for k, v in ((template.get("metadata") or {}).get("annotations") or {}).items()
        },
    )


@dataclass(frozen=True)
class Budget:
    """A PodDisruptionBudget: the pods it selects and how many may be disrupted now."""

    name: str
    selector: Selector
    disruptions_allowed: int


def parse_budget(obj: Mapping[str, Any]) -> Budget:
    metadata = obj.get("metadata") or {}
    where = f"PodDisruptionBudget {metadata.get('namespace', '')}/{metadata.get('name', '?')}"
    try:
        # policy/v1: an empty selector selects every pod of the namespace, a missing one none.
        raw = (obj.get("spec") or {}).get("selector")
        selector = from_label_selector(raw, f"{where}: spec.selector")
    except SelectorError as error:
        raise InputError(str(error)) from None
    allowed = (obj.get("status") or {}).get("disruptionsAllowed", 0)
    if not isinstance(allowed, int):
        raise InputError(f"{where}: status.disruptionsAllowed is not an integer ({allowed!r})")
    return Budget(str(metadata.get("name", "")), selector, allowed)
