"""Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics: the
holder renews `renewTime`; anyone may take the Lease once `renewTime + leaseDurationSeconds`
has passed. Every write carries the resourceVersion it read, so two candidates racing for an
expired Lease cannot both win (the loser gets 409 Conflict).

The Lease travels as plain JSON (`KubeClient`): the generated typed client re-serialises
`metav1.MicroTime` fields without the microseconds the API server requires.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from recommender.kube.rest import JSON, KubeApiError, KubeClient

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]


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

    kube: KubeClient
    namespace: str
    name: str
    identity: str
    lease_duration_s: int = 15
    clock: Clock = _utcnow

    @property
    def _collection(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"

    def _read(self) -> JSON | None:
        try:
            return self.kube.get(f"{self._collection}/{self.name}")
        except KubeApiError as error:
            if error.not_found:
                return None
            raise

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

    def _expired(self, spec: JSON, now: dt.datetime) -> bool:
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
            self.kube.request("POST", self._collection, body=body)
        except KubeApiError as error:
            if error.conflict:  # another candidate created it first
                return False
            raise
        return True

    def _replace(self, lease: JSON) -> bool:
        try:
            self.kube.request("PUT", f"{self._collection}/{self.name}", body=lease)
        except KubeApiError as error:
            if error.conflict:  # someone wrote the Lease since we read it
                return False
            raise
        return True
