"""Small helpers for integration tests that talk to the testbed API server."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import yaml
from kubernetes import client

from testbed import demo
from testbed.cluster import ControlPlane

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
