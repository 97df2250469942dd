"""The fleet's actors. A ShardActor owns shards ((cluster, namespace) pairs): for each cluster
it has shards in, it runs that cluster's loop restricted to its namespaces, fetching its own
samples from the cluster's Prometheus (samples never travel between actors). The Coordinator
finds the shards (namespaces holding VPAs of ours), assigns them by rendezvous hashing, and
ticks every actor at once; only reports and counts travel through Ray.

Both are plain classes; `ray.remote` wraps them in `recommender.fleet.service`. The shards
travel with every tick, so a restarted ShardActor (which comes back empty) gets its shards
again and restores them from checkpoints.

Isolation: each cluster has its own lane (one thread) on each ShardActor and in the
Coordinator's discovery. A tick waits at most `tick_budget_s` for every lane; a lane still busy
then is reported and gets no new work until it finishes, so one hung API server or Prometheus
neither delays the other clusters nor piles up ticks behind itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from analytics.sources.prometheus import PrometheusHistory
from recommender.fleet.access import HomeCluster, cluster_client
from recommender.fleet.config import ClusterConfig, FleetConfig
from recommender.fleet.metrics import ShardMetrics
from recommender.fleet.plan import Shard, assign
from recommender.fleet.status import (
    ActorRecord,
    ClusterRecord,
    FleetStatus,
    ShardRecord,
    fleet_status,
)
from recommender.kube.rest import KubeClient
from recommender.loop.cluster import ClusterRecommender, LoopOptions, TickReport
from recommender.vpa.objects import InvalidVpaError, parse_vpa
from recommender.vpa.selection import is_selected

log = logging.getLogger(__name__)

VPAS = "/apis/autoscaling.k8s.io/v1/verticalpodautoscalers"
TASK_NAME_CHARS = 200
"""Longest tick task name shown on the dashboard; longer shard lists end in `+N more`."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class ActorReport:
    """One ShardActor's tick: a report per cluster, and what failed outside them. `busy` lists
    the clusters whose tick was still running after the budget (or from an earlier tick);
    `late` holds reports of earlier ticks that finished after their budget."""

    actor: str
    shards: int
    reports: dict[str, TickReport] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    late: dict[str, TickReport] = field(default_factory=dict)


@dataclass
class FleetTick:
    """One Coordinator tick: every actor's report and the Coordinator's own errors (clusters
    that could not be listed)."""

    number: int
    started: dt.datetime
    actors: list[ActorReport]
    errors: list[str] = field(default_factory=list)


Gate = Callable[[], AbstractContextManager[None]]


class ShardRecommender(ClusterRecommender):
    """A cluster's loop whose namespace passes each hold a permit of the cluster's limit."""

    gate: Gate | None = None

    def _namespace_tick(self, *args: Any, **kwargs: Any) -> None:
        if self.gate is None:
            super()._namespace_tick(*args, **kwargs)
            return
        with self.gate():
            super()._namespace_tick(*args, **kwargs)


class _Lane:
    """One cluster on one ShardActor. A single thread runs its start, hand-overs, ticks,
    checkpoints and stop in order, so a hung API server or Prometheus holds only this lane;
    while it is busy nothing more is queued on it (ticks do not pile up)."""

    def __init__(self, actor: str, cluster: str) -> None:
        self.cluster = cluster
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"{actor}-{cluster}")
        self.recommender: ShardRecommender | None = None
        self.future: Future[Any] | None = None
        self.job = ""
        self.began = 0.0
        self.collected = True

    def busy(self) -> bool:
        return self.future is not None and not self.future.done()

    def submit(self, job: str, work: Callable[[], Any]) -> Future[Any]:
        self.job, self.began, self.collected = job, time.monotonic(), False
        self.future = self.executor.submit(work)
        return self.future

    def describe_busy(self) -> str:
        return (
            f"cluster {self.cluster}: its {self.job} is still running after "
            f"{time.monotonic() - self.began:.0f} s; not started again until it ends"
        )


class ShardActor:
    """Owns shards of any clusters of the fleet; one lane (thread) per cluster."""

    def __init__(
        self,
        name: str,
        fleet: FleetConfig,
        template: LoopOptions,
        *,
        home: HomeCluster | None = None,
        limiter: Any = None,
        of: int = 0,
    ) -> None:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        self.name = name
        self.fleet = fleet
        self.template = template
        self.home = home or HomeCluster()
        self.of = of
        self.lanes: dict[str, _Lane] = {}
        self.shards: frozenset[Shard] = frozenset()
        self.metrics: ShardMetrics | None = None
        self.limiter = limiter
        self.incarnation = uuid.uuid4().hex
        if limiter is not None:
            import ray  # noqa: PLC0415 - only inside a Ray worker

            freed = ray.get(limiter.register.remote(name, self.incarnation))
            if freed:
                log.info("%s: freed %d permit(s) of its previous incarnation", name, freed)

    def __repr__(self) -> str:
        # Ray shows this (taken once, after __init__) as the actor's repr on the dashboard;
        # the shards themselves change with the plan and name each tick task instead.
        return f"ShardActor({self.name}, {self.of} actors, rendezvous-hashed shards)"

    def _metrics(self) -> ShardMetrics | None:
        try:
            if self.metrics is None:
                self.metrics = ShardMetrics(self.name)
        except Exception as error:  # metrics must never stop the work
            log.warning("%s: metrics not available: %s", self.name, error)
        return self.metrics

    def _record(self, lane: _Lane, report: TickReport) -> None:
        metrics = self._metrics()
        if metrics is None or lane.recommender is None:
            return
        try:
            owned = sum(1 for s in self.shards if s.cluster == lane.cluster)
            metrics.record(lane.cluster, report, owned, lane.recommender.store.n_aggregates)
        except Exception as error:
            log.warning("%s: metrics not recorded: %s", self.name, error)

    def _gate(self, cluster: str) -> Gate | None:
        if self.limiter is None or self.fleet.cluster(cluster).max_concurrent_passes is None:
            return None
        import ray  # noqa: PLC0415 - only inside a Ray worker

        limiter, holder, incarnation = self.limiter, self.name, self.incarnation

        @contextmanager
        def permit() -> Iterator[None]:
            granted = ray.get(limiter.acquire.remote(cluster, holder, incarnation))
            try:
                yield
            finally:
                if granted:
                    ray.get(limiter.release.remote(cluster, incarnation))

        return permit

    def _create(self, cluster: ClusterConfig, namespaces: set[str]) -> ShardRecommender:
        options = dataclasses.replace(self.template, cluster=cluster.name, namespaces=())
        recommender = ShardRecommender(
            cluster_client(cluster, self.home),
            PrometheusHistory(cluster.prometheus),
            options,
            owned=namespaces,
        )
        recommender.gate = self._gate(cluster.name)
        try:
            recommender.start()
        except BaseException:
            recommender.stop()
            raise
        return recommender

    def _lane_tick(self, lane: _Lane, namespaces: set[str]) -> TickReport:
        """In the lane's thread: take the namespaces on (or hand some over), then tick."""
        if lane.recommender is None:
            lane.recommender = self._create(self.fleet.cluster(lane.cluster), namespaces)
            log.info(
                "%s: cluster %s started, %d namespace(s), restored %d VPA(s)",
                self.name,
                lane.cluster,
                len(namespaces),
                len(lane.recommender.history_end),
            )
        elif lane.recommender.owned != frozenset(namespaces):
            restored, handed = lane.recommender.own(namespaces)
            log.info(
                "%s: cluster %s now %d namespace(s); restored %d VPA(s), handed over %d",
                self.name,
                lane.cluster,
                len(namespaces),
                restored,
                handed,
            )
        return lane.recommender.tick()

    def _lane_stop(self, lane: _Lane) -> None:
        if lane.recommender is not None:
            lane.recommender.checkpoint(collect_garbage=False)
            lane.recommender.stop()
            lane.recommender = None

    def _collect(self, lane: _Lane, report: ActorReport, *, late: bool) -> None:
        """The finished job of a lane, into the report (once)."""
        if lane.future is None or lane.collected or not lane.future.done():
            return
        lane.collected = True
        try:
            result = lane.future.result()
        except Exception as error:
            log.error("%s: cluster %s: %s failed: %s", self.name, lane.cluster, lane.job, error)
            report.errors.append(f"cluster {lane.cluster}: {lane.job} failed: {error}")
            return
        if isinstance(result, TickReport):
            (report.late if late else report.reports)[lane.cluster] = result
            self._record(lane, result)

    def tick(self, shards: Sequence[Shard] = (), budget_s: float | None = None) -> ActorReport:
        """Own exactly `shards` and tick every cluster at once, waiting at most the budget.

        A cluster still busy (from this tick or an earlier one) is reported in `busy` and gets
        no new work; its report comes with the tick after it finishes."""
        budget = self.fleet.tick_budget_s if budget_s is None else budget_s
        self.shards = frozenset(shards)
        by_cluster: dict[str, set[str]] = defaultdict(set)
        for shard in self.shards:
            by_cluster[shard.cluster].add(shard.namespace)
        report = ActorReport(self.name, len(self.shards))
        for name in sorted(set(self.lanes) - set(by_cluster)):
            lane = self.lanes[name]
            self._collect(lane, report, late=True)
            if not lane.busy():  # a cluster whose shards all went elsewhere
                lane.submit("hand-over", partial(self._lane_stop, lane))
                lane.executor.shutdown(wait=False)
                del self.lanes[name]
        started: dict[str, Future[Any]] = {}
        for name, namespaces in sorted(by_cluster.items()):
            lane = self.lanes.setdefault(name, _Lane(self.name, name))
            if lane.busy():
                report.errors.append(lane.describe_busy())
                report.busy.append(name)
                continue
            self._collect(lane, report, late=True)
            started[name] = lane.submit("tick", partial(self._lane_tick, lane, namespaces))
        if started:
            wait(list(started.values()), timeout=budget)
        for name in started:
            lane = self.lanes[name]
            if lane.busy():
                report.errors.append(
                    f"cluster {name}: tick still running after the budget of {budget:g} s; "
                    "its report comes with a later tick"
                )
                report.busy.append(name)
            else:
                self._collect(lane, report, late=False)
        metrics = self._metrics()
        if metrics is not None:
            for name in report.busy:
                metrics.busy(name)
        return report

    def checkpoint(self, budget_s: float | None = None) -> int:
        """Checkpoint every idle cluster (a busy one is checkpointed next time)."""
        budget = self.fleet.tick_budget_s if budget_s is None else budget_s
        futures = {}
        for name, lane in self.lanes.items():
            if lane.busy() or lane.recommender is None:
                continue
            report = ActorReport(self.name, 0)
            self._collect(lane, report, late=True)  # a late tick's report is logged only
            recommender = lane.recommender
            futures[name] = lane.submit("checkpoint", recommender.checkpoint)
        done, _ = wait(list(futures.values()), timeout=budget)
        saved = 0
        for name, future in futures.items():
            if future in done:
                self.lanes[name].collected = True
                try:
                    saved += int(future.result())
                except Exception as error:
                    log.error("%s: cluster %s: checkpoint failed: %s", self.name, name, error)
        return saved

    def stop(self) -> None:
        for lane in self.lanes.values():
            if not lane.busy() and lane.recommender is not None:
                lane.recommender.stop()
            lane.executor.shutdown(wait=False)


def discover(cluster: ClusterConfig, kube: KubeClient, recommender_name: str) -> set[Shard]:
    """The namespaces of a cluster holding VPAs of ours, as shards (one LIST of VPAs)."""
    items, _ = kube.list_all(VPAS)
    shards = set()
    for item in items:
        try:
            vpa = parse_vpa(item)
        except InvalidVpaError:
            continue  # the shard's owner reports it
        namespace = vpa.metadata.namespace
        if is_selected(vpa, recommender_name) and cluster.serves(namespace):
            shards.add(Shard(cluster.name, namespace))
    return shards


def _failure(actor: str, error: BaseException) -> str:
    cause = getattr(error, "cause", None) or error
    first = str(cause).splitlines()[0] if str(cause) else ""
    return f"actor {actor}: {type(cause).__name__}: {first}"


def tick_task_name(actor: str, shards: Sequence[Shard]) -> str:
    """`tick shard-0: one/a, two/b +3 more`: what the dashboard shows for the actor's tick."""
    head = f"tick {actor}:"
    names = [str(s) for s in sorted(shards)]
    shown: list[str] = []
    for i, name in enumerate(names):
        rest = len(names) - i - 1
        tail = f" +{rest} more" if rest else ""
        if len(head) + sum(len(n) + 2 for n in [*shown, name]) + len(tail) > TASK_NAME_CHARS:
            return f"{head} {', '.join(shown)} +{len(names) - len(shown)} more"
        shown.append(name)
    return f"{head} {', '.join(shown) or '(no shards)'}"


class Coordinator:
    """Finds the shards, keeps the plan, drives the ShardActors (Ray handles) and remembers
    what they answered (`status()`)."""

    def __init__(
        self,
        fleet: FleetConfig,
        recommender_name: str,
        actors: dict[str, Any],
        home: HomeCluster | None = None,
    ) -> None:
        import ray  # noqa: PLC0415 - only the Ray side needs it

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        self._ray: Any = ray
        self.fleet = fleet
        self.recommender_name = recommender_name
        self.actors = actors
        self.home = home or HomeCluster()
        self.clients: dict[str, KubeClient] = {}
        self.known: dict[str, set[Shard]] = {}
        self.plan: dict[Shard, str] = {}
        self.lanes = {c.name: _Lane("coordinator", c.name) for c in fleet.clusters}
        self.ticks = 0
        self.last_tick: dt.datetime | None = None
        self.cluster_records = {c.name: ClusterRecord() for c in fleet.clusters}
        self.actor_records = {name: ActorRecord() for name in actors}
        self.shard_records: dict[Shard, ShardRecord] = {}
        # status() may run while a tick does (the actor has a second thread for it).
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Coordinator({len(self.fleet.clusters)} clusters, {len(self.actors)} actors)"

    def _discover(self, cluster: ClusterConfig) -> set[Shard]:
        client = self.clients.get(cluster.name)
        if client is None:
            client = self.clients[cluster.name] = cluster_client(cluster, self.home)
        return discover(cluster, client, self.recommender_name)

    def refresh(self) -> list[str]:
        """Discover every cluster's shards at once, waiting at most the budget. A cluster
        that cannot be listed (or is still being listed) keeps its last known shards: its
        owners go on serving them. Returns what failed."""
        started = {}
        errors = []
        for cluster in self.fleet.clusters:
            lane = self.lanes[cluster.name]
            if lane.busy():
                errors.append(f"{lane.describe_busy()} (listing VPAs)")
                continue
            started[cluster.name] = lane.submit("discovery", partial(self._discover, cluster))
        wait(list(started.values()), timeout=self.fleet.tick_budget_s)
        for name, future in started.items():
            record = self.cluster_records[name]
            if not future.done():
                record.discovery_error = (
                    f"listing VPAs still running after {self.fleet.tick_budget_s:g} s"
                )
                errors.append(f"cluster {name}: {record.discovery_error}")
                continue
            self.lanes[name].collected = True
            try:
                self.known[name] = future.result()
            except Exception as error:  # refused, unreachable, or not configurable
                self.clients.pop(name, None)
                record.discovery_error = f"cannot list VPAs: {error}"
                log.error("cluster %s: %s", name, record.discovery_error)
                errors.append(f"cluster {name}: {record.discovery_error}")
            else:
                record.last_discovery, record.discovery_error = _utcnow(), None
        shards = set().union(*self.known.values()) if self.known else set()
        plan = assign(shards, sorted(self.actors))
        with self._lock:
            self.plan = plan
        return errors

    def tick(self) -> FleetTick:
        """Refresh the plan, and tick every actor at once with its shards."""
        self.ticks += 1
        started = _utcnow()
        errors = self.refresh()
        mine: dict[str, list[Shard]] = {name: [] for name in self.actors}
        for shard, owner in sorted(self.plan.items()):
            mine[owner].append(shard)
        ray = self._ray
        budget = self.fleet.tick_budget_s
        refs = {
            name: self.actors[name]
            .tick.options(name=tick_task_name(name, shards))
            .remote(shards, budget)
            for name, shards in mine.items()
        }
        reports: list[ActorReport] = []
        for name, ref in refs.items():
            try:
                # The actor waits at most the budget for its clusters; the margin covers Ray.
                report = ray.get(ref, timeout=budget + 60)
            except (ray.exceptions.RayError, TimeoutError) as error:  # dead or restarting
                report = ActorReport(name, len(mine[name]), errors=[_failure(name, error)])
                self.actor_records[name] = ActorRecord(None, tuple(report.errors))
            else:
                self.actor_records[name] = ActorRecord(
                    _utcnow(), tuple(report.errors), tuple(report.busy)
                )
            reports.append(report)
            with self._lock:
                self._remember(mine[name], report)
        self.last_tick = started
        return FleetTick(self.ticks, started, sorted(reports, key=lambda r: r.actor), errors)

    def _remember(self, shards: list[Shard], report: ActorReport) -> None:
        """Each shard's last good tick and last error, from its actor's report."""
        for shard in shards:
            record = self.shard_records.setdefault(shard, ShardRecord())
            cluster = report.reports.get(shard.cluster)
            if cluster is None:
                failed = [e for e in report.errors if e.startswith(f"cluster {shard.cluster}:")]
                record.last_error = (failed or report.errors or ["no report"])[0]
                continue
            prefix = f"namespace {shard.namespace}:"
            failed = [e for e in cluster.errors if e.startswith(prefix)]
            if failed:
                record.last_error = failed[0]
            else:
                record.last_tick, record.last_error = cluster.started, None
        for gone in set(self.shard_records) - set(self.plan):
            del self.shard_records[gone]

    def checkpoint(self) -> int:
        saved = 0
        for name, handle in self.actors.items():
            try:
                saved += self._ray.get(
                    handle.checkpoint.remote(), timeout=self.fleet.tick_budget_s + 60
                )
            except (self._ray.exceptions.RayError, TimeoutError) as error:
                log.error("%s", _failure(name, error))
        return saved

    def shard_map(self) -> dict[str, list[str]]:
        """Which actor holds which shards, for people."""
        owners: dict[str, list[str]] = {name: [] for name in self.actors}
        for shard, owner in sorted(self.plan.items()):
            owners[owner].append(str(shard))
        return owners

    def status(self) -> FleetStatus:
        """The shard map, each shard's last tick and lag, clusters and actors (for the CLI
        and the gRPC API)."""
        with self._lock:
            return fleet_status(
                now=_utcnow(),
                ticks=self.ticks,
                last_tick=self.last_tick,
                plan=dict(self.plan),
                actors=dict(self.actor_records),
                clusters=dict(self.cluster_records),
                shards=dict(self.shard_records),
            )
