"""A VPA of ours for people: its recommendations beside the requests its pods run with, and
what moving to the target would save. Pure: VPA and pod objects in, an API message out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from analytics.quantity import parse_cpu_millicores, parse_memory_bytes
from recommender.api.generated.vpafleet.v1 import inspection_pb2 as pb
from recommender.vpa.objects import VerticalPodAutoscaler

JSON = dict[str, Any]

_FINISHED_PHASES = frozenset({"Succeeded", "Failed"})
_AMOUNT = {"cpu": parse_cpu_millicores, "memory": parse_memory_bytes}


def running(pods: Sequence[JSON]) -> list[JSON]:
    """Pods that still hold their requests (not Succeeded or Failed)."""
    return [p for p in pods if (p.get("status") or {}).get("phase") not in _FINISHED_PHASES]


def container_requests(pods: Sequence[JSON], container: str) -> dict[str, str]:
    """Each resource's request of the container in these pods: the most common quantity (the
    first seen on a tie), as the pods spell it."""
    seen: dict[str, Counter[str]] = {}
    for pod in pods:
        for spec in (pod.get("spec") or {}).get("containers") or []:
            if spec.get("name") != container:
                continue
            requests = (spec.get("resources") or {}).get("requests") or {}
            for resource, quantity in requests.items():
                if resource in _AMOUNT:
                    seen.setdefault(resource, Counter())[str(quantity)] += 1
    return {resource: counts.most_common(1)[0][0] for resource, counts in sorted(seen.items())}


def savings(requests: Mapping[str, str], target: Mapping[str, str], pods: int) -> dict[str, float]:
    """(request - target) x pods per resource both name: millicores for CPU, bytes for memory."""
    return {
        resource: float((parse(requests[resource]) - parse(target[resource])) * pods)
        for resource, parse in _AMOUNT.items()
        if resource in requests and resource in target
    }


def recommendation(
    cluster: str, vpa: VerticalPodAutoscaler, pods: Sequence[JSON]
) -> pb.Recommendation:
    """The VPA's status recommendation with the requests and savings of its selected pods."""
    live = running(pods)
    ref = vpa.spec.target_ref
    message = pb.Recommendation(
        cluster=cluster,
        namespace=vpa.metadata.namespace,
        name=vpa.metadata.name,
        target_kind=ref.kind if ref else "",
        target_name=ref.name if ref else "",
        update_mode=vpa.update_mode.value,
        labels=dict(vpa.metadata.labels),
        pods=len(live),
    )
    status = vpa.status.recommendation
    for entry in status.container_recommendations if status else ():
        requests = container_requests(live, entry.container_name)
        message.containers.append(
            pb.ContainerRecommendation(
                container=entry.container_name,
                target=dict(entry.target),
                lower_bound=dict(entry.lower_bound),
                upper_bound=dict(entry.upper_bound),
                uncapped_target=dict(entry.uncapped_target),
                requests=requests,
                savings=savings(requests, entry.target, len(live)),
            )
        )
    for condition in vpa.status.conditions:
        message.conditions.append(
            pb.Condition(
                type=condition.type,
                status=condition.status,
                reason=condition.reason,
                message=condition.message,
                last_transition_time=condition.last_transition_time or "",
            )
        )
    return message
