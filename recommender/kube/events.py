"""Kubernetes Events: the recommender's reports on VPAs it cannot serve, and the actuator's
decisions on the workload and the VPA.

An Event is created once per (object, reason, message); the same decision seen again is
folded into it (count + 1, lastTimestamp) at most once every `repeat_s`, so a skip that
holds for hours does not write every tick. An Event the API server has expired (their TTL
is an hour by default) is created anew."""

from __future__ import annotations

import datetime as dt
import logging
import socket
from dataclasses import dataclass, field

from recommender.kube.rest import JSON, MERGE_PATCH, KubeApiError, KubeClient

log = logging.getLogger(__name__)

COMPONENT = "vpa-fleet"
MAX_MESSAGE = 1000


@dataclass(frozen=True)
class Involved:
    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str

    def reference(self) -> JSON:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
        }


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class EventRecorder:
    kube: KubeClient
    repeat_s: float = 600.0
    component: str = COMPONENT
    """`source.component` and `reportingComponent` of the Events."""
    instance: str = field(default_factory=socket.gethostname)
    _seen: dict[tuple[str, str, str, str], tuple[str, int, dt.datetime]] = field(
        default_factory=dict, init=False
    )
    written: int = field(default=0, init=False)
    """Creates and updates so far (for tests and metrics)."""

    def emit(
        self, obj: Involved, reason: str, message: str, now: dt.datetime, *, warning: bool
    ) -> None:
        """Record the event; API errors are logged, never raised (an Event is a report)."""
        message = message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."
        key = (obj.namespace, obj.uid or f"{obj.kind}/{obj.name}", reason, message)
        try:
            seen = self._seen.get(key)
            if seen is not None:
                name, count, last = seen
                if (now - last).total_seconds() < self.repeat_s:
                    return
                if self._bump(obj.namespace, name, count + 1, now):
                    self._seen[key] = (name, count + 1, now)
                    return
            self._seen[key] = (self._create(obj, reason, message, now, warning), 1, now)
        except KubeApiError as error:
            log.warning(
                "event %s on %s %s/%s not written: %s",
                reason,
                obj.kind,
                obj.namespace,
                obj.name,
                error,
            )

    def _create(
        self, obj: Involved, reason: str, message: str, now: dt.datetime, warning: bool
    ) -> str:
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{obj.name}.", "namespace": obj.namespace},
            "involvedObject": obj.reference(),
            "reason": reason,
            "message": message,
            "type": "Warning" if warning else "Normal",
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "reportingInstance": self.instance,
            "firstTimestamp": _stamp(now),
            "lastTimestamp": _stamp(now),
            "count": 1,
        }
        created = self.kube.request(
            "POST", f"/api/v1/namespaces/{obj.namespace}/events", body=event
        )
        self.written += 1
        return str(created["metadata"]["name"])

    def _bump(self, namespace: str, name: str, count: int, now: dt.datetime) -> bool:
        try:
            self.kube.request(
                "PATCH",
                f"/api/v1/namespaces/{namespace}/events/{name}",
                body={"count": count, "lastTimestamp": _stamp(now)},
                content_type=MERGE_PATCH,
            )
        except KubeApiError as error:
            if error.not_found:
                return False
            raise
        self.written += 1
        return True
