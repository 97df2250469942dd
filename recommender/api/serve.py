"""The API as `vpa-fleet run` serves it: settings to a started server over the clusters run."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from analytics.sources.prometheus import PrometheusSourceConfig
from recommender.api.auth import TokenError, read_token
from recommender.api.server import (
    AuditSource,
    FleetSource,
    InspectionService,
    RunningServer,
    StatusBoard,
    Tls,
    start_server,
)
from recommender.fleet.access import ClusterAccessError, HomeCluster, cluster_client
from recommender.fleet.config import FleetConfig
from recommender.inspection.source import ClusterInspector
from recommender.kube.rest import KubeClient, load_api_client
from recommender.settings import Settings


class ApiStartError(RuntimeError):
    """The API cannot start; the message names the setting to fix."""


Clusters = Mapping[
    str, tuple[KubeClient, PrometheusSourceConfig | None, Callable[[str], bool] | None]
]
"""The clusters of a fleet by name: their API server, their Prometheus, the namespaces served."""


def inspectors(settings: Settings, clusters: Clusters | None = None) -> dict[str, ClusterInspector]:
    """One inspector per cluster run: the settings' cluster, or `clusters` (a fleet), all
    with the settings' strategy and caps."""
    if clusters is None:
        kubeconfig = str(settings.kubeconfig) if settings.kubeconfig else None
        kube = KubeClient(load_api_client(kubeconfig, settings.context))
        namespaces = frozenset(settings.namespaces)
        clusters = {
            settings.cluster: (
                kube,
                settings.prometheus,
                namespaces.__contains__ if namespaces else None,
            )
        }
    max_allowed = {
        resource: quantity
        for resource, quantity in (
            ("cpu", settings.max_allowed_cpu),
            ("memory", settings.max_allowed_memory),
        )
        if quantity is not None
    }
    return {
        name: ClusterInspector(
            cluster=name,
            kube=kube,
            recommender_name=settings.recommender_name,
            strategy=settings.strategy,
            strategy_params=dict(settings.strategy_params),
            max_allowed=max_allowed,
            prometheus=prometheus,
            serves=serves,
        )
        for name, (kube, prometheus, serves) in clusters.items()
    }


def start_api(
    settings: Settings,
    board: StatusBoard,
    *,
    audit: AuditSource | None = None,
    clusters: Clusters | None = None,
) -> RunningServer:
    """Serve the API of `settings.api` (which must be enabled)."""
    api = settings.api
    try:
        token = read_token(api.token_file) if api.token_file is not None else None
    except TokenError as error:
        raise ApiStartError(str(error)) from None
    tls = None
    if api.tls_cert_file is not None and api.tls_key_file is not None:
        tls = Tls(api.tls_cert_file, api.tls_key_file, api.client_ca_file)
    service = InspectionService(inspectors(settings, clusters), audit=audit, board=board)
    try:
        return start_server(service, api.listen, token=token, tls=tls)
    except (RuntimeError, OSError) as error:
        raise ApiStartError(f"{error} (settings api.*)") from None


def start_fleet_api(
    settings: Settings,
    fleet: FleetConfig,
    home: HomeCluster,
    status: FleetSource,
    *,
    audit: AuditSource | None = None,
) -> RunningServer:
    """Serve the API of a fleet: every cluster of the fleet file, FleetStatus from `status`
    (the Coordinator's)."""
    try:
        clusters = {
            c.name: (cluster_client(c, home), c.prometheus, c.serves) for c in fleet.clusters
        }
    except ClusterAccessError as error:
        raise ApiStartError(f"the API cannot reach a cluster: {error}") from None
    return start_api(
        settings, StatusBoard(mode="fleet", fleet=status), audit=audit, clusters=clusters
    )
