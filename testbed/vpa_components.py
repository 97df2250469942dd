"""The stock VPA updater and admission controller (the pinned VPA release, built by
`testbed/build.sh vpa-components`) running against a testbed control plane.

`start_admission_controller()` serves the webhook with a certificate from the testbed CA and
lets the admission controller register itself, by URL (https://127.0.0.1:<port>) with the CA
as caBundle, as upstream supports with `--register-by-url`. It is ready once its
MutatingWebhookConfiguration names that URL and its status Lease (which the updater checks
before every loop) has been renewed. `start_updater()` then starts the updater; in-place
resize (`InPlaceOrRecreate`) needs no feature gate at this release (the gate was removed in
VPA 1.7.0), `InPlace` mode does (`feature_gates={"InPlace": True}` on both).

Both components authenticate with the testbed's admin kubeconfig. `namespace` confines them
to one namespace (`--vpa-object-namespace`; the webhook then only sees that namespace's
objects), so that tests sharing a control plane do not see each other's pods resized or
evicted. Every handle's `stop()` stops the process (and removes the webhook registration);
a component that fails to start raises TestbedError with its own log tail.

See docs/actuation.md for what the stock updater does with what our recommender writes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import socket
import ssl
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from recommender.kube.rest import KubeApiError, KubeClient, load_api_client
from testbed import binaries
from testbed.cluster import ControlPlane
from testbed.pki import issue_serving_cert
from testbed.process import LOOPBACK, Process, free_port, start, wait_until

COMPONENT = "vpa-components"
"""The `testbed/build.sh` target that builds both binaries."""

STATUS_NAMESPACE = "kube-system"
"""Where the admission controller keeps its status Lease (`NAMESPACE` in both components'
environment; upstream's default)."""
STATUS_LEASE = "vpa-admission-controller"
WEBHOOK_CONFIG = "vpa-webhook-config"
"""The MutatingWebhookConfiguration the admission controller creates for itself."""

# The admission controller registers its webhook 10 s after start and renews its Lease every
# 10 s after that (constants in pkg/admission-controller/main.go).
ADMISSION_START_TIMEOUT_S = 90.0
_SKIPPED = "Admission Controller status is not valid"


def binary(name: str) -> Path:
    """The path of `updater` or `admission-controller`, building them when missing."""
    return binaries.path(COMPONENT, name)


def _feature_gates(gates: Mapping[str, bool] | None) -> list[str]:
    if not gates:
        return []
    value = ",".join(f"{name}={'true' if on else 'false'}" for name, on in sorted(gates.items()))
    return [f"--feature-gates={value}"]


def _environment() -> dict[str, str]:
    # Both components read the status Lease's namespace from NAMESPACE; pin it so that an
    # unrelated NAMESPACE in the caller's environment cannot make the updater wait forever.
    return {"NAMESPACE": STATUS_NAMESPACE}


def _http_get(url: str, timeout_s: float = 2.0) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return int(response.status), response.read().decode()


def _kube(plane: ControlPlane) -> KubeClient:
    return KubeClient(load_api_client(str(plane.kubeconfig)), timeout_s=10.0)


@dataclass
class AdmissionController:
    """A running admission controller registered as the cluster's VPA webhook."""

    process: Process
    url: str
    """Where the API server calls the webhook."""
    metrics_url: str
    kube: KubeClient

    def log_text(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop the process and remove its webhook registration (it would otherwise point
        the API server at a closed port; upstream's failurePolicy Ignore would then only
        make every pod creation wait for a refused connection)."""
        self.process.stop()
        with contextlib.suppress(KubeApiError, OSError):
            self.kube.request(
                "DELETE",
                f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{WEBHOOK_CONFIG}",
            )


def _registered(kube: KubeClient, url: str) -> bool:
    try:
        config = kube.get(
            f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{WEBHOOK_CONFIG}"
        )
    except KubeApiError as error:
        if error.not_found:
            return False
        raise
    return any(
        hook.get("clientConfig", {}).get("url") == url for hook in config.get("webhooks") or []
    )


def _lease_valid_since(kube: KubeClient, since: dt.datetime) -> bool:
    """The status Lease was created or renewed at or after `since` (the updater takes a
    Lease created or renewed within the last minute as valid: pkg/utils/status)."""
    try:
        lease = kube.get(
            f"/apis/coordination.k8s.io/v1/namespaces/{STATUS_NAMESPACE}/leases/{STATUS_LEASE}"
        )
    except KubeApiError as error:
        if error.not_found:
            return False
        raise
    # The first write creates the Lease without a renewTime; later ones renew it.
    times = (
        lease.get("metadata", {}).get("creationTimestamp"),
        lease.get("spec", {}).get("renewTime"),
    )
    return any(
        dt.datetime.fromisoformat(str(t).replace("Z", "+00:00")) >= since for t in times if t
    )


def start_admission_controller(
    plane: ControlPlane,
    *,
    namespace: str | None = None,
    feature_gates: Mapping[str, bool] | None = None,
    webhook_timeout_s: int = 10,
    extra_args: Sequence[str] = (),
    timeout_s: float = ADMISSION_START_TIMEOUT_S,
) -> AdmissionController:
    """Start the admission controller and wait until the API server calls it for new pods
    (webhook registered with our URL) and its status Lease has been renewed."""
    executable = binary("admission-controller")
    certs = plane.workdir / "vpa-admission-controller"
    certs.mkdir(parents=True, exist_ok=True)
    cert, key = issue_serving_cert(
        certs, "webhook", plane.pki.ca_cert, plane.pki.ca_key, [LOOPBACK, "localhost"]
    )
    port, metrics_port = free_port(), free_port()
    url = f"https://{LOOPBACK}:{port}"
    argv: list[str | os.PathLike[str]] = [
        executable,
        f"--kubeconfig={plane.kubeconfig}",
        # Only read to fill the webhook's caBundle at registration.
        f"--client-ca-file={plane.pki.ca_cert}",
        f"--tls-cert-file={cert}",
        f"--tls-private-key={key}",
        f"--port={port}",
        f"--address={LOOPBACK}:{metrics_port}",
        "--register-webhook=true",
        "--register-by-url=true",
        f"--webhook-address=https://{LOOPBACK}",
        f"--webhook-port={port}",
        f"--webhook-timeout-seconds={webhook_timeout_s}",
        *([f"--vpa-object-namespace={namespace}"] if namespace else []),
        *_feature_gates(feature_gates),
        *extra_args,
    ]
    kube = _kube(plane)
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    process = start("vpa-admission-controller", argv, plane.workdir / "logs", env=_environment())
    controller = AdmissionController(
        process=process, url=url, metrics_url=f"http://{LOOPBACK}:{metrics_port}", kube=kube
    )
    try:
        context = ssl.create_default_context(cafile=str(plane.pki.ca_cert))

        def serving() -> bool:
            # A TLS handshake that verifies the certificate against the testbed CA, as the
            # API server will (no request: the server logs every non-review request).
            with (
                socket.create_connection((LOOPBACK, port), timeout=2.0) as raw,
                context.wrap_socket(raw, server_hostname=LOOPBACK),
            ):
                return True

        wait_until(process, serving, 30, f"serving TLS on {url}")
        wait_until(
            process, lambda: _registered(kube, url), timeout_s, f"registering its webhook at {url}"
        )
        wait_until(
            process,
            lambda: _lease_valid_since(kube, started),
            timeout_s,
            f"writing its status Lease {STATUS_NAMESPACE}/{STATUS_LEASE}",
        )
    except BaseException:
        controller.stop()
        raise
    return controller


@dataclass
class Updater:
    """A running updater."""

    process: Process
    metrics_url: str
    interval_s: float
    args: list[str] = field(default_factory=list)

    def log_text(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def loops(self) -> int:
        """How many update loops have finished (its `execution_latency_seconds` count)."""
        _, text = _http_get(f"{self.metrics_url}/metrics")
        match = re.search(
            r'^vpa_updater_execution_latency_seconds_count\{step="total"\} (\S+)$', text, re.M
        )
        return int(float(match.group(1))) if match else 0

    def wait_loops(self, count: int, timeout_s: float | None = None) -> None:
        """Wait until `count` more loops have finished; fail with the log tail otherwise."""
        target = self.loops() + count
        limit = timeout_s if timeout_s is not None else (count + 2) * self.interval_s + 30
        wait_until(self.process, lambda: self.loops() >= target, limit, f"finishing {count} loops")

    def stop(self) -> None:
        self.process.stop()


def start_updater(
    plane: ControlPlane,
    *,
    admission_controller: AdmissionController | None,
    namespace: str | None = None,
    min_replicas: int = 2,
    interval_s: float = 5.0,
    feature_gates: Mapping[str, bool] | None = None,
    extra_args: Sequence[str] = (),
) -> Updater:
    """Start the updater and wait until it has finished its first loop.

    With an admission controller the updater runs as upstream deploys it, checking the
    controller's status Lease before every loop (`--use-admission-controller-status`, the
    default); without one that check is turned off, or it would skip every loop.
    """
    executable = binary("updater")
    metrics_port = free_port()
    args = [
        f"--kubeconfig={plane.kubeconfig}",
        f"--updater-interval={interval_s:g}s",
        f"--min-replicas={min_replicas}",
        f"--address={LOOPBACK}:{metrics_port}",
        f"--use-admission-controller-status={'true' if admission_controller else 'false'}",
        *([f"--vpa-object-namespace={namespace}"] if namespace else []),
        *_feature_gates(feature_gates),
        *extra_args,
    ]
    process = start("vpa-updater", [executable, *args], plane.workdir / "logs", env=_environment())
    updater = Updater(
        process=process,
        metrics_url=f"http://{LOOPBACK}:{metrics_port}",
        interval_s=interval_s,
        args=args,
    )
    try:
        wait_until(process, lambda: updater.loops() >= 1, interval_s * 3 + 60, "finishing a loop")
    except BaseException:
        updater.stop()
        raise
    if admission_controller is not None and _SKIPPED in updater.log_text():
        updater.stop()
        raise process.failure(
            f"skipped its first loop: the status Lease {STATUS_NAMESPACE}/{STATUS_LEASE} "
            "of the admission controller is not valid"
        )
    return updater
