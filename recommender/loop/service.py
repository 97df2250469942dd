"""`vpa-fleet run`: settings to a running loop. The recommender of the cluster lives in a Ray
actor (the embedded local Ray by default, a Ray cluster given an address); this driver keeps
the Lease when leader election is on, asks the actor for a tick every interval, prints what
was written, checkpoints, and stops cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from analytics.sources.prometheus import PrometheusHistory
from recommender.actuator.kube import slim_pod_shared
from recommender.actuator.runner import AuditMirror, actuate, build_actuator, report_actuation
from recommender.actuator.service import ActuationReport
from recommender.api.serve import ApiStartError, start_api
from recommender.api.server import RunningServer, StatusBoard
from recommender.kube.lease import LeaseElector
from recommender.kube.ratelimit import RateLimiter
from recommender.kube.rest import KubeClient, load_api_client
from recommender.loop.cluster import ClusterRecommender, LoopOptions, TickReport, VpaResult
from recommender.loop.pods import slim_pod
from recommender.observability.health import Health
from recommender.observability.metrics import (
    METRICS,
    MetricsServer,
    RecommenderMetrics,
    start_metrics_server,
)
from recommender.settings import Settings
from recommender.vpa.safety import SafetyLimits

log = logging.getLogger(__name__)

_BEAT_S = 10.0
"""Seconds between beats of `Health` while the loop waits for its next tick."""


class ServiceError(RuntimeError):
    """The loop cannot start; the message says what to fix."""


def loop_options(settings: Settings) -> LoopOptions:
    max_allowed = {
        resource: quantity
        for resource, quantity in (
            ("cpu", settings.max_allowed_cpu),
            ("memory", settings.max_allowed_memory),
        )
        if quantity is not None
    }
    return LoopOptions(
        cluster=settings.cluster,
        recommender_name=settings.recommender_name,
        namespaces=settings.namespaces,
        history=dt.timedelta(days=settings.history_days),
        target_refresh=dt.timedelta(seconds=settings.target_refresh_s),
        strategy=settings.strategy,
        strategy_params=dict(settings.strategy_params),
        status_change_threshold=settings.status_change_threshold,
        max_allowed=max_allowed,
        safety=SafetyLimits(**settings.safety.model_dump()),
    )


def kube_client(settings: Settings) -> KubeClient:
    kubeconfig = str(settings.kubeconfig) if settings.kubeconfig else None
    limiter = RateLimiter(settings.kube_api_qps, settings.kube_api_burst)
    return KubeClient(load_api_client(kubeconfig, settings.context), limiter=limiter)


def build_recommender(settings: Settings) -> ClusterRecommender:
    """The loop of the settings' cluster, with its clients (not started)."""
    if settings.prometheus is None:
        raise ServiceError(
            "no Prometheus configured: pass --prometheus-url URL, or set "
            "prometheus.connection.url in the config file, or VPA_FLEET_PROMETHEUS_URL"
        )
    kube = kube_client(settings)
    return ClusterRecommender(
        kube,
        PrometheusHistory(settings.prometheus),
        loop_options(settings),
        # The actuator, when on, reads pods from the loop's watch: keep what it needs too.
        pod_transform=slim_pod_shared if settings.actuator.enabled else slim_pod,
    )


class RecommenderActor:
    """The loop of one cluster inside a Ray actor; every call returns plain data."""

    def __init__(self, settings: Settings) -> None:
        logging.basicConfig(
            level=settings.log_level, format="%(levelname)s %(name)s: %(message)s", force=True
        )
        self.recommender = build_recommender(settings)
        # The fallback actuator (settings actuator.enabled), run after each tick.
        self.actuator = build_actuator(settings, self.recommender)

    def start(self) -> int:
        """Start watching and restore checkpoints; returns how many VPAs were restored."""
        self.recommender.start()
        if self.actuator is not None:
            self.actuator.start()
        return len(self.recommender.history_end)

    def tick(self) -> TickReport:
        return self.recommender.tick()

    def checkpoint(self) -> int:
        return self.recommender.checkpoint()

    def actuate(self) -> ActuationReport | None:
        if self.actuator is None:
            return None
        return actuate(self.actuator, self.recommender)

    def stop(self) -> None:
        if self.actuator is not None:
            self.actuator.stop()
        self.recommender.stop()


@dataclass
class Leadership:
    """Holds the Lease in a background thread; `leading` is set while we hold it."""

    elector: LeaseElector
    renew_interval_s: float
    leading: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                held = self.elector.try_acquire_or_renew()
            except Exception as error:  # an API error must not end the election
                log.warning("lease renewal failed: %s", error)
                held = False
            if held and not self.leading.is_set():
                log.info("leading: this replica writes (lease %s)", self.elector.name)
            if not held and self.leading.is_set():
                log.warning("lost the lease: writes stop until it is held again")
            (self.leading.set if held else self.leading.clear)()
            self._stop.wait(self.renew_interval_s)

    def start(self) -> None:
        threading.Thread(target=self.run, name="lease", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        if self.leading.is_set():
            try:
                self.elector.release()
            except Exception as error:
                log.warning("lease not released: %s", error)
        self.leading.clear()


def format_result(result: VpaResult) -> str:
    """One line per VPA written: each container's target and bounds."""
    parts = []
    for entry in result.recommendations:
        resources = ", ".join(
            f"{resource} {quantity} [{entry.lower_bound.get(resource, '-')}"
            f"..{entry.upper_bound.get(resource, '-')}]"
            for resource, quantity in sorted(entry.target.items())
        )
        parts.append(f"{entry.container_name}: {resources}")
    body = "; ".join(parts) or "no recommendation"
    return f"{result.key} {result.outcome}: {body}"


def format_report(number: int, report: TickReport, where: str = "") -> str:
    """The tick's figures; `where` (e.g. " shard-0/eu-1") says whose tick it was."""
    return (
        f"tick {number}{where}: {report.vpas} VPA(s) in {report.namespaces} namespace(s), "
        f"{report.queries} Prometheus queries, {report.samples} samples, "
        f"{report.writes} status write(s), {report.unchanged} unchanged, "
        f"{len(report.errors)} error(s), "
        f"{report.duration_s:.2f} s"
    )


def print_report(number: int, report: TickReport, out: TextIO, where: str = "") -> None:
    """The VPAs written (with their recommendations), failed or skipped, then the figures."""
    for result in report.results:
        if result.outcome == "written":
            print(f"  {format_result(result)}", file=out)
        elif result.outcome in {"error", "skipped"}:
            print(f"  {result.key} {result.outcome}: {result.message}", file=out)
    for error in report.errors:
        print(f"  error: {error}", file=out)
    print(format_report(number, report, where), file=out, flush=True)


def _cause(error: BaseException) -> BaseException:
    """The exception raised inside the actor, unwrapped from Ray's task error."""
    inner = getattr(error, "cause", None)
    return inner if isinstance(inner, BaseException) else error


class _Actor:
    """The recommender actor behind a typed face: each call waits for its answer."""

    def __init__(self, settings: Settings) -> None:
        import ray  # noqa: PLC0415 - importing Ray takes a second; `--help` should not

        self._ray: Any = ray
        remote: Any = ray.remote(num_cpus=1)(RecommenderActor)
        self._handle: Any = remote.options(name=f"recommender-{settings.cluster}").remote(settings)

    def _call(self, method: str) -> Any:
        return self._ray.get(getattr(self._handle, method).remote())

    def start(self) -> int:
        try:
            restored: int = self._call("start")
        except self._ray.exceptions.RayError as error:
            raise ServiceError(f"the recommender did not start: {_cause(error)}") from None
        return restored

    def tick(self) -> TickReport:
        report: TickReport = self._call("tick")
        return report

    def checkpoint(self) -> int:
        saved: int = self._call("checkpoint")
        return saved

    def actuate(self) -> ActuationReport | None:
        report: ActuationReport | None = self._call("actuate")
        return report

    def close(self, *, checkpoint: bool, out: TextIO) -> None:
        try:
            if checkpoint:
                print(f"checkpointed {self.checkpoint()} VPA(s) on the way out", file=out)
            self._call("stop")
        except self._ray.exceptions.RayError as error:
            log.warning("clean stop of the recommender failed: %s", _cause(error))
        self._ray.kill(self._handle)


def _leadership(settings: Settings, kube: KubeClient) -> Leadership | None:
    election = settings.leader_election
    if not election.enabled:
        return None
    assert election.lease_namespace is not None and election.identity is not None  # validated
    elector = LeaseElector(
        kube,
        election.lease_namespace,
        election.lease_name,
        election.identity,
        election.lease_duration_s,
    )
    return Leadership(elector, election.renew_interval_s)


@dataclass
class _Ticker:
    """Ticks while leading, checkpoints after the first tick and then every interval."""

    settings: Settings
    actor: _Actor
    leadership: Leadership | None
    out: TextIO
    ticks: int = 0
    last_checkpoint: float = 0.0
    leading: bool = False
    metrics: RecommenderMetrics = METRICS
    board: StatusBoard | None = None  # what the gRPC API's FleetStatus reports
    audit: AuditMirror | None = None  # what the gRPC API's ListActions reports
    health: Health | None = None  # what /healthz and /readyz report

    def step(self, stop: threading.Event) -> bool:
        """One tick (or a wait for the lease); False when the loop should end."""
        began = time.monotonic()
        if self.health is not None:
            self.health.beat()
        was_leading = self.leading
        self.leading = self.leadership is None or self.leadership.leading.wait(1.0)
        self.metrics.set_leader(self.settings.cluster, self.leading)
        if not self.leading:
            if was_leading or self.ticks == 0:
                print("waiting for the lease: another replica writes", file=self.out, flush=True)
            return not stop.is_set()
        self.ticks += 1
        report = self.actor.tick()
        self.metrics.record_tick(self.settings.cluster, report)
        if self.board is not None:
            self.board.record_tick(
                self.settings.cluster, dt.datetime.now(dt.UTC), report.vpas, len(report.errors)
            )
        print_report(self.ticks, report, self.out)
        # Only here, while leading: the lease holder alone acts.
        actuation = self.actor.actuate() if self.settings.actuator.enabled else None
        if actuation is not None:
            report_actuation(actuation, self.settings.cluster, self.out, self.metrics)
            if self.audit is not None:
                self.audit.update(actuation.audit)
        interval = self.settings.checkpoint_interval_s
        if self.ticks == 1 or time.monotonic() - self.last_checkpoint >= interval:
            saved = self.actor.checkpoint()
            self.last_checkpoint = time.monotonic()
            print(f"checkpointed {saved} VPA(s)", file=self.out, flush=True)
        if self.settings.once:
            return False
        # Waiting for the next tick is progress too: beat through it, so that a long
        # tick interval is not taken for a stuck loop.
        deadline = began + self.settings.tick_interval_s
        while (left := deadline - time.monotonic()) > 0 and not stop.wait(min(left, _BEAT_S)):
            if self.health is not None:
                self.health.beat()
        return not stop.is_set()


def _start_metrics(settings: Settings, health: Health, out: TextIO) -> MetricsServer | None:
    """/metrics, /healthz and /readyz when the settings enable them."""
    server = None
    if settings.metrics.enabled:
        try:
            server = start_metrics_server(
                settings.metrics.address, settings.metrics.port, health=health
            )
        except OSError as error:
            raise ServiceError(f"{error} (settings metrics.address, metrics.port)") from None
    print(f"metrics:        {server.url if server else '(off)'}", file=out)
    return server


def _start_api(
    settings: Settings, board: StatusBoard, out: TextIO, audit: AuditMirror | None = None
) -> RunningServer | None:
    """The gRPC inspection API when the settings enable it (recommender/api)."""
    server = None
    if settings.api.enabled:
        try:
            server = start_api(settings, board, audit=audit)
        except ApiStartError as error:
            raise ServiceError(str(error)) from None
    shown = f"{settings.api.listen} (port {server.port})" if server else "(off)"
    print(f"gRPC API:       {shown}", file=out)
    return server


def run_service(settings: Settings, stop: threading.Event, out: TextIO) -> int:
    """Run until `stop` is set (or after one tick with `settings.once`); the exit code."""
    from recommender.ray_runtime import start_ray, stop_ray  # noqa: PLC0415

    if settings.fleet is not None:
        from recommender.fleet.service import run_fleet  # noqa: PLC0415

        return run_fleet(settings, settings.fleet, stop, out)

    if settings.prometheus is None:
        raise ServiceError(
            "no Prometheus configured: pass --prometheus-url URL, or set "
            "prometheus.connection.url in the config file, or VPA_FLEET_PROMETHEUS_URL"
        )
    kube = kube_client(settings)
    runtime = start_ray(settings.ray)
    print(f"Ray:            {runtime.address}", file=out)
    print(f"Ray dashboard:  {runtime.dashboard_url or '(off)'}", file=out, flush=True)
    leadership = _leadership(settings, kube)
    actor: _Actor | None = None
    ticker: _Ticker | None = None
    metrics_server: MetricsServer | None = None
    api_server: RunningServer | None = None
    board, audit = StatusBoard(), (AuditMirror() if settings.actuator.enabled else None)
    health = Health(settings.metrics.liveness_timeout_s)
    try:
        metrics_server = _start_metrics(settings, health, out)
        api_server = _start_api(settings, board, out, audit)
        actor = _Actor(settings)
        restored = actor.start()
        print(f"restored the history of {restored} VPA(s) from checkpoints", file=out, flush=True)
        if leadership is not None:
            leadership.start()
        health.mark_started()
        ticker = _Ticker(settings, actor, leadership, out, board=board, audit=audit, health=health)
        while ticker.step(stop):
            pass
        return 0
    finally:
        try:
            if actor is not None:
                leading = ticker is not None and ticker.leading and ticker.ticks > 0
                actor.close(checkpoint=leading and not settings.once, out=out)
        finally:
            try:
                if leadership is not None:
                    leadership.stop()
            finally:
                if metrics_server is not None:
                    metrics_server.stop()
                if api_server is not None:
                    api_server.stop()
                stop_ray(runtime)
