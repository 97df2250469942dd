"""The actuator's audit trail: one typed record per decision (a rollout done or planned, or a
rollout skipped with its reason), kept in memory for the gRPC API to list. A decision repeated
tick after tick (the same skip for the same reason) updates its record (count, last seen)
instead of adding one."""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum


class AuditAction(StrEnum):
    ROLLOUT = "rollout"
    """Rolled out (or, with dry_run, would have been)."""
    SKIP = "skip"
    """A rollout was due and was not done; `reason` says why."""


@dataclass(frozen=True)
class ContainerResources:
    """What a rollout gives one container of the pod template (quantity strings); an empty
    `requests` means the template's resources are left as they are (restart annotation)."""

    container: str
    requests: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str] = field(default_factory=dict)
    resize_policy: Mapping[str, str] = field(default_factory=dict)
    """resource -> restartPolicy set in the template (memory of boot-memory runtimes)."""


@dataclass(frozen=True)
class AuditRecord:
    """One decision about one workload for one VPA."""

    time: dt.datetime
    """When it was last decided."""
    cluster: str
    namespace: str
    workload_kind: str
    workload_name: str
    vpa: str
    """The VPA's name (same namespace)."""
    action: AuditAction
    trigger: str
    """Why a rollout was due: Infeasible, Deferred, BelowMinReplicas, BootMemory."""
    reason: str
    """For a skip, why not (a SkipReason value); for a rollout, the method used."""
    message: str
    dry_run: bool = False
    resources: tuple[ContainerResources, ...] = ()
    first_time: dt.datetime | None = None
    count: int = 1

    @property
    def workload(self) -> tuple[str, str, str]:
        return (self.workload_kind, self.namespace, self.workload_name)

    def same_decision(self, other: AuditRecord) -> bool:
        return self.workload == other.workload and (
            self.cluster,
            self.vpa,
            self.action,
            self.reason,
            self.message,
            self.dry_run,
        ) == (other.cluster, other.vpa, other.action, other.reason, other.message, other.dry_run)

    def as_log(self) -> dict[str, object]:
        """The record as the fields of a structured log line."""
        return {
            "time": self.time.isoformat(),
            "cluster": self.cluster,
            "namespace": self.namespace,
            "workload": f"{self.workload_kind}/{self.workload_name}",
            "vpa": self.vpa,
            "action": self.action.value,
            "trigger": self.trigger,
            "reason": self.reason,
            "dry_run": self.dry_run,
            "message": self.message,
            "resources": {
                r.container: {
                    "requests": dict(r.requests),
                    "limits": dict(r.limits),
                    **({"resizePolicy": dict(r.resize_policy)} if r.resize_policy else {}),
                }
                for r in self.resources
            },
        }


@dataclass
class AuditLog:
    """The last `capacity` decisions, oldest first."""

    capacity: int = 1000
    _records: deque[AuditRecord] = field(init=False)

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError(f"audit capacity must be at least 1, got {self.capacity}")
        self._records = deque(maxlen=self.capacity)

    def add(self, record: AuditRecord) -> AuditRecord:
        """Keep `record`; the same decision as the latest one about its workload and VPA
        updates that one (count + 1, time) instead. Returns the record as kept."""
        for index in range(len(self._records) - 1, -1, -1):
            previous = self._records[index]
            if previous.workload == record.workload and previous.vpa == record.vpa:
                if previous.same_decision(record):
                    merged = replace(
                        previous,
                        time=record.time,
                        count=previous.count + 1,
                        resources=record.resources,
                        trigger=record.trigger,
                    )
                    del self._records[index]
                    self._records.append(merged)
                    return merged
                break
        kept = replace(record, first_time=record.first_time or record.time)
        self._records.append(kept)
        return kept

    def extend(self, records: Iterable[AuditRecord]) -> None:
        for record in records:
            self.add(record)

    def records(self) -> list[AuditRecord]:
        return list(self._records)
