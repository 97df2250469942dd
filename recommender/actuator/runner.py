"""The actuator inside `vpa-fleet run` (single-cluster mode): built from the settings next to
the cluster's recommender, run after each of its ticks on the VPAs, engine state and
RecommenderPolicies the recommender already holds, and reported by the driver."""

from __future__ import annotations

import datetime as dt
import threading
from collections import defaultdict
from typing import TextIO

from recommender.actuator.audit import AuditAction, AuditRecord
from recommender.actuator.overrides import with_overrides
from recommender.actuator.peaks import memory_peaks
from recommender.actuator.plan import Method, Policy
from recommender.actuator.service import ActuationReport, Actuator
from recommender.loop.cluster import ClusterRecommender
from recommender.observability.metrics import RecommenderMetrics
from recommender.policy.objects import RecommenderPolicy
from recommender.policy.resolve import choose
from recommender.settings import ActuatorSettings, Settings
from recommender.vpa.objects import VerticalPodAutoscaler


class AuditMirror:
    """The actuator's audit trail as of its last pass, kept in the driver for the gRPC API
    (the actuator itself lives in the recommender's Ray actor)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[AuditRecord] = []

    def update(self, records: list[AuditRecord]) -> None:
        with self._lock:
            self._records = list(records)

    def __call__(self) -> list[AuditRecord]:
        with self._lock:
            return list(self._records)


def policy_from_settings(settings: ActuatorSettings) -> Policy:
    return Policy(
        dry_run=settings.dry_run,
        method=Method(settings.mode),
        deferred_timeout=dt.timedelta(seconds=settings.deferred_timeout_s),
        cooldown=dt.timedelta(seconds=settings.cooldown_s),
        max_rollouts_per_cluster=settings.max_rollouts_per_cluster,
        max_rollouts_per_namespace=settings.max_rollouts_per_namespace,
        memory_margin=settings.memory_margin,
        min_replicas=settings.updater_min_replicas,
        infeasible_grace=dt.timedelta(seconds=settings.infeasible_grace_s),
        boot_memory_restart=settings.boot_memory_restart,
    )


def build_actuator(settings: Settings, recommender: ClusterRecommender) -> Actuator | None:
    """The cluster's actuator, sharing the recommender's client; None when it is off."""
    if not settings.actuator.enabled:
        return None
    return Actuator(
        recommender.kube,
        policy_from_settings(settings.actuator),
        cluster=settings.cluster,
        namespaces=settings.namespaces,
        admission_namespace=settings.actuator.admission_controller_namespace,
        target_refresh=dt.timedelta(seconds=settings.target_refresh_s),
        event_repeat_s=settings.actuator.event_repeat_s,
        pod_caches=recommender.pod_caches,  # one watch of pods for both
    )


def actuate(actuator: Actuator, recommender: ClusterRecommender) -> ActuationReport:
    """One pass over the recommender's VPAs, with their observed memory peaks and each
    VPA's RecommenderPolicy over the actuator's settings."""
    by_namespace: dict[str, list[RecommenderPolicy]] = defaultdict(list)
    for policy in recommender.policies.policies(recommender.owned):
        by_namespace[policy.namespace].append(policy)

    def policy_for(vpa: VerticalPodAutoscaler) -> Policy | None:
        chosen = choose(by_namespace[vpa.metadata.namespace], vpa.metadata.labels)
        if chosen is None or chosen.problem:
            return actuator.policy
        return with_overrides(actuator.policy, chosen.settings.actuator)

    cluster = recommender.options.cluster
    return actuator.run_once(
        recommender.vpas_as_written(),
        peaks=lambda namespace, name: memory_peaks(recommender.store, cluster, namespace, name),
        policy_for=policy_for,
    )


def _outcome(record_action: AuditAction, dry_run: bool, reason: str) -> str:
    if record_action is AuditAction.ROLLOUT:
        return "dry_run" if dry_run else "done"
    return reason


def report_actuation(
    report: ActuationReport, cluster: str, out: TextIO, metrics: RecommenderMetrics
) -> None:
    """Print the pass's new decisions (a skip repeated from the last pass is not printed
    again) and count them in the metrics."""
    for record in report.records:
        if record.action is AuditAction.ROLLOUT or record.count == 1:
            metrics.record_actuator_action(
                cluster, "rollout", _outcome(record.action, record.dry_run, record.reason)
            )
            what = "planned" if record.dry_run and record.action is AuditAction.ROLLOUT else None
            print(f"  actuator {what or record.action.value}: {record.message}", file=out)
    for error in report.errors:
        print(f"  actuator error: {error}", file=out)
    print(
        f"actuator: {len(report.records)} decision(s), {report.rollouts} rollout(s), "
        f"{len(report.errors)} error(s)",
        file=out,
        flush=True,
    )
