"""The recommender loop for one cluster: VPAs and pods from watch caches, history from
Prometheus (one batch of queries per namespace), the engine, the VPA's policy, status writes,
and checkpoints so that a restart loses no history.

One tick, per namespace holding VPAs of ours:

1. resolve each VPA's targetRef to a selector and match the namespace's pods;
2. fetch the namespace's usage since each VPA's history end (8 days back for a VPA never seen),
   keep the containers of matched pods, add OOM kills from Prometheus and from pod status;
3. ingest into the histograms, recommend for the VPA's containers (mode Off left out), cap by
   its resource policy, and write the status when it changed.

A failure stays where it happened: a namespace whose history cannot be read keeps its
recommendations as written and is retried next tick; a VPA that cannot be resolved or capped
is reported and the others go on.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from analytics.arrays import Int64Array
from analytics.estimation import reads_profile, recommend_rows, store_for
from analytics.estimators import PercentileEstimator, Resource
from analytics.ingest import ingest_samples
from analytics.recommendation import ContainerRecommendation
from analytics.snapshot import SnapshotError, export_workload, import_workload
from analytics.sources.prometheus import PrometheusHistory, PrometheusQueryError
from analytics.strategies import build_estimators
from analytics.usage import prepare_samples
from recommender.kube.cache import ListWatchCache
from recommender.kube.checkpoints import Checkpoint, CheckpointStore
from recommender.kube.events import EventRecorder, Involved
from recommender.kube.rest import JSON, KubeApiError, KubeClient
from recommender.kube.status_writer import StatusWriter, WriteResult
from recommender.kube.targets import Resolution, TargetResolver
from recommender.loop.pods import PodView, assignment, matched_pods, pod_view, slim_pod
from recommender.loop.policies import PolicyBook
from recommender.loop.samples import empty_usage, oom_rows, pod_status_kills, usage_rows
from recommender.policy.objects import RecommenderPolicy
from recommender.policy.resolve import Defaults, Effective, effective
from recommender.vpa.capping import PolicyError, apply_policy, is_scaled
from recommender.vpa.objects import (
    InvalidVpaError,
    RecommendedContainerResources,
    VerticalPodAutoscaler,
    VpaStatus,
    parse_vpa,
)
from recommender.vpa.safety import Observed, SafetyLimits, guard
from recommender.vpa.selection import is_selected
from recommender.vpa.status import desired_status, stale_status

log = logging.getLogger(__name__)

VPA_API_VERSION = "autoscaling.k8s.io/v1"
SILENT_NAMESPACES = 2

PEAK_MEMORY = PercentileEstimator(Resource.MEMORY, 1.0)

VpaKey = tuple[str, str]
"""(namespace, name) of a VPA."""

Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ns(moment: dt.datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def _condition_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class LoopOptions:
    """What the loop needs to know beyond its clients (see `recommender.settings`)."""

    cluster: str = "default"
    recommender_name: str = "vpa-fleet"
    namespaces: tuple[str, ...] = ()
    history: dt.timedelta = dt.timedelta(days=8)
    target_refresh: dt.timedelta = dt.timedelta(minutes=5)
    strategy: str = "vpa"
    strategy_params: Mapping[str, object] = field(default_factory=dict)
    status_change_threshold: float = 0.0
    max_allowed: Mapping[str, str] = field(default_factory=dict)
    safety: SafetyLimits = field(default_factory=SafetyLimits)


@dataclass(frozen=True)
class VpaResult:
    """What one tick did for one VPA: `outcome` is a `WriteResult` value, `skipped` (kept as
    written: its namespace's history could not be read) or `error`."""

    key: str
    outcome: str
    recommendations: tuple[RecommendedContainerResources, ...] = ()
    message: str = ""


@dataclass
class TickReport:
    """A tick in figures: how long, how many queries, samples and writes, per-VPA results."""

    started: dt.datetime
    duration_s: float = 0.0
    vpas: int = 0
    namespaces: int = 0
    queries: int = 0
    samples: int = 0
    results: list[VpaResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return sum(1 for r in self.results if r.outcome == WriteResult.WRITTEN)

    @property
    def unchanged(self) -> int:
        return sum(1 for r in self.results if r.outcome == WriteResult.UNCHANGED)


@dataclass
class _NamespaceWork:
    """One namespace in one tick."""

    namespace: str
    vpas: dict[str, VerticalPodAutoscaler]
    pods: list[PodView]
    settings: dict[str, Effective]
    resolutions: dict[str, Resolution] = field(default_factory=dict)
    matches: dict[str, list[PodView]] = field(default_factory=dict)
    observed: dict[tuple[str, str], Observed] = field(default_factory=dict)
    """By (VPA name, container): what the safety guards need."""


class ClusterRecommender:
    """Recommends for the VPAs of one cluster that name `options.recommender_name`."""

    def __init__(
        self,
        kube: KubeClient,
        prometheus: PrometheusHistory,
        options: LoopOptions,
        *,
        checkpoints: bool = True,
        clock: Clock = _utcnow,
        owned: Collection[str] | None = None,
        pod_transform: Callable[[JSON], JSON] = slim_pod,
    ) -> None:
        """`pod_transform` slims pods before the watch cache keeps them (wider when the
        actuator shares the cache)."""
        self.kube = kube
        self.prometheus = prometheus
        self.options = options
        self.clock = clock
        params, estimators = build_estimators(options.strategy, options.strategy_params)
        # With an hourly profile when the strategy reads one (`default`); see _keep_profile.
        self.store = store_for(params, estimators)
        self.checkpoints = (
            CheckpointStore(kube, options.recommender_name, params=self.store.params)
            if checkpoints
            else None
        )
        self.writer = StatusWriter(kube, threshold=options.status_change_threshold)
        # Warnings about VPAs it cannot serve, once per problem (and again every 10 minutes).
        self.events = EventRecorder(kube, component="vpa-fleet-recommender")
        scopes = [f"/namespaces/{ns}" for ns in options.namespaces] or [""]
        self.vpa_caches = [
            ListWatchCache(kube, f"/apis/autoscaling.k8s.io/v1{scope}/verticalpodautoscalers")
            for scope in scopes
        ]
        self.pod_caches = [
            ListWatchCache(kube, f"/api/v1{scope}/pods", transform=pod_transform)
            for scope in scopes
        ]
        defaults = Defaults(
            strategy=options.strategy,
            strategy_params=options.strategy_params,
            history=options.history,
            status_change_threshold=options.status_change_threshold,
            max_allowed=options.max_allowed,
        )
        self.policies = PolicyBook(kube, scopes, defaults, self.store.params)
        self.history_end: dict[VpaKey, dt.datetime] = {}
        self._uids: dict[VpaKey, str] = {}
        self._seen_kills: set[tuple[str, str, str, dt.datetime]] = set()
        self._reported_invalid: dict[VpaKey, str] = {}
        # Resolved targetRefs, reused while the VPA keeps its uid and generation (the selector
        # of a Deployment, StatefulSet or DaemonSet cannot change) until they are this old.
        self._resolved: dict[VpaKey, tuple[str, int, dt.datetime, Resolution]] = {}
        # Set when the API server stops answering during a tick: its remaining writes are
        # reported at once instead of each waiting for a connection that will not come.
        self._unreachable: str | None = None
        # The statuses this recommender wrote, for readers right after a tick: the watch
        # delivers them a moment later.
        self._written: dict[VpaKey, VpaStatus] = {}
        # Namespaces in a row whose queries got no answer this tick (and the last error):
        # after SILENT_NAMESPACES of them the others are not queried, so that a Prometheus
        # that has stopped answering costs a tick a few timeouts, not one per namespace.
        self._prometheus_silent = 0
        self._prometheus_silence = ""
        # The namespaces this recommender answers for (its shards in a fleet); None: all it sees.
        self.owned: frozenset[str] | None = None if owned is None else frozenset(owned)

    # -- life cycle ----------------------------------------------------------------------------

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the watches, wait for their first lists, and restore checkpoints."""
        for cache in [*self.vpa_caches, *self.pod_caches]:
            cache.start()
        for cache in [*self.vpa_caches, *self.pod_caches]:
            if not cache.wait_synced(timeout_s):
                raise TimeoutError(f"listing {cache.path} did not finish within {timeout_s:g} s")
        self.policies.start(timeout_s)
        self._keep_profile(
            effective(self.policies.defaults, policy)
            for policy in self.policies.policies(self.owned)
        )
        if self.checkpoints is not None:
            self.restore()

    def stop(self) -> None:
        for cache in [*self.vpa_caches, *self.pod_caches]:
            cache.stop()
        self.policies.stop()

    # -- VPAs ----------------------------------------------------------------------------------

    def our_vpas(self) -> dict[VpaKey, VerticalPodAutoscaler]:
        """VPAs of ours by key; invalid ones are reported once per resourceVersion."""
        ours = {}
        for cache in self.vpa_caches:
            for obj in cache.items():
                metadata = obj.get("metadata", {})
                key = (str(metadata.get("namespace", "")), str(metadata.get("name", "")))
                if self.owned is not None and key[0] not in self.owned:
                    continue
                try:
                    vpa = parse_vpa(obj)
                except InvalidVpaError as error:
                    version = str(metadata.get("resourceVersion", ""))
                    if self._reported_invalid.get(key) != version:
                        self._reported_invalid[key] = version
                        log.error("skipping invalid VPA: %s", error)
                        if _names(obj, self.options.recommender_name):
                            self._event(obj, "InvalidVerticalPodAutoscaler", str(error))
                    continue
                if is_selected(vpa, self.options.recommender_name):
                    ours[key] = vpa
        return ours

    def vpas_as_written(self) -> dict[VpaKey, VerticalPodAutoscaler]:
        """Our VPAs with the status this recommender last wrote to each, where the watch has
        not brought it back yet (what acts right after a tick must see that tick's writes)."""
        ours = self.our_vpas()
        for key, vpa in ours.items():
            written = self._written.get(key)
            if written is not None and vpa.status != written:
                ours[key] = vpa.model_copy(update={"status": written})
        return ours

    def _forget_missing(self, ours: Mapping[VpaKey, VerticalPodAutoscaler]) -> None:
        """Drop the state of VPAs that are gone, not ours any more, or replaced (new uid)."""
        stale = {
            key
            for key, uid in self._uids.items()
            if key not in ours or ours[key].metadata.uid != uid
        }
        for key, vpa in ours.items():
            self._uids.setdefault(key, vpa.metadata.uid)
        if not stale:
            return
        self._drop(stale)
        for key in stale:
            if key in ours:
                self._uids[key] = ours[key].metadata.uid
        log.info("forgot the state of %d VPA(s) gone or replaced", len(stale))

    def _drop(self, keys: Collection[VpaKey]) -> None:
        """Forget everything about these VPAs: histograms, history end, cached target."""
        if not keys:
            return
        aggregate_keys = self.store.aggregate_keys
        gone = [f"{ns}/{name}" for ns, name in keys]
        drop = (aggregate_keys["namespace"] + "/" + aggregate_keys["workload"]).is_in(gone)
        self.store.keep_aggregates(~drop.to_numpy())
        for key in keys:
            self._resolved.pop(key, None)
            self._uids.pop(key, None)
            self.history_end.pop(key, None)
            self._written.pop(key, None)

    def own(self, namespaces: Collection[str]) -> tuple[int, int]:
        """Answer for exactly these namespaces from now on (this cluster's shards of a fleet).

        VPAs of namespaces given up are checkpointed and their state dropped, so that their
        new owner restores them; those of namespaces taken on are restored from checkpoints.
        Returns (VPAs restored, VPAs handed over).
        """
        new = frozenset(namespaces)
        old = self.owned
        known = {ns for ns, _ in [*self._uids, *self.history_end]}
        released = (known if old is None else old) - new
        handed = self.checkpoint(released, collect_garbage=False) if released else 0
        self._drop([key for key in {*self._uids, *self.history_end} if key[0] in released])
        self.owned = new
        added = new if old is None else new - old
        restored = self.restore(added) if self.checkpoints is not None and added else 0
        return restored, handed

    def _pods_by_namespace(self) -> dict[str, list[PodView]]:
        pods: dict[str, list[PodView]] = defaultdict(list)
        for cache in self.pod_caches:
            for obj in cache.items():
                view = pod_view(obj)
                pods[view.namespace].append(view)
        return pods

    # -- the tick ------------------------------------------------------------------------------

    def tick(self) -> TickReport:
        """One pass over every VPA of ours."""
        now = self.clock()
        started = time.monotonic()
        queries_before = self.prometheus.query_count
        report = TickReport(started=now)
        self._unreachable = None
        self._prometheus_silent, self._prometheus_silence = 0, ""
        ours = self.our_vpas()
        self._forget_missing(ours)
        by_namespace: dict[str, dict[str, VerticalPodAutoscaler]] = defaultdict(dict)
        for (namespace, name), vpa in ours.items():
            by_namespace[namespace][name] = vpa
        pods = self._pods_by_namespace()
        resolver = TargetResolver(self.kube)
        report.vpas, report.namespaces = len(ours), len(by_namespace)
        policies: dict[str, list[RecommenderPolicy]] = defaultdict(list)
        for policy in self.policies.policies(self.owned):
            policies[policy.namespace].append(policy)
        for namespace in sorted(by_namespace):
            vpas = by_namespace[namespace]
            settings = self.policies.settle(vpas, policies[namespace])
            work = _NamespaceWork(namespace, vpas, pods.get(namespace, []), settings)
            try:
                self._namespace_tick(work, resolver, now, report)
            except Exception as error:  # one namespace must not stop the others
                log.exception("namespace %s: tick failed", namespace)
                report.errors.append(f"namespace {namespace}: {error}")
        report.errors.extend(self.policies.write_statuses(self.owned, _condition_time(now)))
        report.queries = self.prometheus.query_count - queries_before
        report.duration_s = time.monotonic() - started
        return report

    def _namespace_tick(
        self, work: _NamespaceWork, resolver: TargetResolver, now: dt.datetime, report: TickReport
    ) -> None:
        stale = [vpa for vpa in work.vpas.values() if not self._resolution_fresh(vpa, now)]
        try:
            resolver.prefetch(work.namespace, stale)
        except KubeApiError as error:  # each VPA is then read on its own
            log.warning("namespace %s: listing targets failed: %s", work.namespace, error)
        for name, vpa in sorted(work.vpas.items()):
            try:
                resolution = self._resolve(vpa, resolver, now)
            except KubeApiError as error:
                message = f"cannot resolve targetRef: {error}"
                log.error("VPA %s: %s", vpa.key, message)
                report.results.append(VpaResult(vpa.key, "error", message=message))
                continue
            work.resolutions[name] = resolution
            work.matches[name] = matched_pods(resolution.selector, work.pods)
        if self._prometheus_silent >= SILENT_NAMESPACES:
            message = (
                f"history not read: Prometheus did not answer for the {SILENT_NAMESPACES} "
                f"namespaces before this one in this tick ({self._prometheus_silence}); "
                "recommendations kept as written, asked again next tick"
            )
            report.errors.append(f"namespace {work.namespace}: not queried: Prometheus silent")
            for name in sorted(work.resolutions):
                report.results.append(self._write_stale(work.vpas[name], message, now))
            return
        self._keep_profile(work.settings.values())
        try:
            frame = self._history(work, now)
        except PrometheusQueryError as error:
            message = f"history not read, recommendations kept as written: {error}"
            log.error("namespace %s: %s", work.namespace, message)
            report.errors.append(f"namespace {work.namespace}: {error}")
            for name in sorted(work.resolutions):
                report.results.append(self._write_stale(work.vpas[name], message, now))
            if error.kind in {"unreachable", "timeout"}:
                self._prometheus_silent += 1
                self._prometheus_silence = f"{error.kind}: {error.detail}"
            return
        self._prometheus_silent = 0
        kills = frame.filter(pl.col("oom")).select("workload", "container").unique()
        for workload, container in kills.iter_rows():
            work.observed[(workload, container)] = Observed(oom_killed=True)
        if frame.height:
            samples = prepare_samples(frame)
            dropped = ingest_samples(self.store, samples)
            dropped.update(samples.skipped)
            report.samples += len(samples)
            if dropped:
                log.debug("namespace %s: samples dropped: %s", work.namespace, dict(dropped))
        estimated = self._estimate(work, now)
        for name in sorted(work.resolutions):
            if work.matches[name]:
                self.history_end[(work.namespace, name)] = now
            report.results.append(self._write(work, name, estimated.get(name, []), now))

    def _keep_profile(self, settings: Iterable[Effective]) -> None:
        """Keep an hourly profile (for every aggregate, from now on) once some VPA's settings
        choose a strategy that reads one: a RecommenderPolicy may choose `default` for a few
        VPAs of a recommender whose own strategy does not."""
        if self.store.profile is not None:
            return
        for chosen in settings:
            if self.policies.problem(chosen) is None and reads_profile(
                self.policies.estimators(chosen)
            ):
                self.store.keep_profile()
                log.info("keeping an hourly profile: strategy %r reads one", chosen.strategy)
                return

    def _resolution_fresh(self, vpa: VerticalPodAutoscaler, now: dt.datetime) -> bool:
        cached = self._resolved.get((vpa.metadata.namespace, vpa.metadata.name))
        if cached is None:
            return False
        uid, generation, resolved_at, _ = cached
        same = (uid, generation) == (vpa.metadata.uid, vpa.metadata.generation)
        return same and now - resolved_at < self.options.target_refresh

    def _resolve(
        self, vpa: VerticalPodAutoscaler, resolver: TargetResolver, now: dt.datetime
    ) -> Resolution:
        key = (vpa.metadata.namespace, vpa.metadata.name)
        if self._resolution_fresh(vpa, now):
            return self._resolved[key][3]
        resolution = resolver.resolve(vpa)
        self._resolved[key] = (vpa.metadata.uid, vpa.metadata.generation, now, resolution)
        return resolution

    def _history(self, work: _NamespaceWork, now: dt.datetime) -> pl.DataFrame:
        """New usage and OOM kills of the namespace's matched containers, as a usage frame.

        VPAs are grouped by where their history ends: normally one window [end, now) for the
        whole namespace; a new VPA adds the window from `now - history` for its own pods.
        """
        assigned = assignment(work.matches)
        if assigned.height == 0:
            return empty_usage()
        starts = {
            name: self.history_end.get((work.namespace, name), now - work.settings[name].history)
            for name, pods in work.matches.items()
            if pods
        }
        bounds = sorted(set(starts.values()))
        frames = []
        for i, start in enumerate(bounds):
            end = bounds[i + 1] if i + 1 < len(bounds) else now
            members = [name for name, begin in starts.items() if begin <= start]
            ours = assigned.filter(pl.col("workload").is_in(members))
            history = self.prometheus.fetch(work.namespace, start, end)
            frames.append(usage_rows(history.samples, ours))
            frames.append(oom_rows(history.oom_kills, ours))
        kills = self._new_pod_status_kills(work)
        frames.append(oom_rows(kills, assigned))
        frames = [f for f in frames if f.height]
        return pl.concat(frames, how="vertical") if frames else empty_usage()

    def _new_pod_status_kills(self, work: _NamespaceWork) -> pl.DataFrame:
        matched = {pod.name: pod for pods in work.matches.values() for pod in pods}
        kills = pod_status_kills(self.options.cluster, matched.values())
        fresh = []
        for row in kills.iter_rows():
            key = (row[2], row[3], row[4], row[0])
            fresh.append(key not in self._seen_kills)
            self._seen_kills.add(key)
        return kills.filter(pl.Series(fresh, dtype=pl.Boolean)) if kills.height else kills

    def _estimate(
        self, work: _NamespaceWork, now: dt.datetime
    ) -> dict[str, list[ContainerRecommendation]]:
        """Recommendations of every resolved VPA of the namespace, by VPA name, in one pass
        over the engine; containers whose policy has `mode: Off` are left out."""
        keys = self.store.aggregate_keys
        mine = (
            (keys["cluster"] == self.options.cluster)
            & (keys["namespace"] == work.namespace)
            & keys["workload"].is_in(list(work.resolutions))
        )
        rows = np.flatnonzero(mine.to_numpy()).astype(np.int64)
        chosen = keys[rows]
        scaled = np.array(
            [
                is_scaled(container, work.vpas[workload].spec.resource_policy)
                for workload, container in zip(chosen["workload"], chosen["container"], strict=True)
            ],
            dtype=bool,
        )
        rows, chosen = rows[scaled], chosen.filter(pl.Series(scaled))
        # One engine pass per set of estimators (policies may differ within a namespace).
        groups: dict[tuple[str, tuple[tuple[str, object], ...]], list[int]] = defaultdict(list)
        usable: dict[str, Effective] = {
            name: settings
            for name, settings in work.settings.items()
            if self.policies.problem(settings) is None
        }
        for position, workload in enumerate(chosen["workload"]):
            if workload in usable:
                groups[usable[workload].estimator_key].append(position)
        by_vpa: dict[str, list[ContainerRecommendation]] = defaultdict(list)
        for positions in groups.values():
            settings = usable[chosen["workload"][positions[0]]]
            estimators = self.policies.estimators(settings)
            estimated = recommend_rows(self.store, rows[positions], estimators, _ns(now))
            if self.options.safety.memory_peak_margin is not None:
                self._observe_peaks(work, rows[positions], chosen[positions])
            for recommendation in estimated.recommendations:
                by_vpa[recommendation.workload].append(recommendation)
        return by_vpa

    def _observe_peaks(self, work: _NamespaceWork, rows: Int64Array, keys: pl.DataFrame) -> None:
        """The memory peak of each row's container: the end of the highest non-empty bucket
        of its memory-peak histogram, so never below the largest peak it holds."""
        peaks = PEAK_MEMORY.estimate(self.store.estimation_input(rows))
        for workload, container, peak in zip(
            keys["workload"], keys["container"], peaks.tolist(), strict=True
        ):
            seen = work.observed.get((workload, container), Observed())
            work.observed[(workload, container)] = Observed(peak or None, seen.oom_killed)

    def _write(
        self,
        work: _NamespaceWork,
        name: str,
        recommendations: list[ContainerRecommendation],
        now: dt.datetime,
    ) -> VpaResult:
        vpa, resolution, settings = work.vpas[name], work.resolutions[name], work.settings[name]
        problem = self.policies.problem(settings)
        if problem is not None:
            return VpaResult(vpa.key, "error", message=f"{problem}; recommendation kept as written")
        policy = vpa.spec.resource_policy
        entries = [
            RecommendedContainerResources.model_validate(r.to_status_entry())
            for r in recommendations
        ]
        observed = {c: seen for (w, c), seen in work.observed.items() if w == name}
        entries = guard(entries, vpa.status.recommendation, observed, self.options.safety)
        try:
            capped = apply_policy(entries, policy, dict(settings.max_allowed), vpa_key=vpa.key)
        except PolicyError as error:
            log.error("%s", error)
            self.events.emit(_involved(vpa), "InvalidResourcePolicy", str(error), now, warning=True)
            return VpaResult(vpa.key, "error", message=str(error))
        status = desired_status(
            vpa,
            capped,
            pods_matched=bool(work.matches[name]),
            now=_condition_time(now),
            config_unsupported=resolution.config_unsupported,
        )
        if self._unreachable is not None:
            message = f"status not written: the API server did not answer ({self._unreachable})"
            return VpaResult(vpa.key, "error", tuple(capped), message=message)
        try:
            outcome = self.writer.write(vpa, status, settings.status_change_threshold)
        except KubeApiError as error:
            log.error("VPA %s: status not written: %s", vpa.key, error)
            if error.unreachable:  # the other writes of this tick would only wait for it too
                self._unreachable = error.message
            return VpaResult(vpa.key, "error", tuple(capped), message=str(error))
        if outcome is WriteResult.WRITTEN:
            self._written[(vpa.metadata.namespace, vpa.metadata.name)] = status
        return VpaResult(vpa.key, outcome.value, tuple(capped), resolution.config_unsupported or "")

    def _write_stale(self, vpa: VerticalPodAutoscaler, message: str, now: dt.datetime) -> VpaResult:
        """Keep the recommendation as written, with a HistoryStale condition saying why."""
        if self._unreachable is not None:
            return VpaResult(vpa.key, "skipped", message=message)
        try:
            stale = stale_status(vpa, message, _condition_time(now))
            if self.writer.write(vpa, stale) is WriteResult.WRITTEN:
                self._written[(vpa.metadata.namespace, vpa.metadata.name)] = stale
        except KubeApiError as error:
            log.error("VPA %s: HistoryStale condition not written: %s", vpa.key, error)
            if error.unreachable:
                self._unreachable = error.message
        return VpaResult(vpa.key, "skipped", message=message)

    def _event(self, obj: JSON, reason: str, message: str) -> None:
        """A Warning Event on a VPA object that could not be parsed."""
        metadata = obj.get("metadata", {})
        involved = Involved(
            VPA_API_VERSION,
            "VerticalPodAutoscaler",
            str(metadata.get("namespace", "")),
            str(metadata.get("name", "")),
            str(metadata.get("uid", "")),
        )
        self.events.emit(involved, reason, message, self.clock(), warning=True)

    # -- checkpoints ---------------------------------------------------------------------------

    def _scope(self) -> Collection[str] | None:
        """The namespaces whose checkpoints are ours to read and collect (None: all)."""
        if self.owned is not None:
            return self.owned
        return self.options.namespaces or None

    def checkpoint(
        self, namespaces: Collection[str] | None = None, *, collect_garbage: bool = True
    ) -> int:
        """Save the state of every VPA with history (of `namespaces` only, when given); then
        delete checkpoints of VPAs gone. Returns how many were saved."""
        if self.checkpoints is None:
            return 0
        ours = self.our_vpas()
        saved = 0
        for key, end in sorted(self.history_end.items()):
            vpa = ours.get(key)
            if vpa is None or (namespaces is not None and key[0] not in namespaces):
                continue
            namespace, name = key
            checkpoint = Checkpoint(
                namespace=namespace,
                vpa_name=name,
                vpa_uid=vpa.metadata.uid,
                recommender=self.options.recommender_name,
                history_end=end,
                aggregates=export_workload(self.store, self.options.cluster, namespace, name),
            )
            try:
                self.checkpoints.save(checkpoint)
            except KubeApiError as error:
                log.error("checkpoint of VPA %s not saved: %s", vpa.key, error)
                continue
            saved += 1
        if not collect_garbage:
            return saved
        try:
            deleted = self.checkpoints.collect_garbage(
                {key: vpa.metadata.uid for key, vpa in ours.items()}, self._scope()
            )
        except KubeApiError as error:
            log.error("checkpoints not garbage-collected: %s", error)
        else:
            if deleted:
                log.info("deleted %d checkpoint(s) of VPAs gone", deleted)
        return saved

    def restore(self, namespaces: Collection[str] | None = None) -> int:
        """Load the checkpoints of VPAs of ours (same uid), of `namespaces` only when given;
        returns how many were restored."""
        assert self.checkpoints is not None
        ours = self.our_vpas()
        loaded, problems = self.checkpoints.load(
            namespaces if namespaces is not None else self._scope()
        )
        for problem in problems:
            log.error("checkpoint problem: %s", problem)
        restored = 0
        for checkpoint in loaded:
            key = (checkpoint.namespace, checkpoint.vpa_name)
            vpa = ours.get(key)
            if vpa is None or vpa.metadata.uid != checkpoint.vpa_uid or key in self.history_end:
                continue
            try:
                left_out = import_workload(
                    self.store,
                    self.options.cluster,
                    checkpoint.namespace,
                    checkpoint.vpa_name,
                    checkpoint.aggregates,
                )
            except SnapshotError as error:
                log.error("checkpoint of VPA %s ignored: %s", vpa.key, error)
                continue
            for problem in left_out:
                log.error("checkpoint of VPA %s: %s", vpa.key, problem)
            self.history_end[key] = checkpoint.history_end
            self._uids[key] = vpa.metadata.uid
            restored += 1
        log.info("restored %d checkpoint(s)", restored)
        return restored


def _names(obj: JSON, recommender: str) -> bool:
    """Whether a raw VPA object names this recommender in spec.recommenders (read loosely:
    the object may be malformed elsewhere)."""
    spec = obj.get("spec")
    recommenders = spec.get("recommenders") if isinstance(spec, dict) else None
    if not isinstance(recommenders, list):
        return False
    return any(isinstance(r, dict) and r.get("name") == recommender for r in recommenders)


def _involved(vpa: VerticalPodAutoscaler) -> Involved:
    meta = vpa.metadata
    return Involved(VPA_API_VERSION, "VerticalPodAutoscaler", meta.namespace, meta.name, meta.uid)
