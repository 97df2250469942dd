"""A simulated kubelet for in-place pod resize on the testbed's KWOK nodes.

KWOK (0.8.0, `fast` stages) marks pods Running but does nothing a kubelet does for resizes:
its `pod-ready` stage writes `containerStatuses` without `resources`, and no stage looks at
resizes. Without `resources` in the status of a running container the API server refuses
every resize ("Pod running on node without support for resize", `isPodResizeRequestSupported`
in kube-apiserver's pod validation), and nothing ever reports a resize as done.

`KubeletSimulator` does that part, for pods on KWOK-managed nodes:

- a Running pod whose containers have no `resources` in their status gets them from its spec
  (what a kubelet reports once the containers run);
- when the spec's CPU or memory requests/limits differ from the status (the API server
  accepted a resize through `pods/resize`), the resize is actuated: the status takes the
  spec's values, `PodResizePending` and `PodResizeInProgress` are removed, and
  `status.observedGeneration` is the pod's generation;
- unless the pod carries the annotation `testbed.vpa-fleet.io/resize` with the answer the
  kubelet should give instead: `Deferred` or `Infeasible` (condition `PodResizePending` with
  that reason) or `InProgress` (condition `PodResizeInProgress` with empty reason and message,
  an actuation under way). The status keeps the old resources meanwhile. Removing the
  annotation lets the resize through.

Reads are one list-then-watch of pods (and one of nodes); writes are JSON merge patches of the
`status` subresource carrying the resourceVersion read, so a concurrent writer makes the
patch fail with 409 and the pod is looked at again when its newer version arrives.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import Any

from analytics.quantity import parse_quantity
from recommender.kube.cache import Key, ListWatchCache, object_key
from recommender.kube.rest import JSON, MERGE_PATCH, KubeApiError, KubeClient
from testbed.cluster import KWOK_NODE_ANNOTATION

log = logging.getLogger(__name__)

RESIZE_ANNOTATION = "testbed.vpa-fleet.io/resize"
RESIZE_PENDING = "PodResizePending"
RESIZE_IN_PROGRESS = "PodResizeInProgress"
RESIZABLE = ("cpu", "memory")
"""The resources a resize may change, and the ones a kubelet reports in status."""


class Answer(StrEnum):
    """What the simulated kubelet says about a resize instead of actuating it."""

    DEFERRED = "Deferred"
    INFEASIBLE = "Infeasible"
    IN_PROGRESS = "InProgress"


class Outcome(StrEnum):
    """What the simulator wrote for a pod."""

    REPORTED = "reported"
    """First report of the running containers' resources."""
    RESIZED = "resized"
    """A resize actuated: status resources = spec."""
    DEFERRED = "Deferred"
    INFEASIBLE = "Infeasible"
    IN_PROGRESS = "InProgress"
    SETTLED = "settled"
    """Resize conditions removed: the spec is what already runs."""


@dataclass(frozen=True)
class Action:
    """One status write, for tests and debugging."""

    namespace: str
    name: str
    uid: str
    generation: int
    outcome: Outcome
    resources: dict[str, JSON]
    """Container name -> the `resources` the status says after the write."""


def _resizable(resources: JSON | None) -> JSON:
    """The CPU and memory requests and limits of a container's `resources`."""
    result: JSON = {}
    for kind in ("requests", "limits"):
        values = {
            name: value
            for name, value in ((resources or {}).get(kind) or {}).items()
            if name in RESIZABLE
        }
        if values:
            result[kind] = values
    return result


def _values(resources: JSON) -> dict[tuple[str, str], Fraction]:
    return {
        (kind, name): parse_quantity(str(value))
        for kind, values in resources.items()
        for name, value in values.items()
    }


def _same(a: JSON, b: JSON) -> bool:
    return _values(_resizable(a)) == _values(_resizable(b))


def _condition(kind: str, reason: str, message: str, generation: int, since: str) -> JSON:
    return {
        "type": kind,
        "status": "True",
        "lastProbeTime": None,
        "lastTransitionTime": since,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


_MESSAGES = {
    Answer.DEFERRED: "simulated by the testbed kubelet: the node cannot fit it right now",
    Answer.INFEASIBLE: "simulated by the testbed kubelet: the node can never fit it",
}


def plan(pod: JSON, now: str) -> tuple[Outcome, JSON] | None:
    """What the kubelet writes for `pod` (its outcome and the JSON merge patch of the
    status subresource), or None when the status already says what it should."""
    metadata, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    statuses: list[JSON] = status.get("containerStatuses") or []
    if metadata.get("deletionTimestamp") or status.get("phase") != "Running" or not statuses:
        return None
    wanted = {c["name"]: _resizable(c.get("resources")) for c in spec.get("containers") or []}
    generation = int(metadata.get("generation", 0))
    conditions: list[JSON] = status.get("conditions") or []
    others = [c for c in conditions if c.get("type") not in {RESIZE_PENDING, RESIZE_IN_PROGRESS}]

    unreported = [cs for cs in statuses if cs.get("resources") is None and cs["name"] in wanted]
    if unreported:
        outcome = Outcome.REPORTED
        new_statuses = [
            {**cs, "resources": wanted[cs["name"]]} if cs in unreported else cs for cs in statuses
        ]
        return outcome, _patch(metadata, new_statuses, None, generation)

    resized = any(
        cs["name"] in wanted and not _same(cs.get("resources") or {}, wanted[cs["name"]])
        for cs in statuses
    )
    raw_answer = (metadata.get("annotations") or {}).get(RESIZE_ANNOTATION)
    answer = Answer(raw_answer) if raw_answer in {a.value for a in Answer} else None
    if raw_answer is not None and answer is None:
        log.warning(
            "pod %s/%s: unknown %s %r (expected one of %s); actuating the resize",
            metadata.get("namespace"),
            metadata.get("name"),
            RESIZE_ANNOTATION,
            raw_answer,
            ", ".join(a.value for a in Answer),
        )

    if resized and answer is not None:
        kind = RESIZE_IN_PROGRESS if answer is Answer.IN_PROGRESS else RESIZE_PENDING
        reason = "" if answer is Answer.IN_PROGRESS else answer.value
        message = _MESSAGES.get(answer, "")
        current = next((c for c in conditions if c.get("type") == kind), None)
        if (
            current is not None
            and current.get("status") == "True"
            and (current.get("reason") or "") == reason
            and (current.get("message") or "") == message
            and current.get("observedGeneration") == generation
            and len(others) == len(conditions) - 1
        ):
            return None
        since = now
        if current is not None and (current.get("reason") or "") == reason:
            since = current.get("lastTransitionTime") or now
        new_conditions = [*others, _condition(kind, reason, message, generation, since)]
        return Outcome(answer.value), _patch(metadata, None, new_conditions, generation)

    if resized:
        new_statuses = [
            {**cs, "resources": wanted[cs["name"]]} if cs["name"] in wanted else cs
            for cs in statuses
        ]
        return Outcome.RESIZED, _patch(metadata, new_statuses, others, generation)

    if len(others) != len(conditions):
        return Outcome.SETTLED, _patch(metadata, None, others, generation)
    return None


def _patch(
    metadata: JSON,
    statuses: list[JSON] | None,
    conditions: list[JSON] | None,
    generation: int,
) -> JSON:
    status: JSON = {"observedGeneration": generation}
    if statuses is not None:
        status["containerStatuses"] = statuses
    if conditions is not None:
        status["conditions"] = conditions
    # The resourceVersion makes the patch conditional on the object as read.
    return {"metadata": {"resourceVersion": metadata.get("resourceVersion")}, "status": status}


def _slim_pod(pod: JSON) -> JSON:
    metadata = pod.get("metadata", {})
    return {
        "metadata": {
            k: metadata[k]
            for k in (
                "name",
                "namespace",
                "uid",
                "resourceVersion",
                "generation",
                "annotations",
                "deletionTimestamp",
            )
            if k in metadata
        },
        "spec": {
            "nodeName": pod.get("spec", {}).get("nodeName"),
            "containers": [
                {"name": c["name"], "resources": c.get("resources") or {}}
                for c in pod.get("spec", {}).get("containers") or []
            ],
        },
        "status": pod.get("status", {}),
    }


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class KubeletSimulator:
    """Watches pods (of `namespace`, or all) and answers their resizes on KWOK nodes."""

    kube: KubeClient
    namespace: str | None = None
    watch_timeout_s: int = 60
    clock: Callable[[], str] = _now
    _nodes: ListWatchCache = field(init=False)
    _pods: ListWatchCache = field(init=False)
    _pending: set[Key] = field(default_factory=set, init=False)
    _wake: threading.Condition = field(default_factory=threading.Condition, init=False)
    _stopping: bool = field(default=False, init=False)
    _worker: threading.Thread | None = field(default=None, init=False)
    _actions: list[Action] = field(default_factory=list, init=False)
    errors: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._nodes = ListWatchCache(
            self.kube,
            "/api/v1/nodes",
            watch_timeout_s=self.watch_timeout_s,
            transform=lambda node: {"metadata": node.get("metadata", {})},
        )
        path = f"/api/v1/namespaces/{self.namespace}/pods" if self.namespace else "/api/v1/pods"
        self._pods = ListWatchCache(
            self.kube,
            path,
            watch_timeout_s=self.watch_timeout_s,
            field_selector="spec.nodeName!=",
            transform=_slim_pod,
            handlers=[self._enqueue],
        )

    def start(self, timeout_s: float = 30.0) -> KubeletSimulator:
        """Start watching; returns once both caches have listed."""
        self._worker = threading.Thread(target=self._work, name="kubelet-sim", daemon=True)
        self._worker.start()
        self._nodes.start()
        if not self._nodes.wait_synced(timeout_s):
            raise TimeoutError("kubelet simulator: listing nodes timed out")
        self._pods.start()
        if not self._pods.wait_synced(timeout_s):
            raise TimeoutError("kubelet simulator: listing pods timed out")
        return self

    def stop(self) -> None:
        """Stop the worker at once; the watches end with their current request."""
        self._pods.stop()
        self._nodes.stop()
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=10)

    def __enter__(self) -> KubeletSimulator:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def actions(self, uid: str | None = None) -> list[Action]:
        """The status writes so far (of the pod with `uid`), oldest first."""
        with self._wake:
            return [a for a in self._actions if uid is None or a.uid == uid]

    def _enqueue(self, kind: str, pod: JSON) -> None:
        if kind == "DELETED":
            return
        with self._wake:
            self._pending.add(object_key(pod))
            self._wake.notify()

    def _on_kwok_node(self, pod: JSON) -> bool:
        node = self._nodes.get("", str(pod.get("spec", {}).get("nodeName") or ""))
        annotations = (node or {}).get("metadata", {}).get("annotations") or {}
        return bool(annotations.get(KWOK_NODE_ANNOTATION) == "fake")

    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                key = self._pending.pop()
            pod = self._pods.get(*key)
            if pod is None or not self._on_kwok_node(pod):
                continue
            try:
                self._handle(pod)
            except Exception:
                self.errors += 1
                log.exception("kubelet simulator: pod %s/%s", *key)

    def _handle(self, pod: JSON) -> None:
        planned = plan(pod, self.clock())
        if planned is None:
            return
        outcome, patch = planned
        metadata = pod["metadata"]
        path = f"/api/v1/namespaces/{metadata['namespace']}/pods/{metadata['name']}/status"
        try:
            written = self.kube.request("PATCH", path, body=patch, content_type=MERGE_PATCH)
        except KubeApiError as error:
            if error.conflict or error.not_found:
                # A newer version (or the deletion) is on its way through the watch.
                log.debug("kubelet simulator: %s: %s", path, error)
                return
            raise
        resources: dict[str, Any] = {
            cs["name"]: cs.get("resources") or {}
            for cs in written.get("status", {}).get("containerStatuses") or []
        }
        action = Action(
            namespace=metadata["namespace"],
            name=metadata["name"],
            uid=str(metadata.get("uid", "")),
            generation=int(metadata.get("generation", 0)),
            outcome=outcome,
            resources=resources,
        )
        log.info(
            "kubelet simulator: pod %s/%s generation %d: %s",
            action.namespace,
            action.name,
            action.generation,
            outcome.value,
        )
        with self._wake:
            self._actions.append(action)
