"""One pass of the actuator over a cluster, run after each tick of `vpa-fleet run` by the
replica holding the Lease: the pods of our VPAs (a watch cache), findings, the owners and
PodDisruptionBudgets of the workloads concerned (read only for those), decisions, patches,
Events, log lines, audit records."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from recommender.actuator.audit import AuditAction, AuditLog, AuditRecord
from recommender.actuator.inputs import (
    Budget,
    InputError,
    PodInfo,
    WorkloadRef,
    parse_pod,
    parse_workload,
)
from recommender.actuator.kube import (
    admission_controller_live,
    apply_rollout,
    list_budgets,
    resolve_owner,
    slim_pod,
    workload_path,
)
from recommender.actuator.plan import (
    METHOD_ANNOTATION,
    Candidate,
    Context,
    Decision,
    Method,
    Policy,
    decide,
    find,
    ours_under_way,
)
from recommender.kube.cache import ListWatchCache
from recommender.kube.events import EventRecorder, Involved
from recommender.kube.rest import JSON, KubeApiError, KubeClient
from recommender.kube.targets import TargetResolver
from recommender.vpa.objects import VerticalPodAutoscaler
from recommender.vpa.targets import Selector

log = logging.getLogger(__name__)

VpaKey = tuple[str, str]
Peaks = Callable[[str, str], Mapping[str, int]]
"""(namespace, VPA name) -> container -> observed memory peak (bytes)."""
PolicyFor = Callable[[VerticalPodAutoscaler], Policy | None]
"""A VPA's actuator settings (its RecommenderPolicy over ours); None: not actuated."""

ROLLED_OUT = "RolledOutByVpaFleet"
PLANNED = "RolloutPlannedByVpaFleet"
SKIPPED = "RolloutSkippedByVpaFleet"
FAILED = "RolloutFailed"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _no_peaks(namespace: str, name: str) -> Mapping[str, int]:
    return {}


@dataclass
class ActuationReport:
    """What one pass decided (the audit records as kept) and what went wrong."""

    records: list[AuditRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    audit: list[AuditRecord] = field(default_factory=list)
    """The whole audit trail after the pass (what the gRPC API lists)."""

    @property
    def rollouts(self) -> int:
        return sum(1 for r in self.records if r.action is AuditAction.ROLLOUT and not r.dry_run)


class Actuator:
    """The fallback actuator of one cluster."""

    def __init__(
        self,
        kube: KubeClient,
        policy: Policy,
        *,
        cluster: str = "default",
        namespaces: tuple[str, ...] = (),
        admission_namespace: str = "kube-system",
        target_refresh: dt.timedelta = dt.timedelta(minutes=5),
        event_repeat_s: float = 600.0,
        audit_capacity: int = 1000,
        clock: Callable[[], dt.datetime] = _utcnow,
        pod_caches: Sequence[ListWatchCache] | None = None,
    ) -> None:
        """`pod_caches`: watches of pods kept (and started) by someone else, the cluster's
        recommender, whose transform keeps what `slim_pod` keeps; None: watches of its own."""
        self.kube = kube
        self.policy = policy
        self.cluster = cluster
        self.admission_namespace = admission_namespace
        self.target_refresh = target_refresh
        self.clock = clock
        self.audit = AuditLog(audit_capacity)
        self.events = EventRecorder(kube, repeat_s=event_repeat_s, component="vpa-fleet-actuator")
        scopes = [f"/namespaces/{ns}" for ns in namespaces] or [""]
        self._owns_caches = pod_caches is None
        self.pod_caches = (
            list(pod_caches)
            if pod_caches is not None
            else [
                ListWatchCache(kube, f"/api/v1{scope}/pods", transform=slim_pod) for scope in scopes
            ]
        )
        self._selectors: dict[VpaKey, tuple[str, int, dt.datetime, Selector]] = {}
        self._rolling: set[WorkloadRef] = set()
        self._bad_pods: dict[tuple[str, str], str] = {}

    def start(self, timeout_s: float = 60.0) -> None:
        if not self._owns_caches:
            return
        for cache in self.pod_caches:
            cache.start()
        for cache in self.pod_caches:
            if not cache.wait_synced(timeout_s):
                raise TimeoutError(f"listing {cache.path} did not finish within {timeout_s:g} s")

    def stop(self) -> None:
        if not self._owns_caches:
            return
        for cache in self.pod_caches:
            cache.stop()

    # -- reading -------------------------------------------------------------------------------

    def _pods(self) -> dict[str, list[PodInfo]]:
        pods: dict[str, list[PodInfo]] = defaultdict(list)
        for cache in self.pod_caches:
            for obj in cache.items():
                metadata = obj.get("metadata", {})
                key = (str(metadata.get("namespace")), str(metadata.get("name")))
                try:
                    pod = parse_pod(obj)
                except InputError as error:
                    version = str(metadata.get("resourceVersion", ""))
                    if self._bad_pods.get(key) != version:
                        self._bad_pods[key] = version
                        log.error("actuator: pod skipped: %s", error)
                    continue
                pods[pod.namespace].append(pod)
        return pods

    def _selector(
        self, vpa: VerticalPodAutoscaler, resolver: TargetResolver, now: dt.datetime
    ) -> Selector:
        key = (vpa.metadata.namespace, vpa.metadata.name)
        cached = self._selectors.get(key)
        if cached is not None:
            uid, generation, at, selector = cached
            if (uid, generation) == (vpa.metadata.uid, vpa.metadata.generation) and (
                now - at < self.target_refresh
            ):
                return selector
        selector = resolver.resolve(vpa).selector
        self._selectors[key] = (vpa.metadata.uid, vpa.metadata.generation, now, selector)
        return selector

    def _refresh_rolling(self) -> None:
        """Forget our rollouts that have finished (or whose workload is gone)."""
        for ref in sorted(self._rolling, key=str):
            try:
                obj = self.kube.get(workload_path(ref))
            except KubeApiError as error:
                if error.not_found:
                    self._rolling.discard(ref)
                    continue
                raise
            obj.setdefault("kind", ref.kind)
            if not parse_workload(obj).rolling:
                self._rolling.discard(ref)

    # -- the pass ------------------------------------------------------------------------------

    def run_once(
        self,
        vpas: Mapping[VpaKey, VerticalPodAutoscaler],
        peaks: Peaks = _no_peaks,
        policy_for: PolicyFor | None = None,
    ) -> ActuationReport:
        """One pass: decide, act, report; the report carries the audit trail after it."""
        report = self._pass(vpas, peaks, policy_for)
        report.audit = self.audit.records()
        return report

    def _pass(
        self,
        vpas: Mapping[VpaKey, VerticalPodAutoscaler],
        peaks: Peaks = _no_peaks,
        policy_for: PolicyFor | None = None,
    ) -> ActuationReport:
        now = self.clock()
        report = ActuationReport()
        pods = self._pods()
        resolver = TargetResolver(self.kube)
        candidates: list[Candidate] = []
        objects: dict[WorkloadRef, JSON] = {}
        budgets: dict[str, tuple[Budget, ...]] = {}
        for (namespace, name), vpa in sorted(vpas.items()):
            policy = policy_for(vpa) if policy_for is not None else self.policy
            if policy is None:
                continue
            try:
                candidate = self._candidate(
                    vpa, pods.get(namespace, []), resolver, now, objects=objects, policy=policy
                )
                if candidate is None:
                    continue
                if namespace not in budgets:
                    budgets[namespace] = tuple(list_budgets(self.kube, namespace))
                candidates.append(
                    dataclasses.replace(
                        candidate, budgets=budgets[namespace], peaks=peaks(namespace, name)
                    )
                )
            except (KubeApiError, InputError) as error:
                message = f"VPA {vpa.key}: {error}"
                log.error("actuator: %s", message)
                report.errors.append(message)
        if not candidates:
            return report
        # After a restart the set of our rollouts under way starts empty: the workloads read
        # for this pass that are rolling under a recent stamp of ours count again.
        self._rolling |= {
            c.owner
            for c in candidates
            if c.workload is not None and ours_under_way(c.workload, now, self.policy.cooldown)
        }
        try:
            self._refresh_rolling()
        except (KubeApiError, InputError) as error:
            report.errors.append(f"actuator: {error}")
            log.error("actuator: pass stopped: %s", error)
            return report
        live = self._admission_live(candidates, now)
        context = Context(
            now=now,
            policy=self.policy,
            history=self.audit.records(),
            rolling=frozenset(self._rolling),
            admission_controller=live,
        )
        for decision in decide(candidates, context):
            report.records.append(self._carry_out(decision, objects, now, report))
        return report

    def _admission_live(self, candidates: list[Candidate], now: dt.datetime) -> bool:
        """Whether the admission controller runs, asked only when a candidate would restart
        into it. Unreadable (a namespaced install cannot read kube-system) counts as not
        running: the restart method is then refused, never used blind."""
        if not any(
            (c.policy or self.policy).method is Method.RESTART_ANNOTATION
            or c.vpa.metadata.annotations.get(METHOD_ANNOTATION) == Method.RESTART_ANNOTATION
            for c in candidates
        ):
            return True
        try:
            return admission_controller_live(self.kube, self.admission_namespace, now)
        except (KubeApiError, InputError) as error:
            log.warning("actuator: admission controller status not read: %s", error)
            return False

    def _candidate(
        self,
        vpa: VerticalPodAutoscaler,
        namespace_pods: list[PodInfo],
        resolver: TargetResolver,
        now: dt.datetime,
        *,
        objects: dict[WorkloadRef, JSON],
        policy: Policy,
    ) -> Candidate | None:
        if not namespace_pods:
            return None
        selector = self._selector(vpa, resolver, now)
        pods = tuple(p for p in namespace_pods if selector.matches(p.labels))
        finding = find(vpa, pods, now, policy)
        if finding is None:
            return None
        first = next(p for p in pods if p.name == finding.pods[0])
        owner = resolve_owner(self.kube, first)
        workload = None
        if owner.obj is not None:
            workload = parse_workload(owner.obj)
            objects[owner.ref] = owner.obj
        return Candidate(
            vpa=vpa,
            finding=finding,
            owner=owner.ref,
            workload=workload,
            owner_problem=owner.problem,
            pods=tuple(p for p in pods if p.owner == first.owner),
            policy=None if policy == self.policy else policy,
        )

    def _carry_out(
        self,
        decision: Decision,
        objects: Mapping[WorkloadRef, JSON],
        now: dt.datetime,
        report: ActuationReport,
    ) -> AuditRecord:
        record = decision.record(self.cluster, now)
        if decision.rollout and not decision.dry_run:
            try:
                apply_rollout(self.kube, decision, objects[decision.workload], now)
                self._rolling.add(decision.workload)
            except KubeApiError as error:
                # A conflict (the workload changed since it was read) is retried next pass.
                report.errors.append(f"{decision.workload}: rollout failed: {error}")
                record = dataclasses.replace(
                    record,
                    action=AuditAction.SKIP,
                    reason=FAILED,
                    message=f"{decision.workload} rollout failed: {error.message or error}. "
                    f"Planned: {decision.message}",
                )
        kept = self.audit.add(record)
        if kept.count == 1 or decision.rollout:
            log.info("actuator decision %s", json.dumps(kept.as_log(), sort_keys=True))
        else:
            log.debug("actuator decision %s", json.dumps(kept.as_log(), sort_keys=True))
        self._emit(decision, record, now)
        return kept

    def _emit(self, decision: Decision, record: AuditRecord, now: dt.datetime) -> None:
        if record.action is AuditAction.ROLLOUT:
            reason, warning = (PLANNED if record.dry_run else ROLLED_OUT), False
        else:
            reason, warning = SKIPPED, True
        ref = decision.workload
        objects = [
            Involved(
                "apps/v1" if ref.kind != "Pod" else "v1",
                ref.kind,
                ref.namespace,
                ref.name,
                decision.workload_uid,
            ),
            Involved(
                "autoscaling.k8s.io/v1",
                "VerticalPodAutoscaler",
                decision.vpa.metadata.namespace,
                decision.vpa.metadata.name,
                decision.vpa.metadata.uid,
            ),
        ]
        for obj in objects:
            self.events.emit(obj, reason, record.message, now, warning=warning)
