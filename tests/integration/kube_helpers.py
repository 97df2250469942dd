"""Small helpers for integration tests that talk to the testbed API server."""

from __future__ import annotations

import base64
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import yaml
from kubernetes import client

from analytics.quantity import parse_quantity
from recommender.kube.rest import KubeApiError, KubeClient, load_api_client
from testbed import demo
from testbed.cluster import ControlPlane
from testbed.kubelet_sim import KubeletSimulator
from testbed.vpa_components import (
    AdmissionController,
    Updater,
    start_admission_controller,
    start_updater,
)

T = TypeVar("T")


def unique_namespace(api: client.ApiClient, prefix: str) -> str:
    """Create a fresh namespace so that tests never see each other's objects."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata={"name": name}))
    return name


def eventually(probe: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll `probe` until it returns a truthy value; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}; last: {last!r}")


def pod_template(app: str, cpu: str = "100m", memory: str = "128Mi") -> dict[str, object]:
    """A pod template with one container `app`; KWOK runs it on a simulated node."""
    container = demo.container_manifest(
        "app",
        requests={"cpu": cpu, "memory": memory},
        limits={"memory": memory},
        image="registry.example/app:1",
    )
    return demo.pod_template(app, [container])


def running_pods(api: client.ApiClient, namespace: str, app: str) -> list[client.V1Pod]:
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"app={app}").items
    return [
        p
        for p in pods
        if p.status.phase == "Running"
        and p.metadata.deletion_timestamp is None
        and all(cs.ready for cs in (p.status.container_statuses or []))
    ]


def workload(kind: str, name: str, replicas: int | None = None) -> dict[str, object]:
    """A Deployment, StatefulSet or DaemonSet of `pod_template(name)` selecting `app=name`."""
    return demo.workload_manifest(kind, name, pod_template(name), replicas=replicas)


def inline_kubeconfig(plane: ControlPlane, context: str = "admin@c") -> str:
    """The plane's admin kubeconfig with its credentials inline, as a Secret holds one."""

    def data(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "c",
                    "cluster": {
                        "server": plane.server,
                        "certificate-authority-data": data(plane.pki.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate-data": data(plane.pki.admin_cert),
                        "client-key-data": data(plane.pki.admin_key),
                    },
                }
            ],
            "contexts": [{"name": context, "context": {"cluster": "c", "user": "admin"}}],
            "current-context": context,
        }
    )


def exists(kube: KubeClient, path: str) -> bool:
    """Whether the object at `path` exists (any other error is raised)."""
    try:
        kube.get(path)
    except KubeApiError as error:
        if error.not_found:
            return False
        raise
    return True


def quantities(resources: Mapping[str, str] | None) -> dict[str, Fraction]:
    """A resource list's quantities as exact values, to compare "0.5" with "500m"."""
    return {name: parse_quantity(value) for name, value in (resources or {}).items()}


@dataclass
class UpdaterBed:
    """A namespace of its own with the stock VPA admission controller and updater watching
    it, and the kubelet simulator answering its pods' resizes."""

    kube: KubeClient
    namespace: str
    simulator: KubeletSimulator
    admission: AdmissionController
    updater: Updater


@contextlib.contextmanager
def updater_bed(
    control_plane: ControlPlane,
    kube_api: client.ApiClient,
    prefix: str,
    *,
    interval_s: float,
    feature_gates: Mapping[str, bool] | None = None,
) -> Iterator[UpdaterBed]:
    """Start the pieces (updater with --min-replicas 2), stop them in reverse order, and
    check that the simulator handled every pod."""
    kube = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    namespace = unique_namespace(kube_api, prefix)
    eventually(
        lambda: exists(kube, f"/api/v1/namespaces/{namespace}/serviceaccounts/default"),
        60,
        f"the default ServiceAccount of {namespace}",
    )
    simulator = KubeletSimulator(kube, namespace=namespace).start()
    admission: AdmissionController | None = None
    updater: Updater | None = None
    try:
        admission = start_admission_controller(
            control_plane, namespace=namespace, feature_gates=feature_gates
        )
        updater = start_updater(
            control_plane,
            admission_controller=admission,
            namespace=namespace,
            min_replicas=2,
            interval_s=interval_s,
            feature_gates=feature_gates,
        )
        yield UpdaterBed(kube, namespace, simulator, admission, updater)
    finally:
        if updater is not None:
            updater.stop()
        if admission is not None:
            admission.stop()
        simulator.stop()
    assert simulator.errors == 0, "the kubelet simulator failed on some pods (see its log)"
