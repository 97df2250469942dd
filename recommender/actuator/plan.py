"""The actuator's decisions (pure: no I/O, the clock is an argument).

`find()` says whether a VPA's pods need a rollout the stock updater will not give them, and
why (the trigger); `decide()` turns the findings of one pass into decisions, one per
workload: roll out (with which resources and how) or skip, with the reason. The safety rules
are applied in a fixed order and the first that holds is the reason reported.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction

from analytics.quantity import format_cpu_millicores, format_memory_bytes, parse_quantity
from recommender.actuator.audit import AuditAction, AuditRecord, ContainerResources
from recommender.actuator.inputs import (
    NOT_REQUIRED,
    RESTART_CONTAINER,
    Budget,
    ContainerSpec,
    PodInfo,
    WorkloadInfo,
    WorkloadRef,
)
from recommender.vpa.objects import (
    ControlledValues,
    RecommendedContainerResources,
    UpdateMode,
    VerticalPodAutoscaler,
)

SKIP_ANNOTATION = "vpa-fleet.io/skip"
"""`"true"` on a workload or its VPA: the actuator never rolls it out."""
METHOD_ANNOTATION = "vpa-fleet.io/rollout-method"
"""On a VPA: this VPA's rollout method (`patch` or `restart-annotation`), instead of the
setting."""
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
"""The pod template annotation `kubectl rollout restart` sets; we set the same."""
STAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
"""UTC times in messages and annotations, as `kubectl rollout restart` writes them."""
ROLLED_OUT_AT = "vpa-fleet.io/rolled-out-at"
"""On a workload (not its template: no rollout of its own): when vpa-fleet last rolled it out
(`STAMP_FORMAT`). The cooldown counts from it too, so a restarted recommender, whose audit
trail starts empty, does not roll the workload out again within it."""

UPDATER_MODES = frozenset(
    {UpdateMode.RECREATE, UpdateMode.AUTO, UpdateMode.IN_PLACE_OR_RECREATE, UpdateMode.IN_PLACE}
)
"""Modes in which the stock updater changes running pods."""
IN_PLACE_MODES = frozenset({UpdateMode.IN_PLACE_OR_RECREATE, UpdateMode.IN_PLACE})


class Trigger(StrEnum):
    INFEASIBLE = "Infeasible"
    """A pod's resize is `PodResizePending` reason `Infeasible` (in InPlaceOrRecreate, for
    longer than the updater's grace when the updater handles the group)."""
    DEFERRED = "Deferred"
    """A pod's resize is `PodResizePending` reason `Deferred` (for long enough, or not yet)."""
    BOOT_MEMORY = "BootMemory"
    """A runtime that reads memory at boot, in a mode that resizes in place, without a
    restart policy for memory: its memory must change through a restart."""
    BELOW_MIN_REPLICAS = "BelowMinReplicas"
    """Requests outside the recommendation's bounds in a group the updater skips (fewer pods
    than its min-replicas)."""


class SkipReason(StrEnum):
    NOT_ROLLED = "OwnerNotRolled"
    SKIP_ANNOTATION = "SkipAnnotation"
    UPDATE_MODE = "UpdateMode"
    DEFERRED_WAITING = "DeferredNotLongEnough"
    UPDATER_FIRST = "UpdaterFirst"
    NO_RECOMMENDATION = "NoRecommendation"
    BAD_METHOD = "InvalidRolloutMethod"
    ON_DELETE = "OnDelete"
    NO_ADMISSION_CONTROLLER = "NoAdmissionController"
    ROLLOUT_IN_PROGRESS = "RolloutInProgress"
    COOLDOWN = "Cooldown"
    DISRUPTION_BUDGET = "DisruptionBudget"
    NOTHING_TO_CHANGE = "NothingToChange"
    CLUSTER_LIMIT = "ClusterLimit"
    NAMESPACE_LIMIT = "NamespaceLimit"


class Method(StrEnum):
    PATCH = "patch"
    """Patch the pod template's resources: works without the admission controller."""
    RESTART_ANNOTATION = "restart-annotation"
    """Set `kubectl.kubernetes.io/restartedAt` on the template: the admission controller
    gives the new pods the recommendation; the template keeps its resources."""


@dataclass(frozen=True)
class Policy:
    """The actuator's settings, as the core uses them (recommender.settings.ActuatorSettings
    is where they come from)."""

    dry_run: bool = False
    method: Method = Method.PATCH
    deferred_timeout: dt.timedelta = dt.timedelta(minutes=10)
    cooldown: dt.timedelta = dt.timedelta(minutes=30)
    max_rollouts_per_cluster: int = 2
    max_rollouts_per_namespace: int = 1
    memory_margin: float = 0.15
    min_replicas: int = 2
    """The updater's --min-replicas: groups with fewer pods are the actuator's."""
    infeasible_grace: dt.timedelta = dt.timedelta(minutes=5)
    """In InPlaceOrRecreate, how long an Infeasible resize of a group the updater handles is
    left to the updater (which evicts it on its next loops) before a rollout."""
    boot_memory_restart: bool = True


@dataclass(frozen=True)
class Finding:
    """Why a VPA's workload needs a rollout (or will once a Deferred resize is old enough)."""

    trigger: Trigger
    pods: tuple[str, ...]
    detail: str
    ready: bool = True
    """False: Deferred, not for long enough yet."""


def _entries(vpa: VerticalPodAutoscaler) -> dict[str, RecommendedContainerResources]:
    recommendation = vpa.status.recommendation
    if recommendation is None:
        return {}
    return {e.container_name: e for e in recommendation.container_recommendations}


def _q(values: Mapping[str, str]) -> dict[str, Fraction]:
    return {name: parse_quantity(value) for name, value in values.items()}


def _outside_bounds(pod: PodInfo, entries: Mapping[str, RecommendedContainerResources]) -> str:
    """The first container resource whose current request is outside the recommendation's
    bounds (as the updater judges it), described; "" when none."""
    for container in pod.containers:
        entry = entries.get(container.name)
        if entry is None:
            continue
        current = pod.current_requests(container.name)
        lower, upper = _q(entry.lower_bound), _q(entry.upper_bound)
        for resource, request in sorted(current.items()):
            if resource in lower and request < lower[resource]:
                return f"{container.name} {resource} request below the lower bound"
            if resource in upper and request > upper[resource]:
                return f"{container.name} {resource} request above the upper bound"
    return ""


def _time(moment: dt.datetime | None) -> str:
    return "an unknown time" if moment is None else moment.strftime(STAMP_FORMAT)


def find(
    vpa: VerticalPodAutoscaler, pods: Sequence[PodInfo], now: dt.datetime, policy: Policy
) -> Finding | None:
    """What calls for a rollout of the VPA's workload, by priority: Infeasible, Deferred
    for long enough, boot-memory runtime, group below min-replicas, Deferred not yet long
    enough. None when nothing does."""
    live = sorted((p for p in pods if p.live), key=lambda p: p.name)
    if not live:
        return None
    mode = vpa.update_mode
    policy_min = vpa.spec.update_policy.min_replicas if vpa.spec.update_policy else None
    minimum = policy_min if policy_min is not None else policy.min_replicas
    infeasible = [p for p in live if p.pending("Infeasible")]
    if infeasible:
        condition = infeasible[0].pending("Infeasible")
        assert condition is not None
        detail = f"resize of pod {infeasible[0].name} is Infeasible"
        if condition.message:
            detail += f" ({condition.message})"
        # The updater evicts such pods itself in this mode (groups it handles): a rollout
        # on top would disrupt twice. It gets its chance first.
        if mode is UpdateMode.IN_PLACE_OR_RECREATE and len(live) >= minimum:
            since = condition.since
            if since is None or now - since < policy.infeasible_grace:
                due = since + policy.infeasible_grace if since else None
                return Finding(
                    Trigger.INFEASIBLE,
                    tuple(p.name for p in infeasible),
                    f"{detail} since {_time(since)}; left to the updater's eviction, a "
                    f"rollout is due from {_time(due)}",
                    ready=False,
                )
        return Finding(Trigger.INFEASIBLE, tuple(p.name for p in infeasible), detail)

    deferred = [(p, c) for p in live if (c := p.pending("Deferred"))]
    overdue = [
        (p, c)
        for p, c in deferred
        if c.since is not None and now - c.since >= policy.deferred_timeout
    ]
    if overdue:
        pod, condition = overdue[0]
        return Finding(
            Trigger.DEFERRED,
            tuple(p.name for p, _ in overdue),
            f"resize of pod {pod.name} Deferred since {_time(condition.since)} "
            f"(longer than {policy.deferred_timeout.total_seconds():g} s)",
        )

    entries = _entries(vpa)
    # A resize under way (pending or in progress) is the kubelet's to finish first.
    resizing = any(p.resize for p in live)
    if policy.boot_memory_restart and mode in IN_PLACE_MODES and not resizing:
        for pod in live:
            for container in pod.containers:
                entry = entries.get(container.name)
                if (
                    container.boot_memory is None
                    or container.restarts_for("memory")
                    or entry is None
                    or "memory" not in entry.target
                ):
                    continue
                why = _outside_bounds(pod, {container.name: entry})
                if pod.resized_in_place:
                    why = "resized in place by the updater"
                if why:
                    return Finding(
                        Trigger.BOOT_MEMORY,
                        (pod.name,),
                        f"pod {pod.name}: {why}; container {container.name} runs "
                        f"{container.boot_memory.describe()}, which reads its memory at boot",
                    )

    if mode in UPDATER_MODES and not resizing and len(live) < minimum:
        for pod in live:
            why = _outside_bounds(pod, entries)
            if why:
                return Finding(
                    Trigger.BELOW_MIN_REPLICAS,
                    tuple(p.name for p in live),
                    f"{len(live)} pod(s), fewer than the updater's min-replicas {minimum}, "
                    f"which leaves them alone; pod {pod.name}: {why}",
                )

    if deferred:
        pod, condition = deferred[0]
        due = condition.since + policy.deferred_timeout if condition.since else None
        return Finding(
            Trigger.DEFERRED,
            tuple(p.name for p, _ in deferred),
            f"resize of pod {pod.name} Deferred since {_time(condition.since)}; a rollout is "
            f"due from {_time(due)}",
            ready=False,
        )
    return None


@dataclass(frozen=True)
class Candidate:
    """A VPA with a finding, its pods, and what the adapter found about their owner."""

    vpa: VerticalPodAutoscaler
    finding: Finding
    owner: WorkloadRef
    """The pods' owning workload (kind Pod for a bare pod; DaemonSet, Job, ... as found)."""
    workload: WorkloadInfo | None = None
    """Set for the kinds the actuator rolls (Deployment, StatefulSet)."""
    owner_problem: str = ""
    """Why `workload` is None: the owner is not rolled, or could not be read."""
    budgets: tuple[Budget, ...] = ()
    """The PodDisruptionBudgets of the namespace."""
    pods: tuple[PodInfo, ...] = ()
    peaks: Mapping[str, int] = field(default_factory=dict)
    """Container -> observed memory peak (bytes), where known."""
    policy: Policy | None = None
    """This VPA's settings when a RecommenderPolicy overrides them (None: the context's)."""


@dataclass(frozen=True)
class Context:
    now: dt.datetime
    policy: Policy
    history: Sequence[AuditRecord] = ()
    rolling: Collection[WorkloadRef] = ()
    """Our own rollouts still under way (each counts against the limits)."""
    admission_controller: bool = True
    """The VPA admission controller runs (its status Lease is fresh)."""


@dataclass(frozen=True)
class Decision:
    vpa: VerticalPodAutoscaler
    workload: WorkloadRef
    workload_uid: str
    trigger: Trigger
    action: AuditAction
    reason: SkipReason | None
    method: Method
    message: str
    dry_run: bool = False
    changes: tuple[ContainerResources, ...] = ()
    restart: bool = False
    """Set the restart annotation on the template too."""

    @property
    def rollout(self) -> bool:
        return self.action is AuditAction.ROLLOUT

    def record(self, cluster: str, now: dt.datetime) -> AuditRecord:
        return AuditRecord(
            time=now,
            cluster=cluster,
            namespace=self.workload.namespace,
            workload_kind=self.workload.kind,
            workload_name=self.workload.name,
            vpa=self.vpa.metadata.name,
            action=self.action,
            trigger=self.trigger.value,
            reason=self.reason.value if self.reason else self.method.value,
            message=self.message,
            dry_run=self.dry_run,
            resources=self.changes,
        )


# -- resources ---------------------------------------------------------------------------------


def _ceil(value: Fraction) -> int:
    return math.ceil(value)


def _format(resource: str, value: Fraction) -> str:
    if resource == "cpu":
        return format_cpu_millicores(_ceil(value * 1000))
    return format_memory_bytes(_ceil(value))


def memory_floor(current: Fraction, target: Fraction, peak: int | None, margin: float) -> Fraction:
    """The memory request a rollout gives: the target, except that a decrease never goes
    below the observed peak plus margin, nor (without a known peak) below the current."""
    if target >= current:
        return target
    if peak is None:
        return current
    floor = Fraction(peak) * (1 + Fraction(margin).limit_denominator(10_000))
    return min(current, max(target, floor))


def container_change(
    spec: ContainerSpec,
    entry: RecommendedContainerResources | None,
    *,
    peak: int | None,
    policy: Policy,
    controlled_values: ControlledValues | None,
    set_resources: bool,
    restart_memory: bool,
) -> tuple[ContainerResources | None, list[str]]:
    """What a rollout gives this template container, and notes for the message; None when
    it changes nothing."""
    notes: list[str] = []
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if set_resources and entry is not None:
        target = _q(entry.target)
        for resource in sorted(target):
            if resource not in ("cpu", "memory"):
                continue
            old = spec.requests.get(resource)
            new = target[resource]
            if resource == "memory" and old is not None:
                floored = memory_floor(old, new, peak, policy.memory_margin)
                if floored != new:
                    notes.append(
                        f"{spec.name} memory decrease held at {_format('memory', floored)} "
                        + (
                            f"(observed peak {_format('memory', Fraction(peak))} plus "
                            f"{policy.memory_margin:.0%})"
                            if peak is not None
                            else "(no observed peak known)"
                        )
                    )
                new = floored
            if old is not None and _format(resource, old) == _format(resource, new):
                continue
            requests[resource] = _format(resource, new)
            limit = spec.limits.get(resource)
            if limit is not None and controlled_values is not ControlledValues.REQUESTS_ONLY:
                # Limits keep their ratio to the request, as the admission controller does.
                scaled = limit * new / old if old else limit
                limits[resource] = _format(resource, max(scaled, new))
            elif limit is not None and limit < new:
                limits[resource] = _format(resource, new)
    policy_change: dict[str, str] = {}
    if restart_memory and not spec.restarts_for("memory"):
        policy_change = {
            "cpu": spec.resize_policy.get("cpu", NOT_REQUIRED),
            "memory": RESTART_CONTAINER,
        }
    if not requests and not policy_change:
        return None, notes
    return ContainerResources(spec.name, requests, limits, policy_change), notes


def _describe(change: ContainerResources, spec: ContainerSpec) -> str:
    parts = []
    for resource, value in change.requests.items():
        old = spec.requests.get(resource)
        was = _format(resource, old) if old is not None else "none"
        limit = f" (limit {change.limits[resource]})" if resource in change.limits else ""
        parts.append(f"{resource} {was} -> {value}{limit}")
    if change.resize_policy:
        parts.append("resizePolicy memory RestartContainer")
    return f"{change.container}: {', '.join(parts)}"


# -- decisions ---------------------------------------------------------------------------------


def _method(vpa: VerticalPodAutoscaler, policy: Policy) -> Method | str:
    raw = vpa.metadata.annotations.get(METHOD_ANNOTATION)
    if raw is None:
        return policy.method
    try:
        return Method(raw)
    except ValueError:
        return (
            f"VPA {vpa.key}: annotation {METHOD_ANNOTATION} is {raw!r}, expected one of "
            f"{', '.join(m.value for m in Method)}"
        )


def _stamped(annotations: Mapping[str, str]) -> dt.datetime | None:
    """The workload's `ROLLED_OUT_AT`; a value that does not parse counts as none."""
    try:
        stamped = dt.datetime.strptime(annotations.get(ROLLED_OUT_AT, ""), STAMP_FORMAT)
    except ValueError:
        return None
    return stamped.replace(tzinfo=dt.UTC)


def _last_rollout(
    history: Sequence[AuditRecord], ref: WorkloadRef, annotations: Mapping[str, str]
) -> dt.datetime | None:
    """The latest real rollout of `ref`: in the audit trail, or stamped on the workload."""
    times = [
        r.time
        for r in history
        if r.action is AuditAction.ROLLOUT
        and not r.dry_run
        and r.workload == (ref.kind, ref.namespace, ref.name)
    ]
    if (stamped := _stamped(annotations)) is not None:
        times.append(stamped)
    return max(times) if times else None


def ours_under_way(workload: WorkloadInfo, now: dt.datetime, within: dt.timedelta) -> bool:
    """Whether `workload` is rolling out because of us: rolling, and stamped by a rollout of
    ours less than `within` ago. Lets a restarted recommender, whose count of its rollouts
    under way starts empty, count them again for `max_rollouts_per_*`."""
    stamped = _stamped(workload.annotations)
    return workload.rolling and stamped is not None and now - stamped < within


def _blocking_budget(candidate: Candidate) -> Budget | None:
    pods = [p for p in candidate.pods if p.live]
    for budget in sorted(candidate.budgets, key=lambda b: b.name):
        if budget.disruptions_allowed <= 0 and any(budget.selector.matches(p.labels) for p in pods):
            return budget
    return None


_PRIORITY = {
    Trigger.INFEASIBLE: 0,
    Trigger.DEFERRED: 1,
    Trigger.BOOT_MEMORY: 2,
    Trigger.BELOW_MIN_REPLICAS: 3,
}


def decide(candidates: Sequence[Candidate], context: Context) -> list[Decision]:
    """One decision per candidate, in priority order (Infeasible first, then by VPA). The
    limits count our rollouts under way plus those decided earlier in this pass (dry-run
    plans count too, so that the plan shows what would really happen)."""
    per_cluster = len(set(context.rolling))
    per_namespace: Counter[str] = Counter(ref.namespace for ref in set(context.rolling))
    decisions = []
    ordered = sorted(
        candidates, key=lambda c: (_PRIORITY[c.finding.trigger], c.vpa.key, str(c.owner))
    )
    seen: set[WorkloadRef] = set()
    for candidate in ordered:
        if candidate.owner in seen:
            continue  # two VPAs over one workload: the first decides
        seen.add(candidate.owner)
        decision = _decide_one(
            candidate, context, per_cluster, per_namespace[candidate.owner.namespace]
        )
        if decision.rollout:
            per_cluster += 1
            per_namespace[candidate.owner.namespace] += 1
        decisions.append(decision)
    return decisions


def _decide_one(
    candidate: Candidate, context: Context, cluster_count: int, namespace_count: int
) -> Decision:
    policy, now = candidate.policy or context.policy, context.now
    vpa, finding, owner, workload = (
        candidate.vpa,
        candidate.finding,
        candidate.owner,
        candidate.workload,
    )
    method_or_error = _method(vpa, policy)
    method = method_or_error if isinstance(method_or_error, Method) else policy.method
    because = finding.detail

    def skip(reason: SkipReason, why: str) -> Decision:
        return Decision(
            vpa=vpa,
            workload=owner,
            workload_uid=workload.uid if workload else "",
            trigger=finding.trigger,
            action=AuditAction.SKIP,
            reason=reason,
            method=method,
            message=f"{owner} not rolled out: {why}. Trigger: {because}",
            dry_run=policy.dry_run,
        )

    if workload is None:
        return skip(
            SkipReason.NOT_ROLLED,
            candidate.owner_problem or f"{owner.kind} is not rolled out by vpa-fleet",
        )
    for where, marks in (
        ("VPA", vpa.metadata.annotations),
        (owner.kind, workload.annotations),
    ):
        if marks.get(SKIP_ANNOTATION) == "true":
            return skip(
                SkipReason.SKIP_ANNOTATION, f'the {where} is annotated {SKIP_ANNOTATION}: "true"'
            )
    mode = vpa.update_mode
    if mode not in UPDATER_MODES:
        return skip(SkipReason.UPDATE_MODE, f"the VPA's update mode is {mode.value}")
    if not finding.ready and finding.trigger is Trigger.INFEASIBLE:
        return skip(
            SkipReason.UPDATER_FIRST,
            "the stock updater evicts Infeasible pods of the groups it handles; waiting "
            f"{policy.infeasible_grace.total_seconds():g} s for it",
        )
    if not finding.ready:
        return skip(
            SkipReason.DEFERRED_WAITING,
            f"waiting {policy.deferred_timeout.total_seconds():g} s for the kubelet",
        )
    if not isinstance(method_or_error, Method):
        return skip(SkipReason.BAD_METHOD, method_or_error)
    entries = _entries(vpa)
    if not entries:
        return skip(SkipReason.NO_RECOMMENDATION, "the VPA has no recommendation")
    if (
        owner.kind == "StatefulSet"
        and workload.update_strategy == "OnDelete"
        and method is Method.RESTART_ANNOTATION
    ):
        return skip(
            SkipReason.ON_DELETE,
            "its updateStrategy is OnDelete: a restart annotation changes no pod, and "
            "vpa-fleet does not delete pods",
        )
    if method is Method.RESTART_ANNOTATION and not context.admission_controller:
        return skip(
            SkipReason.NO_ADMISSION_CONTROLLER,
            "the restart method needs the VPA admission controller (its status Lease is not "
            "fresh): restarted pods would keep their old requests",
        )
    if workload.rolling or owner in context.rolling:
        return skip(SkipReason.ROLLOUT_IN_PROGRESS, "a rollout is under way")
    last = _last_rollout(context.history, owner, workload.annotations)
    if last is not None and now - last < policy.cooldown:
        return skip(
            SkipReason.COOLDOWN,
            f"rolled out at {_time(last)}; cooldown until {_time(last + policy.cooldown)}",
        )
    budget = _blocking_budget(candidate)
    if budget is not None:
        return skip(
            SkipReason.DISRUPTION_BUDGET,
            f"PodDisruptionBudget {budget.name} allows no disruption "
            f"(disruptionsAllowed {budget.disruptions_allowed})",
        )

    boot_restart = policy.boot_memory_restart and mode in IN_PLACE_MODES
    changes: list[ContainerResources] = []
    notes: list[str] = []
    described: list[str] = []
    resource_policy = vpa.spec.resource_policy
    for spec in workload.containers:
        container_policy = resource_policy.for_container(spec.name) if resource_policy else None
        change, container_notes = container_change(
            spec,
            entries.get(spec.name),
            peak=candidate.peaks.get(spec.name),
            policy=policy,
            controlled_values=container_policy.controlled_values if container_policy else None,
            set_resources=method is Method.PATCH,
            restart_memory=boot_restart and spec.boot_memory is not None,
        )
        notes += container_notes
        if change is not None:
            changes.append(change)
            described.append(_describe(change, spec))
            if change.resize_policy and spec.boot_memory is not None:
                notes.append(
                    f"{spec.name} runs {spec.boot_memory.describe()}, which reads its memory at "
                    "boot: its memory changes through a restart, its CPU in place"
                )
    restart = method is Method.RESTART_ANNOTATION
    if not changes and not restart:
        return skip(
            SkipReason.NOTHING_TO_CHANGE, "its pod template already has the recommended resources"
        )
    if cluster_count >= context.policy.max_rollouts_per_cluster:
        return skip(
            SkipReason.CLUSTER_LIMIT,
            f"{cluster_count} rollout(s) under way in the cluster "
            f"(max_rollouts_per_cluster {context.policy.max_rollouts_per_cluster})",
        )
    if namespace_count >= policy.max_rollouts_per_namespace:
        return skip(
            SkipReason.NAMESPACE_LIMIT,
            f"{namespace_count} rollout(s) under way in namespace {owner.namespace} "
            f"(max_rollouts_per_namespace {policy.max_rollouts_per_namespace})",
        )
    how = (
        "pod template resources patched"
        if method is Method.PATCH
        else f"template annotated {RESTARTED_AT}"
    )
    if owner.kind == "StatefulSet" and workload.update_strategy == "OnDelete":
        how += (
            "; updateStrategy OnDelete: pods change when they are deleted, vpa-fleet deletes none"
        )
    verb = "would be rolled out (dry run)" if policy.dry_run else "rolled out"
    body = "; ".join(described) if described else "resources left to the admission controller"
    message = f"{owner} {verb} ({how}): {body}. Trigger: {because}"
    if notes:
        message += ". " + "; ".join(notes)
    return Decision(
        vpa=vpa,
        workload=owner,
        workload_uid=workload.uid,
        trigger=finding.trigger,
        action=AuditAction.ROLLOUT,
        reason=None,
        method=method,
        message=message,
        dry_run=policy.dry_run,
        changes=tuple(changes),
        restart=restart,
    )
