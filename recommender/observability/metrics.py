"""The recommender's own Prometheus metrics, served on `/metrics` by `vpa-fleet run`.

One `RecommenderMetrics` holds every metric in its own registry (not prometheus_client's
global one, so that tests and several instances never share counts). `METRICS` is the
instance `vpa-fleet run` serves; code running in the driver process records into it:

* the loop driver calls `record_tick` with each `TickReport` and `set_leader`;
* the actuator calls `record_actuator_action(cluster, action, outcome)` once per action it
  takes (or refuses): `action` says what (e.g. "rollout", "resize"), `outcome` how it ended
  (e.g. "done", "dry_run", "rate_limited", "failed").

Names are those of the fleet's ShardActor metrics (`recommender.fleet.metrics`), so the Grafana
dashboard (helm/vpa-fleet/dashboards/) reads both.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from recommender.loop.cluster import TickReport
from recommender.observability.health import Health

__all__ = [
    "METRICS",
    "METRIC_NAMES",
    "MetricsServer",
    "RecommenderMetrics",
    "record_actuator_action",
    "start_metrics_server",
]

TICK_BUCKETS: Final = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""Seconds; the fleet's tick histogram has the same boundaries up to 120 s."""


class RecommenderMetrics:
    """Counters and gauges of one recommender process, by cluster."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.ticks = Counter("vpa_fleet_ticks", "ticks run", ["cluster"], registry=r)
        self.tick_seconds = Histogram(
            "vpa_fleet_tick_seconds",
            "wall time of one tick",
            ["cluster"],
            buckets=TICK_BUCKETS,
            registry=r,
        )
        self.writes = Counter(
            "vpa_fleet_status_writes",
            "VPA status writes (recommendations written)",
            ["cluster"],
            registry=r,
        )
        self.unchanged = Counter(
            "vpa_fleet_status_unchanged",
            "VPAs whose recommendation did not change enough to be written",
            ["cluster"],
            registry=r,
        )
        self.results = Counter(
            "vpa_fleet_vpa_results",
            "per-VPA outcome of each tick: written, unchanged, gone, skipped, error",
            ["cluster", "outcome"],
            registry=r,
        )
        self.errors = Counter(
            "vpa_fleet_errors",
            "errors of ticks: a namespace whose history or targets failed, or a VPA not written",
            ["cluster"],
            registry=r,
        )
        self.queries = Counter(
            "vpa_fleet_prometheus_queries", "Prometheus range queries", ["cluster"], registry=r
        )
        self.samples = Counter(
            "vpa_fleet_samples_ingested", "usage samples ingested", ["cluster"], registry=r
        )
        self.vpas = Gauge(
            "vpa_fleet_vpas", "VPAs of ours at the last tick", ["cluster"], registry=r
        )
        self.namespaces = Gauge(
            "vpa_fleet_namespaces",
            "namespaces holding VPAs of ours at the last tick",
            ["cluster"],
            registry=r,
        )
        self.last_tick = Gauge(
            "vpa_fleet_last_tick_timestamp_seconds",
            "when the last tick ended (Unix time)",
            ["cluster"],
            registry=r,
        )
        self.leader = Gauge(
            "vpa_fleet_leader",
            "1 while this replica holds the Lease (or runs without leader election)",
            ["cluster"],
            registry=r,
        )
        self.actuator_actions = Counter(
            "vpa_fleet_actuator_actions",
            "actions of the fallback actuator, by action and outcome",
            ["cluster", "action", "outcome"],
            registry=r,
        )

    def record_tick(self, cluster: str, report: TickReport) -> None:
        """Count one tick's figures (as `vpa-fleet run` prints them)."""
        errors = len(report.errors) + sum(1 for r in report.results if r.outcome == "error")
        self.ticks.labels(cluster).inc()
        self.tick_seconds.labels(cluster).observe(report.duration_s)
        self.writes.labels(cluster).inc(report.writes)
        self.unchanged.labels(cluster).inc(report.unchanged)
        self.errors.labels(cluster).inc(errors)
        self.queries.labels(cluster).inc(report.queries)
        self.samples.labels(cluster).inc(report.samples)
        for result in report.results:
            self.results.labels(cluster, result.outcome).inc()
        self.vpas.labels(cluster).set(report.vpas)
        self.namespaces.labels(cluster).set(report.namespaces)
        self.last_tick.labels(cluster).set(time.time())

    def set_leader(self, cluster: str, leading: bool) -> None:
        self.leader.labels(cluster).set(1 if leading else 0)

    def record_actuator_action(self, cluster: str, action: str, outcome: str) -> None:
        for name, value in (("action", action), ("outcome", outcome)):
            if not value:
                raise ValueError(f"actuator metric: {name} must not be empty")
        self.actuator_actions.labels(cluster, action, outcome).inc()

    def names(self) -> frozenset[str]:
        """Every sample name this registry exposes (`_total`, `_bucket`, ... included)."""
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
        names: set[str] = set()
        for family in self.registry.collect():
            # Labelled metrics have no samples before their first use: names come from types.
            names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        return frozenset(names)


METRICS: Final = RecommenderMetrics()
"""What `vpa-fleet run` serves on /metrics."""

METRIC_NAMES: Final = METRICS.names()


def record_actuator_action(cluster: str, action: str, outcome: str) -> None:
    """One action of the fallback actuator, counted in `vpa_fleet_actuator_actions_total`."""
    METRICS.record_actuator_action(cluster, action, outcome)


@dataclass
class MetricsServer:
    """The /metrics HTTP server running in a daemon thread; `url` says where."""

    server: WSGIServer
    url: str

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


_Start = Callable[[str, list[tuple[str, str]]], Any]
_App = Callable[[dict[str, Any], _Start], Iterable[bytes]]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes every few seconds are not worth a log line."""


def _with_probes(metrics: _App, health: Health | None) -> _App:
    """/healthz and /readyz from `health` (200 or 503, with the reason), the rest /metrics."""
    checks = {} if health is None else {"/healthz": health.live, "/readyz": health.ready}

    def app(environ: dict[str, Any], start_response: _Start) -> Iterable[bytes]:
        check = checks.get(environ.get("PATH_INFO", ""))
        if check is None:
            return metrics(environ, start_response)
        ok, why = check()
        body = f"{'ok' if ok else 'not ok'}: {why}\n".encode()
        start_response(
            "200 OK" if ok else "503 Service Unavailable",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return app


def start_metrics_server(
    address: str, port: int, metrics: RecommenderMetrics = METRICS, health: Health | None = None
) -> MetricsServer:
    """Serve the metrics on http://address:port/metrics (port 0: a free port), and with
    `health` the probes /healthz (liveness) and /readyz (readiness)."""

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in address else socket.AF_INET

    app = _with_probes(make_wsgi_app(metrics.registry), health)
    try:
        server = make_server(address.strip("[]"), port, app, Server, handler_class=_QuietHandler)
    except OSError as error:
        raise OSError(
            f"cannot serve metrics on {address}:{port}: {error.strerror or error}"
        ) from None
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    host, bound = server.server_address[:2]
    text = host.decode() if isinstance(host, bytes) else str(host)
    shown = f"[{text}]" if ":" in text else text
    return MetricsServer(server, f"http://{shown}:{bound}/metrics")
