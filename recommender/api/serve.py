"""The API as `vpa-fleet run` serves it: settings to a started server over the clusters run."""

from __future__ import annotations

from collections.abc import Mapping

from recommender.api.auth import TokenError, read_token
from recommender.api.server import (
    AuditSource,
    InspectionService,
    RunningServer,
    StatusBoard,
    Tls,
    start_server,
)
from recommender.inspection.source import ClusterInspector
from recommender.kube.rest import KubeClient, load_api_client
from recommender.settings import Settings


class ApiStartError(RuntimeError):
    """The API cannot start; the message names the setting to fix."""


def inspectors(
    settings: Settings, clients: Mapping[str, KubeClient] | None = None
) -> dict[str, ClusterInspector]:
    """One inspector per cluster run: the settings' cluster, or `clients` by cluster name (a
    fleet), all with the settings' strategy and caps."""
    if clients is None:
        kubeconfig = str(settings.kubeconfig) if settings.kubeconfig else None
        clients = {settings.cluster: KubeClient(load_api_client(kubeconfig, settings.context))}
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
            prometheus=settings.prometheus,
        )
        for name, kube in clients.items()
    }


def start_api(
    settings: Settings,
    board: StatusBoard,
    *,
    audit: AuditSource | None = None,
    clients: Mapping[str, KubeClient] | None = None,
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
    service = InspectionService(inspectors(settings, clients), audit=audit, board=board)
    try:
        return start_server(service, api.listen, token=token, tls=tls)
    except (RuntimeError, OSError) as error:
        raise ApiStartError(f"{error} (settings api.*)") from None
