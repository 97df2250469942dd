"""Ray for `vpa-fleet run`: an embedded local Ray in this process, or a connection to a cluster.

One code path: the embedded default is `ray.init()` of a local Ray, a Ray cluster is the same
program given an address (`RaySettings.address`).

An embedded Ray listens on 127.0.0.1 only: Ray's single-host knob
(`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, read when `ray` is imported) binds every socket to the
loopback address, and the dashboard is served on 127.0.0.1. `start_ray` refuses to start one
when that knob came too late (Ray imported before `apply_ray_env`) or was turned off.

Connecting to a cluster first checks, for at most `connect_timeout_s`, that the address accepts
connections and answers as a gRPC server (Ray's GCS and Ray Client both are), so that an
unreachable or wrong address fails with a message naming it instead of Ray's own retries,
which last many minutes. An address Ray finds by itself (`auto`) is not checked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from recommender.settings import RaySettings

__all__ = [
    "RAY_ENV",
    "RayRuntime",
    "RayStartError",
    "apply_ray_env",
    "dashboard_headers",
    "start_ray",
    "stop_ray",
]

# Set before Ray starts: loopback-only sockets (Ray's own knob for single-host clusters),
# no usage reporting, custom metrics exported every second instead of every ten, and token
# authentication said out loud: the dashboard's API wants the token Ray keeps in
# ~/.ray/auth_token (or RAY_AUTH_TOKEN), and clients given an explicit address send it.
RAY_ENV: Final = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_metrics_report_interval_ms": "1000",
    "RAY_AUTH_MODE": "token",
}

LOOPBACK: Final = "127.0.0.1"
_RETRY_S: Final = 0.5
_CLIENT_ATTEMPTS: Final = 3
_SERVER_START_FAILED: Final = "Starting Ray client server failed"


def apply_ray_env() -> None:
    """Put RAY_ENV into this process's environment unless already set. Some knobs are read
    when `ray` is imported, so call this before the first `import ray`."""
    os.environ.update({k: v for k, v in RAY_ENV.items() if k not in os.environ})


def dashboard_headers() -> dict[str, str]:
    """The Authorization header the dashboard's API wants, from where Ray keeps the token
    (RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names, or ~/.ray/auth_token); empty when
    there is none."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
        try:
            token = path.read_text().strip()
        except OSError:
            return {}
    return {"Authorization": f"Bearer {token}"} if token else {}


class RayStartError(RuntimeError):
    """Ray could not be started or reached; the message says which and why."""


@dataclass(frozen=True)
class RayRuntime:
    """The Ray this process uses: its GCS address, its dashboard URL ("" when there is none)
    and whether it runs embedded in this process."""

    address: str
    dashboard_url: str
    embedded: bool


def _ray() -> Any:
    apply_ray_env()
    import ray  # noqa: PLC0415 - Ray reads its environment at import time

    if ray.is_initialized():
        raise RayStartError("Ray is already initialised in this process")
    return ray


def start_ray(settings: RaySettings) -> RayRuntime:
    """Start an embedded local Ray (no `settings.address`) or connect to a Ray cluster.

    Raises `RayStartError` naming the address, port or knob at fault.
    """
    if settings.address is None:
        return _start_embedded(_ray(), settings)
    endpoint = _endpoint(settings.address)
    if endpoint is not None:
        _wait_until_answering(settings.address, *endpoint, settings.connect_timeout_s)
    return _connect(_ray(), settings.address, settings.namespace)


def stop_ray(runtime: RayRuntime) -> None:
    """Disconnect from Ray; an embedded Ray's processes end with it."""
    import ray  # noqa: PLC0415 - imported by start_ray already

    ray.shutdown()


def _dashboard_url(context: Any) -> str:
    url = str(context.dashboard_url or "")
    return f"http://{url}" if url and "://" not in url else url


def _start_embedded(ray: Any, settings: RaySettings) -> RayRuntime:
    from ray._private import ray_constants  # noqa: PLC0415 - after apply_ray_env

    if ray_constants.ENABLE_RAY_CLUSTER:
        raise RayStartError(
            "an embedded Ray would listen beyond 127.0.0.1: "
            f"{ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR}=0 must be set before ray is first "
            "imported (call apply_ray_env() first; the variable is now "
            f"{os.environ.get(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, 'unset')!r})"
        )
    if settings.dashboard:
        _check_port_free(settings.dashboard_port)
    try:
        context = ray.init(
            address="local",  # a new local Ray, whatever RAY_ADDRESS says
            num_cpus=settings.num_cpus,
            object_store_memory=settings.object_store_bytes,
            include_dashboard=settings.dashboard,
            dashboard_host=LOOPBACK,
            dashboard_port=settings.dashboard_port if settings.dashboard else None,
            namespace=settings.namespace,
            logging_level=logging.WARNING,
            log_to_driver=False,
            _temp_dir=str(settings.temp_dir) if settings.temp_dir else None,
        )
    except Exception as error:
        raise RayStartError(f"could not start an embedded Ray: {error}") from error
    return RayRuntime(
        address=str(context.address_info["gcs_address"]),
        dashboard_url=_dashboard_url(context) if settings.dashboard else "",
        embedded=True,
    )


def _check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError as error:
            raise RayStartError(
                f"the Ray dashboard port {LOOPBACK}:{port} is not free ({error.strerror}); set "
                "ray.dashboard_port to another port, or ray.dashboard to false"
            ) from None


def _connect(ray: Any, address: str, namespace: str) -> RayRuntime:
    attempt = 1
    while True:
        try:
            context = ray.init(
                address=address,
                namespace=namespace,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
            break
        except Exception as error:
            # Ray Client's proxy starts one server process per driver, forking from a
            # threaded process; now and then that process dies at birth and the proxy says so.
            # A new connection gets a new one.
            if _SERVER_START_FAILED not in str(error) or attempt >= _CLIENT_ATTEMPTS:
                raise RayStartError(f"could not connect to Ray at {address}: {error}") from error
            with contextlib.suppress(Exception):
                ray.shutdown()
            attempt += 1
            time.sleep(_RETRY_S)
    gcs = getattr(context, "address_info", {}).get("gcs_address") or address
    return RayRuntime(address=str(gcs), dashboard_url=_dashboard_url(context), embedded=False)


def _endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) of `host:port`, `[v6]:port` or `ray://host:port`; None for addresses Ray
    resolves by itself (`auto`) or that it will refuse with its own message."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rstrip("/").rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _wait_until_answering(address: str, host: str, port: int, timeout_s: float) -> None:
    """Return once host:port accepts a connection and completes a gRPC handshake, trying for
    at most timeout_s; RayStartError naming the address otherwise."""
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while True:
        remaining = deadline - time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(remaining, 5.0))):
                break
        except OSError as error:
            last_error = error.strerror or str(error) or type(error).__name__
        if time.monotonic() + _RETRY_S >= deadline:
            raise RayStartError(
                f"cannot reach Ray at {address}: nothing accepted a connection at "
                f"{host}:{port} within {timeout_s:g} s (last error: {last_error})"
            )
        time.sleep(_RETRY_S)
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return  # the handshake below speaks plaintext gRPC
    import grpc  # noqa: PLC0415 - only when connecting to a cluster

    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    channel = grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=max(0.1, deadline - time.monotonic()))
    except grpc.FutureTimeoutError:
        raise RayStartError(
            f"cannot connect to Ray at {address}: {host}:{port} accepts connections but no "
            f"gRPC server (Ray's GCS or Ray Client) answered within {timeout_s:g} s"
        ) from None
    finally:
        channel.close()
