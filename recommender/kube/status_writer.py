"""Writing a VPA's status through the `status` subresource, as the stock recommender does
(`utils/vpa/api.go:UpdateVpaStatusIfNeeded`): one JSON Patch that adds the whole status,
only when it is worth writing. Throttling and server errors are retried a few times with
backoff; a VPA deleted meanwhile is reported, not an error."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import StrEnum

from recommender.kube.rest import JSON_PATCH, KubeApiError, KubeClient
from recommender.vpa.objects import VerticalPodAutoscaler, VpaStatus
from recommender.vpa.status import status_json, worth_writing

log = logging.getLogger(__name__)

VPA_API = "/apis/autoscaling.k8s.io/v1"


class WriteResult(StrEnum):
    WRITTEN = "written"
    UNCHANGED = "unchanged"
    GONE = "gone"


def vpa_path(namespace: str, name: str) -> str:
    return f"{VPA_API}/namespaces/{namespace}/verticalpodautoscalers/{name}"


@dataclass
class StatusWriter:
    """Writes statuses with a relative change `threshold` (0 writes every change)."""

    kube: KubeClient
    threshold: float = 0.0
    attempts: int = 4
    backoff_s: float = 0.5

    def write(
        self, vpa: VerticalPodAutoscaler, desired: VpaStatus, threshold: float | None = None
    ) -> WriteResult:
        """Write `desired` unless `vpa` (as last read) already says the same (within
        `threshold`, the writer's own when None)."""
        limit = self.threshold if threshold is None else threshold
        if not worth_writing(vpa.status, desired, limit):
            return WriteResult.UNCHANGED
        patch = [{"op": "add", "path": "/status", "value": status_json(desired)}]
        path = vpa_path(vpa.metadata.namespace, vpa.metadata.name) + "/status"
        for attempt in range(1, self.attempts + 1):
            try:
                self.kube.request("PATCH", path, body=patch, content_type=JSON_PATCH)
            except KubeApiError as error:
                if error.not_found:
                    log.info(
                        "VerticalPodAutoscaler %s was deleted before its status write", vpa.key
                    )
                    return WriteResult.GONE
                if not error.retryable or attempt == self.attempts:
                    raise
                delay = self.backoff_s * 2 ** (attempt - 1)
                log.warning("status write of %s: %s; retrying in %.1f s", vpa.key, error, delay)
                time.sleep(delay)
            else:
                return WriteResult.WRITTEN
        raise AssertionError("unreachable")
