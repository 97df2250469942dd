"""Pure conversions of inspection results to the API's messages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Protocol

from recommender.api.generated.vpafleet.v1 import inspection_pb2 as pb
from recommender.inspection.explain import BoundEstimate, ContainerExplanation


def rfc3339(moment: dt.datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _estimate(bound: BoundEstimate) -> pb.Estimate:
    return pb.Estimate(
        steps=[
            pb.Step(kind=s.kind, description=s.description, formula=s.formula, value=s.value)
            for s in bound.steps
        ],
        uncapped=bound.uncapped,
        uncapped_quantity=bound.uncapped_quantity,
        caps=[pb.Cap(field=c.field, quantity=c.quantity, source=c.source) for c in bound.caps],
        capped_quantity=bound.capped_quantity,
    )


def explanation_message(explanation: ContainerExplanation) -> pb.Explanation:
    e = explanation
    return pb.Explanation(
        cluster=e.cluster,
        namespace=e.namespace,
        name=e.name,
        container=e.container,
        strategy=e.strategy,
        parameters=dict(e.parameters),
        checkpoint_time=rfc3339(e.as_of),
        sample_count=e.sample_count,
        first_sample_time=rfc3339(e.first_sample),
        last_sample_time=rfc3339(e.last_sample),
        history_days=e.history_days,
        confidence_days=e.confidence_days,
        containers_in_pod=e.containers_in_pod,
        resources=[
            pb.ResourceExplanation(
                resource=r.resource,
                unit=r.unit,
                total_weight=r.total_weight,
                buckets=[
                    pb.HistogramBucket(start=b.start, end=b.end, weight=b.weight) for b in r.buckets
                ],
                percentiles=[pb.PercentileValue(percentile=p, value=v) for p, v in r.percentiles],
                target=_estimate(r.target),
                lower_bound=_estimate(r.lower_bound),
                upper_bound=_estimate(r.upper_bound),
            )
            for r in e.resources
        ],
        oom_events=[
            pb.OomEvent(
                pod=k.pod,
                time=rfc3339(k.time),
                memory_request=str(k.memory_request) if k.memory_request is not None else "",
                peak_bytes=k.peak_bytes,
            )
            for k in e.oom_events
        ],
        matches_status=e.matches_status,
        note=e.note,
        policy=e.policy,
    )


class AuditResources(Protocol):
    @property
    def container(self) -> str: ...
    @property
    def requests(self) -> Mapping[str, str]: ...


class AuditEntry(Protocol):
    """What the API reads of an actuator audit record (`recommender.actuator.audit`)."""

    @property
    def time(self) -> dt.datetime: ...
    @property
    def cluster(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def workload_kind(self) -> str: ...
    @property
    def workload_name(self) -> str: ...
    @property
    def vpa(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def trigger(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def dry_run(self) -> bool: ...
    @property
    def count(self) -> int: ...
    @property
    def first_time(self) -> dt.datetime | None: ...
    @property
    def resources(self) -> Sequence[AuditResources]: ...


def action_message(entry: AuditEntry) -> pb.Action:
    return pb.Action(
        time=rfc3339(entry.time),
        cluster=entry.cluster,
        namespace=entry.namespace,
        vpa=entry.vpa,
        kind=entry.workload_kind,
        name=entry.workload_name,
        action=str(entry.action),
        trigger=entry.trigger,
        reason=entry.reason,
        message=entry.message,
        dry_run=entry.dry_run,
        count=entry.count,
        first_time=rfc3339(entry.first_time),
        requests={
            r.container: ",".join(f"{k}={v}" for k, v in sorted(r.requests.items()))
            for r in entry.resources
        },
    )
