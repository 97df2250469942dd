"""The gRPC inspection service (`vpafleet.v1.Inspection`), with the standard health checking
and server reflection, bearer-token auth and TLS (mutual TLS with a client CA). Read-only: it
lists, reads and explains; it never writes to a cluster.

`InspectionService` answers from `ClusterInspector`s (one per cluster served), an actuator
audit source (any callable returning records; none: no actions) and a `StatusBoard` that the
running loop keeps up to date.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from recommender.api.auth import BearerTokenInterceptor
from recommender.api.convert import AuditEntry, action_message, explanation_message, rfc3339
from recommender.api.generated.vpafleet.v1 import inspection_pb2 as pb
from recommender.api.generated.vpafleet.v1 import inspection_pb2_grpc as pb_grpc
from recommender.fleet.status import FleetStatus
from recommender.inspection.explain import ExplainError
from recommender.inspection.source import ClusterInspector, NotFoundError
from recommender.kube.rest import KubeApiError

log = logging.getLogger(__name__)

SERVICE_NAME: Final = pb.DESCRIPTOR.services_by_name["Inspection"].full_name
DEFAULT_PAGE_SIZE: Final = 500
MAX_PAGE_SIZE: Final = 5000

AuditSource = Callable[[], Sequence[AuditEntry]]


@dataclass
class ClusterTick:
    finished: dt.datetime
    vpas: int
    errors: int


FleetSource = Callable[[], FleetStatus | None]
"""The fleet Coordinator's status now (None while its actors are not running)."""


@dataclass
class StatusBoard:
    """What the running recommender last did, for FleetStatus. One cluster: each cluster's
    last tick, written by the loop's thread. A fleet: `fleet` asks the Coordinator."""

    mode: str = "cluster"
    fleet: FleetSource | None = None
    clusters: dict[str, ClusterTick] = field(default_factory=dict)
    shards: dict[str, list[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_tick(self, cluster: str, finished: dt.datetime, vpas: int, errors: int) -> None:
        with self._lock:
            self.clusters[cluster] = ClusterTick(finished, vpas, errors)

    def record_shards(self, shards: Mapping[str, Sequence[str]]) -> None:
        with self._lock:
            self.shards = {actor: list(held) for actor, held in shards.items()}

    def message(self, known: Iterable[str], now: dt.datetime) -> pb.FleetStatusResponse:
        if self.fleet is not None:
            status = self.fleet()
            if status is not None:
                return fleet_message(status)
        with self._lock:
            response = pb.FleetStatusResponse(mode=self.mode)
            for name in sorted({*known, *self.clusters}):
                tick = self.clusters.get(name)
                response.clusters.append(
                    pb.ClusterStatus(
                        name=name,
                        last_tick=rfc3339(tick.finished) if tick else "",
                        lag_seconds=(now - tick.finished).total_seconds() if tick else -1.0,
                        vpas=tick.vpas if tick else 0,
                        errors=tick.errors if tick else 0,
                    )
                )
            for actor, held in sorted(self.shards.items()):
                response.actors.append(pb.ActorStatus(name=actor, shards=held))
            return response


def _lag(seconds: float | None) -> float:
    return -1.0 if seconds is None else seconds


def fleet_message(status: FleetStatus) -> pb.FleetStatusResponse:
    """The Coordinator's status (recommender/fleet/status.py) as the API's message."""
    response = pb.FleetStatusResponse(
        mode="fleet", ticks=status.ticks, last_tick=rfc3339(status.last_tick)
    )
    for shard in status.shards:
        response.shards.append(
            pb.ShardStatus(
                cluster=shard.cluster,
                namespace=shard.namespace,
                actor=shard.actor,
                last_tick=rfc3339(shard.last_tick),
                lag_seconds=_lag(shard.lag_s),
                last_error=shard.last_error or "",
            )
        )
    for cluster in status.clusters:
        mine = [s for s in status.shards if s.cluster == cluster.name]
        ticked = [s.last_tick for s in mine if s.last_tick is not None]
        lags = [s.lag_s for s in mine if s.lag_s is not None]
        response.clusters.append(
            pb.ClusterStatus(
                name=cluster.name,
                last_tick=rfc3339(min(ticked)) if ticked else "",
                lag_seconds=max(lags) if lags else -1.0,
                errors=sum(1 for s in mine if s.last_error),
                shards=cluster.shards,
                last_discovery=rfc3339(cluster.last_discovery),
                discovery_error=cluster.discovery_error or "",
                busy_on=list(cluster.busy_on),
            )
        )
    for actor in status.actors:
        response.actors.append(
            pb.ActorStatus(
                name=actor.name,
                shards=list(actor.shards),
                last_answer=rfc3339(actor.last_answer),
                errors=list(actor.errors),
            )
        )
    return response


def _page_token(key: tuple[str, ...]) -> str:
    return base64.urlsafe_b64encode("\x00".join(key).encode()).decode()


def _after(token: str, context: grpc.ServicerContext) -> tuple[str, ...]:
    if not token:
        return ()
    try:
        decoded = base64.b64decode(token.encode(), altchars=b"-_", validate=True)
        return tuple(decoded.decode().split("\x00"))
    except (ValueError, UnicodeDecodeError):
        _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"page_token {token!r} is not valid")


def _page_size(size: int, context: grpc.ServicerContext) -> int:
    if size < 0:
        _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"page_size {size} is negative")
    return min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    context.abort(code, details)
    raise AssertionError("unreachable: abort raises")


class InspectionService(pb_grpc.InspectionServicer):
    """The API over the clusters served (by name)."""

    def __init__(
        self,
        inspectors: Mapping[str, ClusterInspector],
        *,
        audit: AuditSource | None = None,
        board: StatusBoard | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.inspectors = dict(inspectors)
        self.audit = audit
        self.board = board or StatusBoard()
        self.clock = clock

    def _clusters(self, name: str, context: grpc.ServicerContext) -> list[ClusterInspector]:
        if not name:
            return [self.inspectors[n] for n in sorted(self.inspectors)]
        if name not in self.inspectors:
            known = ", ".join(sorted(self.inspectors))
            _abort(context, grpc.StatusCode.NOT_FOUND, f"cluster {name!r} not served ({known})")
        return [self.inspectors[name]]

    def _one(self, name: str, context: grpc.ServicerContext) -> ClusterInspector:
        clusters = self._clusters(name, context)
        if len(clusters) != 1:
            known = ", ".join(sorted(self.inspectors))
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"name the cluster: one of {known}")
        return clusters[0]

    def ListRecommendations(  # noqa: N802 - the RPC's name
        self, request: pb.ListRecommendationsRequest, context: grpc.ServicerContext
    ) -> pb.ListRecommendationsResponse:
        size = _page_size(request.page_size, context)
        after = _after(request.page_token, context)
        found: list[pb.Recommendation] = []
        try:
            for inspector in self._clusters(request.cluster, context):
                found.extend(inspector.recommendations(request.namespace, request.label_selector))
        except KubeApiError as error:
            _abort(context, _code(error), str(error))
        found.sort(key=lambda r: (r.cluster, r.namespace, r.name))
        rest = [r for r in found if (r.cluster, r.namespace, r.name) > after]
        page = rest[:size]
        token = ""
        if len(rest) > size:
            token = _page_token((page[-1].cluster, page[-1].namespace, page[-1].name))
        return pb.ListRecommendationsResponse(recommendations=page, next_page_token=token)

    def GetRecommendation(  # noqa: N802 - the RPC's name
        self, request: pb.GetRecommendationRequest, context: grpc.ServicerContext
    ) -> pb.Recommendation:
        inspector = self._one(request.cluster, context)
        try:
            return inspector.recommendation(request.namespace, request.name)
        except NotFoundError as error:
            _abort(context, grpc.StatusCode.NOT_FOUND, str(error))
        except KubeApiError as error:
            _abort(context, _code(error), str(error))

    def Explain(  # noqa: N802 - the RPC's name
        self, request: pb.ExplainRequest, context: grpc.ServicerContext
    ) -> pb.Explanation:
        inspector = self._one(request.cluster, context)
        try:
            explanation = inspector.explain(
                request.namespace, request.name, request.container or None
            )
        except NotFoundError as error:
            _abort(context, grpc.StatusCode.NOT_FOUND, str(error))
        except ExplainError as error:
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(error))
        except KubeApiError as error:
            _abort(context, _code(error), str(error))
        return explanation_message(explanation)

    def ListActions(  # noqa: N802 - the RPC's name
        self, request: pb.ListActionsRequest, context: grpc.ServicerContext
    ) -> pb.ListActionsResponse:
        size = _page_size(request.page_size, context)
        after = _after(request.page_token, context)
        records = list(self.audit()) if self.audit is not None else []
        chosen = [
            action_message(r)
            for r in records
            if (not request.cluster or r.cluster == request.cluster)
            and (not request.namespace or r.namespace == request.namespace)
        ]
        # Newest first; the position in that order pages them (records only get added).
        chosen.sort(key=lambda a: a.time, reverse=True)
        start = int(after[0]) if after and after[0].isdigit() else 0
        if after and not after[0].isdigit():
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "page_token is not one of ours")
        page = chosen[start : start + size]
        more = start + size < len(chosen)
        return pb.ListActionsResponse(
            actions=page, next_page_token=_page_token((str(start + size),)) if more else ""
        )

    def FleetStatus(  # noqa: N802 - the RPC's name
        self, request: pb.FleetStatusRequest, context: grpc.ServicerContext
    ) -> pb.FleetStatusResponse:
        return self.board.message(self.inspectors, self.clock())


def _code(error: KubeApiError) -> grpc.StatusCode:
    if error.not_found:
        return grpc.StatusCode.NOT_FOUND
    if error.status in (401, 403):
        return grpc.StatusCode.PERMISSION_DENIED
    return grpc.StatusCode.UNAVAILABLE


@dataclass(frozen=True)
class Tls:
    """Server certificate and key (PEM files); with `client_ca`, clients must present a
    certificate it signed (mutual TLS)."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        ca = self.client_ca_file.read_bytes() if self.client_ca_file else None
        return grpc.ssl_server_credentials(
            [(self.key_file.read_bytes(), self.cert_file.read_bytes())],
            root_certificates=ca,
            require_client_auth=ca is not None,
        )


@dataclass
class RunningServer:
    """A started server: its bound port (useful with port 0) and how to stop it."""

    server: grpc.Server
    port: int
    health: health.HealthServicer

    def stop(self, grace_s: float = 2.0) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_s).wait()


def start_server(
    service: InspectionService,
    listen: str,
    *,
    token: str | None = None,
    tls: Tls | None = None,
    workers: int = 4,
) -> RunningServer:
    """Serve `service`, health and reflection on `listen` (host:port; port 0 picks one).

    RuntimeError when the address cannot be bound.
    """
    interceptors: list[grpc.ServerInterceptor] = [BearerTokenInterceptor(token)] if token else []
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="api"),
        interceptors=interceptors,
        # gRPC shares ports by default: a second server on a taken port would bind silently.
        options=[("grpc.so_reuseport", 0)],
    )
    pb_grpc.add_InspectionServicer_to_server(service, server)
    checker = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    names = (
        SERVICE_NAME,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server)
    try:
        if tls is not None:
            port = server.add_secure_port(listen, tls.credentials())
        else:
            port = server.add_insecure_port(listen)
    except RuntimeError as error:
        raise RuntimeError(f"api.listen {listen}: cannot bind ({error})") from None
    if port == 0:
        raise RuntimeError(f"api.listen {listen}: cannot bind (in use, or not an address here)")
    server.start()
    for name in ("", SERVICE_NAME):
        checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "gRPC API on %s (port %d, %s, %s)",
        listen,
        port,
        "TLS" if tls else "plaintext",
        "bearer token" if token else "no token",
    )
    return RunningServer(server, port, checker)
