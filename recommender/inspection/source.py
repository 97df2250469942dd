"""Reads what `inspect` and `explain` show from one cluster's API server: our VPAs, the pods
their targets select, and their `RecommenderCheckpoint`s (the exact saved state). Read-only:
only GET and LIST requests. Both the gRPC server and the CLI's direct mode use it."""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from analytics.sources.prometheus import (
    PrometheusHistory,
    PrometheusQueryError,
    PrometheusSourceConfig,
)
from analytics.strategies import build_estimators
from recommender.api.generated.vpafleet.v1 import inspection_pb2 as pb
from recommender.inspection.explain import (
    ContainerExplanation,
    ExplainError,
    OomEvent,
    explain_container,
)
from recommender.inspection.summary import JSON, recommendation, running
from recommender.kube.checkpoints import CheckpointError, CheckpointStore, checkpoint_path
from recommender.kube.rest import KubeApiError, KubeClient
from recommender.kube.status_writer import vpa_path
from recommender.kube.targets import TargetResolver
from recommender.loop.pods import pod_view
from recommender.loop.policies import RESOURCE as POLICIES
from recommender.policy.objects import API_PATH as POLICY_API
from recommender.policy.objects import parse_policy
from recommender.policy.resolve import Defaults, Effective, choose, effective
from recommender.vpa.objects import InvalidVpaError, VerticalPodAutoscaler, parse_vpa
from recommender.vpa.selection import is_selected

log = logging.getLogger(__name__)

VPA_API = "/apis/autoscaling.k8s.io/v1"


class NotFoundError(LookupError):
    """No such VPA of ours, or no saved state for it; the message names it."""


@dataclass
class ClusterInspector:
    """What one cluster's VPAs of ours hold, and why.

    `strategy`, `strategy_params` and `max_allowed` must be those the recommender runs with:
    an explanation recomputes its target with them.
    """

    cluster: str
    kube: KubeClient
    recommender_name: str = "vpa-fleet"
    strategy: str = "vpa"
    strategy_params: Mapping[str, object] = field(default_factory=dict)
    max_allowed: Mapping[str, str] = field(default_factory=dict)
    prometheus: PrometheusSourceConfig | None = None
    """Where OOM kills of the saved history window are read (none: from pod status only)."""
    serves: Callable[[str], bool] | None = None
    """The namespaces the recommender serves in this cluster (None: all)."""
    progress: Callable[[str], None] | None = None
    """Told a line per namespace read, for long scans."""

    def vpas(self, namespace: str = "", label_selector: str = "") -> list[VerticalPodAutoscaler]:
        """Our VPAs (of one namespace, matching a label selector), by namespace and name.
        Invalid ones are left out and logged."""
        scope = f"/namespaces/{namespace}" if namespace else ""
        items, _ = self.kube.list_all(
            f"{VPA_API}{scope}/verticalpodautoscalers", labelSelector=label_selector or None
        )
        ours = []
        for item in items:
            try:
                vpa = parse_vpa(item)
            except InvalidVpaError as error:
                log.warning("skipping invalid VPA: %s", error)
                continue
            served = self.serves is None or self.serves(vpa.metadata.namespace)
            if served and is_selected(vpa, self.recommender_name):
                ours.append(vpa)
        return sorted(ours, key=lambda v: (v.metadata.namespace, v.metadata.name))

    def vpa(self, namespace: str, name: str) -> VerticalPodAutoscaler:
        where = f"VerticalPodAutoscaler {namespace}/{name}"
        try:
            item = self.kube.get(vpa_path(namespace, name))
        except KubeApiError as error:
            if error.not_found:
                raise NotFoundError(f"{where} not found in cluster {self.cluster}") from None
            raise
        vpa = parse_vpa(item)
        if self.serves is not None and not self.serves(namespace):
            raise NotFoundError(f"{where}: namespace {namespace} is not served by this recommender")
        if not is_selected(vpa, self.recommender_name):
            raise NotFoundError(
                f"{where} is not ours: its spec.recommenders does not name "
                f"{self.recommender_name!r}"
            )
        return vpa

    def _pods(self, vpas: Sequence[VerticalPodAutoscaler]) -> dict[tuple[str, str], list[JSON]]:
        """The pods each VPA's target selects, by (namespace, name)."""
        by_namespace: dict[str, list[VerticalPodAutoscaler]] = defaultdict(list)
        for vpa in vpas:
            by_namespace[vpa.metadata.namespace].append(vpa)
        resolver = TargetResolver(self.kube)
        selected: dict[tuple[str, str], list[JSON]] = {}
        for number, (namespace, members) in enumerate(sorted(by_namespace.items()), start=1):
            pods, _ = self.kube.list_all(f"/api/v1/namespaces/{namespace}/pods")
            if self.progress is not None:
                self.progress(
                    f"[{number}/{len(by_namespace)}] {namespace}: {len(members)} VPA(s), "
                    f"{len(pods)} pod(s)"
                )
            labels = [pod_view(p).labels for p in pods]
            try:
                resolver.prefetch(namespace, members)
            except KubeApiError as error:  # each is then read on its own
                log.warning("namespace %s: listing targets failed: %s", namespace, error)
            for vpa in members:
                selector = resolver.resolve(vpa).selector
                selected[(namespace, vpa.metadata.name)] = [
                    pod
                    for pod, pod_labels in zip(pods, labels, strict=True)
                    if selector.matches(pod_labels)
                ]
        return selected

    def recommendations(
        self, namespace: str = "", label_selector: str = ""
    ) -> list[pb.Recommendation]:
        vpas = self.vpas(namespace, label_selector)
        pods = self._pods(vpas)
        return [
            recommendation(self.cluster, v, pods[(v.metadata.namespace, v.metadata.name)])
            for v in vpas
        ]

    def recommendation(self, namespace: str, name: str) -> pb.Recommendation:
        vpa = self.vpa(namespace, name)
        return recommendation(self.cluster, vpa, self._pods([vpa])[(namespace, name)])

    def explain(self, namespace: str, name: str, container: str | None) -> ContainerExplanation:
        """The explanation of one container from the VPA's checkpoint (the saved state)."""
        vpa = self.vpa(namespace, name)
        params, _ = build_estimators(self.strategy, self.strategy_params)
        store = CheckpointStore(self.kube, self.recommender_name, params=params.model_fields_only())
        where = f"VerticalPodAutoscaler {namespace}/{name}"
        try:
            checkpoint = store.parse(self.kube.get(checkpoint_path(namespace, name)))
        except KubeApiError as error:
            if error.not_found:
                raise NotFoundError(
                    f"{where}: no RecommenderCheckpoint yet (the recommender saves one after "
                    "its first tick with history)"
                ) from None
            raise
        except CheckpointError as error:
            raise NotFoundError(f"{where}: its checkpoint cannot be read: {error}") from None
        if checkpoint.vpa_uid and checkpoint.vpa_uid != vpa.metadata.uid:
            raise NotFoundError(
                f"{where}: the checkpoint belongs to an earlier VPA of that name "
                f"(uid {checkpoint.vpa_uid}, the VPA's is {vpa.metadata.uid})"
            )
        pods = running(self._pods([vpa])[(namespace, name)])
        if container is None and len(checkpoint.aggregates) == 1:
            container = checkpoint.aggregates[0].container
        kills = _kills(pods, container)
        if self.prometheus is not None:
            kills = self._prometheus_kills(namespace, pods, container, checkpoint.history_end)
        settings = self._settings(vpa)
        return explain_container(
            cluster=self.cluster,
            vpa=vpa,
            container=container,
            aggregates=checkpoint.aggregates,
            as_of=checkpoint.history_end,
            strategy=settings.strategy,
            strategy_params=dict(settings.strategy_params),
            global_max_allowed=dict(settings.max_allowed),
            oom_kills=kills,
            aggregation=params.model_fields_only(),
            policy_name=settings.policy.key if settings.policy else "",
        )

    def _settings(self, vpa: VerticalPodAutoscaler) -> Effective:
        """The settings the loop gives this VPA: the recommender's, overridden by the
        RecommenderPolicy of its namespace that picks it (recommender/policy)."""
        namespace = vpa.metadata.namespace
        try:
            items, _ = self.kube.list_all(f"{POLICY_API}/namespaces/{namespace}/{POLICIES}")
        except KubeApiError as error:
            if not error.not_found:  # no CRD: no policies, as in the loop
                raise
            items = []
        policy = choose([parse_policy(item) for item in items], vpa.metadata.labels)
        defaults = Defaults(
            strategy=self.strategy,
            strategy_params=self.strategy_params,
            history=dt.timedelta(days=8),  # not used by an explanation
            status_change_threshold=0.0,
            max_allowed=self.max_allowed,
        )
        settings = effective(defaults, policy)
        if policy is not None and policy.problem:
            raise ExplainError(
                f"VerticalPodAutoscaler {vpa.key}: governed by RecommenderPolicy {policy.key}, "
                f"whose settings cannot be used ({policy.problem}): the loop skips it"
            )
        return settings

    def _prometheus_kills(
        self, namespace: str, pods: Sequence[JSON], container: str | None, end: dt.datetime
    ) -> list[OomEvent]:
        """The OOM kills Prometheus saw of the VPA's pods over the history window before `end`
        (one namespace fetch); pod status is the fallback when Prometheus cannot be read."""
        assert self.prometheus is not None
        start = end - dt.timedelta(seconds=self.prometheus.history_s)
        views = {view.name: view for view in (pod_view(p) for p in pods)}
        try:
            with PrometheusHistory(self.prometheus) as prometheus:
                frame = prometheus.fetch(namespace, start, end).oom_kills
        except PrometheusQueryError as error:
            log.warning("OOM kills of %s not read from Prometheus: %s", namespace, error)
            return _kills(pods, container)
        events = []
        for row in frame.iter_rows(named=True):
            view = views.get(row["pod"])
            if view is None or (container is not None and row["container"] != container):
                continue
            moment = row["timestamp"]
            events.append(
                OomEvent(
                    view.name,
                    moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment,
                    view.memory_requests.get(row["container"]),
                )
            )
        return events


def _kills(pods: Sequence[JSON], container: str | None) -> list[OomEvent]:
    """OOM kills the pods report in their containers' lastState."""
    events = []
    for pod in pods:
        view = pod_view(pod)
        for kill in view.oom_kills:
            if container is None or kill.container == container:
                request = view.memory_requests.get(kill.container)
                events.append(OomEvent(view.name, kill.finished_at.astimezone(dt.UTC), request))
    return events
