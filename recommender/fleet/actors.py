"""The fleet's actors. A ShardActor owns shards ((cluster, namespace) pairs): for each cluster
it has shards in, it runs that cluster's loop restricted to its namespaces, fetching its own
samples from the cluster's Prometheus (samples never travel between actors). The Coordinator
finds the shards (namespaces holding VPAs of ours), assigns them by rendezvous hashing, and
ticks every actor at once; only reports and counts travel through Ray.

Both are plain classes; `ray.remote` wraps them in `recommender.fleet.service`. Assignment is
idempotent and sent before every tick, so a restarted ShardActor (which comes back empty)
gets its shards again and restores them from checkpoints.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from analytics.sources.prometheus import PrometheusHistory
from recommender.fleet.config import ClusterConfig, FleetConfig
from recommender.fleet.metrics import ShardMetrics
from recommender.fleet.plan import Shard, assign
from recommender.kube.rest import KubeApiError, KubeClient, load_api_client
from recommender.loop.cluster import ClusterRecommender, LoopOptions, TickReport
from recommender.vpa.objects import InvalidVpaError, parse_vpa
from recommender.vpa.selection import is_selected

log = logging.getLogger(__name__)

VPAS = "/apis/autoscaling.k8s.io/v1/verticalpodautoscalers"


def cluster_client(cluster: ClusterConfig) -> KubeClient:
    kubeconfig = str(cluster.kubeconfig) if cluster.kubeconfig else None
    return KubeClient(load_api_client(kubeconfig, cluster.context))


@dataclass
class ActorReport:
    """One ShardActor's tick: a report per cluster, and what failed outside them."""

    actor: str
    shards: int
    reports: dict[str, TickReport] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class ShardActor:
    """Owns shards of any clusters of the fleet."""

    def __init__(self, name: str, fleet: FleetConfig, template: LoopOptions) -> None:
        self.name = name
        self.fleet = fleet
        self.template = template
        self.recommenders: dict[str, ClusterRecommender] = {}
        self.shards: frozenset[Shard] = frozenset()
        self.metrics: ShardMetrics | None = None

    def _record(self, cluster: str, report: TickReport) -> None:
        try:
            if self.metrics is None:
                self.metrics = ShardMetrics(self.name)
            owned = sum(1 for s in self.shards if s.cluster == cluster)
            containers = self.recommenders[cluster].store.n_aggregates
            self.metrics.record(cluster, report, owned, containers)
        except Exception as error:  # metrics must never stop the work
            log.warning("%s: metrics not recorded: %s", self.name, error)

    def _create(self, cluster: ClusterConfig, namespaces: set[str]) -> ClusterRecommender:
        options = dataclasses.replace(self.template, cluster=cluster.name, namespaces=())
        recommender = ClusterRecommender(
            cluster_client(cluster),
            PrometheusHistory(cluster.prometheus),
            options,
            owned=namespaces,
        )
        recommender.start()
        return recommender

    def assign(self, shards: Sequence[Shard]) -> tuple[int, int]:
        """Own exactly these shards; returns (VPAs restored, VPAs handed over)."""
        wanted = frozenset(shards)
        if wanted == self.shards:
            return 0, 0
        by_cluster: dict[str, set[str]] = defaultdict(set)
        for shard in wanted:
            by_cluster[shard.cluster].add(shard.namespace)
        restored = handed = 0
        for name in sorted(set(self.recommenders) | set(by_cluster)):
            namespaces = by_cluster.get(name, set())
            recommender = self.recommenders.get(name)
            if recommender is None:
                recommender = self._create(self.fleet.cluster(name), namespaces)
                self.recommenders[name] = recommender
                restored += len(recommender.history_end)
            else:
                got, gave = recommender.own(namespaces)
                restored, handed = restored + got, handed + gave
            if not namespaces:
                recommender.stop()
                del self.recommenders[name]
        self.shards = wanted
        log.info(
            "%s: %d shard(s) on %d cluster(s); restored %d VPA(s), handed over %d",
            self.name,
            len(wanted),
            len(self.recommenders),
            restored,
            handed,
        )
        return restored, handed

    def tick(self) -> ActorReport:
        """Tick every cluster at once: a slow or unreachable one does not hold the others."""
        report = ActorReport(self.name, len(self.shards))
        if not self.recommenders:
            return report
        with ThreadPoolExecutor(max_workers=len(self.recommenders)) as pool:
            futures = {name: pool.submit(r.tick) for name, r in self.recommenders.items()}
            for name, future in sorted(futures.items()):
                try:
                    report.reports[name] = future.result()
                    self._record(name, report.reports[name])
                except Exception as error:
                    log.exception("%s: cluster %s: tick failed", self.name, name)
                    report.errors.append(f"cluster {name}: {error}")
        return report

    def checkpoint(self) -> int:
        return sum(r.checkpoint() for r in self.recommenders.values())

    def stop(self) -> None:
        for recommender in self.recommenders.values():
            recommender.stop()


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
    return (
        f"actor {actor}: {type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
    )


class Coordinator:
    """Finds the shards, keeps the plan, and drives the ShardActors (Ray handles)."""

    def __init__(self, fleet: FleetConfig, recommender_name: str, actors: dict[str, Any]) -> None:
        import ray  # noqa: PLC0415 - only the Ray side needs it

        self._ray: Any = ray
        self.fleet = fleet
        self.recommender_name = recommender_name
        self.actors = actors
        self.clients = {c.name: cluster_client(c) for c in fleet.clusters}
        self.known: dict[str, set[Shard]] = {}
        self.plan: dict[Shard, str] = {}

    def refresh(self) -> dict[Shard, str]:
        """Discover every cluster's shards; a cluster that cannot be listed keeps its last
        known shards (its owners go on serving them)."""
        for cluster in self.fleet.clusters:
            try:
                self.known[cluster.name] = discover(
                    cluster, self.clients[cluster.name], self.recommender_name
                )
            except KubeApiError as error:
                log.error("cluster %s: cannot list VPAs: %s", cluster.name, error)
            except Exception as error:  # unreachable API server
                log.error("cluster %s: cannot list VPAs: %s", cluster.name, error)
        shards = set().union(*self.known.values()) if self.known else set()
        self.plan = assign(shards, sorted(self.actors))
        return self.plan

    def tick(self) -> list[ActorReport]:
        """Refresh the plan, send every actor its shards, and tick them all at once."""
        plan = self.refresh()
        mine: dict[str, list[Shard]] = {name: [] for name in self.actors}
        for shard, owner in plan.items():
            mine[owner].append(shard)
        ray = self._ray
        reports: list[ActorReport] = []
        assigned = {n: self.actors[n].assign.remote(sorted(s)) for n, s in mine.items()}
        ready = []
        for name, ref in assigned.items():
            try:
                ray.get(ref)
                ready.append(name)
            except ray.exceptions.RayError as error:  # dead or restarting: next tick again
                reports.append(ActorReport(name, len(mine[name]), errors=[_failure(name, error)]))
        ticks = {name: self.actors[name].tick.remote() for name in ready}
        for name, ref in ticks.items():
            try:
                reports.append(ray.get(ref))
            except ray.exceptions.RayError as error:
                reports.append(ActorReport(name, len(mine[name]), errors=[_failure(name, error)]))
        return sorted(reports, key=lambda r: r.actor)

    def checkpoint(self) -> int:
        saved = 0
        for name, handle in self.actors.items():
            try:
                saved += self._ray.get(handle.checkpoint.remote())
            except self._ray.exceptions.RayError as error:
                log.error("%s", _failure(name, error))
        return saved

    def shard_map(self) -> dict[str, list[str]]:
        """Which actor holds which shards, for people."""
        owners: dict[str, list[str]] = {name: [] for name in self.actors}
        for shard, owner in sorted(self.plan.items()):
            owners[owner].append(str(shard))
        return owners
