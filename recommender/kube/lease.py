"""Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics: the
holder renews `renewTime`; anyone may take the Lease once `renewTime + leaseDurationSeconds`
has passed. Every write carries the resourceVersion it read, so two candidates racing for an
expired Lease cannot both win (the loser gets 409 Conflict).

The Lease goes through the generic CustomObjectsApi as plain JSON: the generated typed client
re-serialises `metav1.MicroTime` fields without the microseconds the API server requires.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
_LEASES = ("coordination.k8s.io", "v1", "leases")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def micro_time(moment: dt.datetime) -> str:
    """`metav1.MicroTime` as the API server writes it."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class LeaseElector:
    """Try to hold `namespace/name` as `identity`; call `try_acquire_or_renew()` periodically
    (every `lease_duration_s / 3` or so) and write only while it returns True."""

    api: client.ApiClient
    namespace: str
    name: str
    identity: str
    lease_duration_s: int = 15
    clock: Clock = _utcnow

    def _objects(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def _read(self) -> dict[str, Any] | None:
        try:
            lease = self._objects().get_namespaced_custom_object(
                *_LEASES[:2], self.namespace, _LEASES[2], self.name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        assert isinstance(lease, dict)
        return lease

    def holder(self) -> str | None:
        """Who holds the Lease now (None when nobody does)."""
        lease = self._read()
        return None if lease is None else lease.get("spec", {}).get("holderIdentity")

    def try_acquire_or_renew(self) -> bool:
        """True when this candidate holds the Lease after the call."""
        now = self.clock()
        lease = self._read()
        if lease is None:
            return self._create(now)
        spec = lease.setdefault("spec", {})
        holder = spec.get("holderIdentity")
        if holder == self.identity:
            spec["renewTime"] = micro_time(now)
            spec["leaseDurationSeconds"] = self.lease_duration_s
            return self._replace(lease)
        if holder and not self._expired(spec, now):
            return False
        log.info("taking over lease %s/%s from %r", self.namespace, self.name, holder)
        spec.update(
            holderIdentity=self.identity,
            acquireTime=micro_time(now),
            renewTime=micro_time(now),
            leaseDurationSeconds=self.lease_duration_s,
            leaseTransitions=int(spec.get("leaseTransitions") or 0) + (1 if holder else 0),
        )
        return self._replace(lease)

    def release(self) -> None:
        """Give the Lease up now (on clean shutdown) so that another replica need not wait."""
        lease = self._read()
        if lease is None or lease.get("spec", {}).get("holderIdentity") != self.identity:
            return
        spec = lease["spec"]
        for field in ("holderIdentity", "renewTime", "acquireTime"):
            spec.pop(field, None)
        self._replace(lease)

    def _expired(self, spec: dict[str, Any], now: dt.datetime) -> bool:
        renewed = spec.get("renewTime")
        if not renewed:
            return True
        duration = int(spec.get("leaseDurationSeconds") or self.lease_duration_s)
        return parse_micro_time(renewed) + dt.timedelta(seconds=duration) < now

    def _create(self, now: dt.datetime) -> bool:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.lease_duration_s,
                "acquireTime": micro_time(now),
                "renewTime": micro_time(now),
                "leaseTransitions": 0,
            },
        }
        try:
            self._objects().create_namespaced_custom_object(
                *_LEASES[:2], self.namespace, _LEASES[2], body
            )
        except ApiException as exc:
            if exc.status == 409:  # another candidate created it first
                return False
            raise
        return True

    def _replace(self, lease: dict[str, Any]) -> bool:
        try:
            self._objects().replace_namespaced_custom_object(
                *_LEASES[:2], self.namespace, _LEASES[2], self.name, lease
            )
        except ApiException as exc:
            if exc.status == 409:  # someone wrote the Lease since we read it
                return False
            raise
        return True
