"""The ShardActors' metrics on Ray's metrics export (and so on the Ray dashboard), tagged by
actor and cluster. Created inside the actor: `ray.util.metrics` needs a connected worker."""

from __future__ import annotations

from typing import Any

from recommender.loop.cluster import TickReport

TAGS = ("actor", "cluster")


class ShardMetrics:
    """Counters, gauges and a histogram of one ShardActor."""

    def __init__(self, actor: str) -> None:
        from ray.util import metrics  # noqa: PLC0415 - only inside a Ray worker

        self.actor = actor
        self.ticks: Any = metrics.Counter(
            "vpa_fleet_ticks_total", "cluster ticks run", tag_keys=TAGS
        )
        self.samples: Any = metrics.Counter(
            "vpa_fleet_samples_ingested_total", "usage samples ingested", tag_keys=TAGS
        )
        self.queries: Any = metrics.Counter(
            "vpa_fleet_prometheus_queries_total", "Prometheus range queries", tag_keys=TAGS
        )
        self.writes: Any = metrics.Counter(
            "vpa_fleet_status_writes_total", "VPA status writes", tag_keys=TAGS
        )
        self.errors: Any = metrics.Counter(
            "vpa_fleet_errors_total", "namespace and VPA errors of ticks", tag_keys=TAGS
        )
        self.busy_ticks: Any = metrics.Counter(
            "vpa_fleet_busy_total",
            "ticks that found the cluster still busy past the budget (no new work given)",
            tag_keys=TAGS,
        )
        self.shards: Any = metrics.Gauge(
            "vpa_fleet_shards", "(cluster, namespace) shards owned", tag_keys=TAGS
        )
        self.containers: Any = metrics.Gauge(
            "vpa_fleet_containers", "workload containers in the histograms", tag_keys=TAGS
        )
        self.duration: Any = metrics.Histogram(
            "vpa_fleet_tick_seconds",
            "wall time of one cluster's tick",
            boundaries=[0.1, 0.5, 1, 2, 5, 10, 30, 60, 120],
            tag_keys=TAGS,
        )

    def record(self, cluster: str, report: TickReport, shards: int, containers: int) -> None:
        tags = {"actor": self.actor, "cluster": cluster}
        errors = len(report.errors) + sum(1 for r in report.results if r.outcome == "error")
        counts = (
            (self.ticks, 1),
            (self.samples, report.samples),
            (self.queries, report.queries),
            (self.writes, report.writes),
            (self.errors, errors),
        )
        for counter, value in counts:
            if value > 0:  # Ray's counters refuse increments of 0
                counter.inc(value, tags)
        self.shards.set(shards, tags)
        self.containers.set(containers, tags)
        self.duration.observe(report.duration_s, tags)

    def busy(self, cluster: str) -> None:
        self.busy_ticks.inc(1, {"actor": self.actor, "cluster": cluster})
