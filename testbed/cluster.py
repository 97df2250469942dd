"""A real local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and KWOK (simulated nodes and pods), with the upstream VPA CRDs and ours
(`crds/`) installed.

Everything listens on 127.0.0.1 on free ports. `start_control_plane()` returns a handle
whose `stop()` tears every process down; a failed start stops what it had started and
raises TestbedError with the failing component's own log tail.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from testbed import binaries
from testbed.pki import Pki, create_pki
from testbed.process import LOOPBACK, Process, TestbedError, free_port, start, wait_until

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
CRDS_DIR = Path(__file__).resolve().parent.parent / "crds"


@dataclass
class ControlPlane:
    """A running control plane; `kubeconfig` authenticates as a cluster admin."""

    workdir: Path
    server: str
    kubeconfig: Path
    pki: Pki
    processes: list[Process] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    etcd_data: Path | None = None
    """etcd's data directory (in /dev/shm when there is one): removed on stop()."""
    etcd_url: str = ""

    def kubectl(self, *args: str, input_text: str | None = None) -> str:
        """Run the testbed's kubectl against this control plane; return stdout."""
        argv = [str(binaries.path("kube", "kubectl")), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(
            argv, input=input_text, capture_output=True, text=True, check=False, timeout=120
        )
        if result.returncode != 0:
            raise TestbedError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def stop_apiserver(self) -> None:
        """Stop the API server alone, everything else running (fault tests)."""
        for process in self.processes:
            if process.name == "kube-apiserver":
                process.stop()

    def start_apiserver(self) -> None:
        """Start the API server again, on its port and with etcd's data as it was."""
        index = next(i for i, p in enumerate(self.processes) if p.name == "kube-apiserver")
        if self.processes[index].alive():
            raise TestbedError("the API server is running")
        _start_apiserver(self, self.etcd_url, int(self.server.rsplit(":", 1)[1]))
        self.processes[index] = self.processes.pop()

    def stop(self) -> None:
        """Stop every component, the last started first."""
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()


def _https_get(url: str, pki: Pki | None, timeout_s: float = 2.0) -> tuple[int, str]:
    """GET as the admin (verifying the testbed CA), or anonymously without verification for
    the controllers' health endpoints, which serve self-signed certificates."""
    if pki is None:
        context = ssl._create_unverified_context()
    else:
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    with urllib.request.urlopen(url, context=context, timeout=timeout_s) as response:
        return response.status, response.read().decode()


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2.0) as response:
        return bool(response.status == 200)


def _write_kubeconfig(path: Path, server: str, pki: Pki) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "testbed",
                "cluster": {"server": server, "certificate-authority": str(pki.ca_cert)},
            }
        ],
        "users": [
            {
                "name": "admin",
                "user": {
                    "client-certificate": str(pki.admin_cert),
                    "client-key": str(pki.admin_key),
                },
            }
        ],
        "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": "admin"}}],
        "current-context": "testbed",
    }
    path.write_text(yaml.safe_dump(config))


def _start_etcd(plane: ControlPlane, data_root: Path) -> str:
    client, peer = free_port(), free_port()
    client_url, peer_url = f"http://{LOOPBACK}:{client}", f"http://{LOOPBACK}:{peer}"
    etcd = start(
        "etcd",
        [
            binaries.path("etcd", "etcd"),
            "--name=testbed",
            f"--data-dir={data_root / 'etcd'}",
            "--unsafe-no-fsync",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=testbed={peer_url}",
            "--log-level=warn",
        ],
        plane.workdir / "logs",
    )
    plane.processes.append(etcd)
    wait_until(etcd, lambda: _http_ok(f"{client_url}/health"), 60, "answering /health")
    return client_url


def _start_apiserver(plane: ControlPlane, etcd_url: str, port: int) -> None:
    pki = plane.pki
    apiserver = start(
        "kube-apiserver",
        [
            binaries.path("kube", "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={port}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--requestheader-client-ca-file={pki.ca_cert}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki.front_proxy_cert}",
            f"--proxy-client-key-file={pki.front_proxy_key}",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.service_account_key}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            f"--cert-dir={plane.workdir / 'apiserver-certs'}",
            "--profiling=false",
            "--v=1",
        ],
        plane.workdir / "logs",
    )
    plane.processes.append(apiserver)

    def ready() -> bool:
        status, body = _https_get(f"{plane.server}/readyz", pki)
        return status == 200 and body.strip() == "ok"

    wait_until(apiserver, ready, 120, "answering /readyz")


def _start_controllers(plane: ControlPlane) -> None:
    common = [
        f"--kubeconfig={plane.kubeconfig}",
        f"--authentication-kubeconfig={plane.kubeconfig}",
        f"--authorization-kubeconfig={plane.kubeconfig}",
        "--leader-elect=false",
        f"--bind-address={LOOPBACK}",
        "--kube-api-qps=500",
        "--kube-api-burst=1000",
        "--v=1",
    ]
    kcm_port, scheduler_port = free_port(), free_port()
    kcm = start(
        "kube-controller-manager",
        [
            binaries.path("kube", "kube-controller-manager"),
            *common,
            f"--secure-port={kcm_port}",
            f"--service-account-private-key-file={plane.pki.service_account_key}",
            f"--root-ca-file={plane.pki.ca_cert}",
            "--use-service-account-credentials=false",
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller",
            "--concurrent-deployment-syncs=20",
            "--concurrent-replicaset-syncs=20",
        ],
        plane.workdir / "logs",
    )
    plane.processes.append(kcm)
    scheduler = start(
        "kube-scheduler",
        [binaries.path("kube", "kube-scheduler"), *common, f"--secure-port={scheduler_port}"],
        plane.workdir / "logs",
    )
    plane.processes.append(scheduler)
    for process, health_port in ((kcm, kcm_port), (scheduler, scheduler_port)):
        url = f"https://{LOOPBACK}:{health_port}/healthz"
        wait_until(
            process, lambda url=url: _https_get(url, None)[0] == 200, 60, "answering /healthz"
        )


# KWOK advances 4 pods at a time by default (each a status update waiting for the API server):
# about 10 pods a second here, an hour for 50,000. More in flight keeps the API server busy.
# A configuration given replaces KWOK's defaults: every parallelism must be set.
_KWOK_CONFIGURATION = """\
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  podPlayStageParallelism: 32
  nodePlayStageParallelism: 8
  nodeLeaseParallelism: 4
  podsOnNodeSyncParallelism: 4
"""


def _start_kwok(plane: ControlPlane) -> None:
    configuration = plane.workdir / "kwok-configuration.yaml"
    configuration.write_text(_KWOK_CONFIGURATION)
    kwok = start(
        "kwok",
        [
            binaries.path("kwok", "kwok"),
            f"--kubeconfig={plane.kubeconfig}",
            f"--config={configuration}",
            f"--config={binaries.path('kwok', 'stages.yaml')}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            "--cidr=10.244.0.0/16",
            "--node-ip=10.0.0.1",
            "--node-lease-duration-seconds=40",
        ],
        plane.workdir / "logs",
    )
    plane.processes.append(kwok)


def node_manifest(name: str, cpu: str, memory: str, pods: int) -> dict[str, object]:
    """A simulated node that KWOK manages."""
    capacity = {"cpu": cpu, "memory": memory, "pods": str(pods)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {"allocatable": capacity, "capacity": capacity},
    }


def _wait_nodes_ready(plane: ControlPlane, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    kwok = next(p for p in plane.processes if p.name == "kwok")
    while time.monotonic() < deadline:
        if not kwok.alive():
            raise kwok.failure("exited before the nodes became Ready")
        items = json.loads(plane.kubectl("get", "nodes", "-o", "json"))["items"]
        # Ready, and the node-lifecycle controller has lifted the not-ready taint that
        # admission puts on new nodes (until then nothing schedules there).
        ready = {
            item["metadata"]["name"]
            for item in items
            for cond in item.get("status", {}).get("conditions", [])
            if cond["type"] == "Ready"
            and cond["status"] == "True"
            and not item["spec"].get("taints")
        }
        if set(plane.nodes) <= ready:
            return
        time.sleep(0.5)
    raise kwok.failure(
        f"did not make nodes {plane.nodes} Ready and untainted within {timeout_s:.0f} s"
    )


def install_vpa_crds(plane: ControlPlane) -> None:
    """Install the upstream VPA CRDs from the pinned VPA module and ours (every YAML in
    `crds/`), and wait until all are established."""
    crds = binaries.path("vpa", "vpa-v1-crd-gen.yaml")
    ours = sorted(CRDS_DIR.glob("*.yaml"))
    plane.kubectl("apply", "--server-side", "-f", str(crds), *(f"--filename={p}" for p in ours))
    plane.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/verticalpodautoscalers.autoscaling.k8s.io",
        "crd/verticalpodautoscalercheckpoints.autoscaling.k8s.io",
        *(f"crd/{yaml.safe_load(p.read_text())['metadata']['name']}" for p in ours),
    )


def start_control_plane(
    workdir: Path | None = None,
    *,
    nodes: int = 2,
    node_cpu: str = "64",
    node_memory: str = "256Gi",
    node_pods: int = 250,
    attempts: int = 3,
) -> ControlPlane:
    """Start etcd, the API server, controllers and KWOK with `nodes` simulated nodes.

    A free port can be taken by another process between choosing it and binding it; such a
    start is retried on fresh ports (up to `attempts` times), any other failure is raised.
    """
    binaries.ensure("kube", "etcd", "kwok", "vpa")
    workdir = workdir or Path(tempfile.mkdtemp(prefix="vpa-fleet-testbed-"))
    for attempt in range(1, attempts + 1):
        try:
            return _start_once(workdir, nodes, node_cpu, node_memory, node_pods)
        except TestbedError as error:
            if attempt == attempts or "address already in use" not in str(error):
                raise
    raise AssertionError("unreachable")


def _start_once(
    workdir: Path, nodes: int, node_cpu: str, node_memory: str, node_pods: int
) -> ControlPlane:
    workdir.mkdir(parents=True, exist_ok=True)
    pki = create_pki(workdir / "pki")
    port = free_port()
    plane = ControlPlane(
        workdir=workdir,
        server=f"https://{LOOPBACK}:{port}",
        kubeconfig=workdir / "kubeconfig",
        pki=pki,
    )
    _write_kubeconfig(plane.kubeconfig, plane.server, pki)
    # etcd's data is throw-away: keep it in memory when /dev/shm exists (much faster writes).
    shm = Path("/dev/shm")
    data_root = Path(tempfile.mkdtemp(prefix="vpa-fleet-etcd-", dir=shm if shm.is_dir() else None))
    try:
        plane.etcd_data = data_root
        etcd_url = plane.etcd_url = _start_etcd(plane, data_root)
        plane.processes[-1].extra_stop.append(
            lambda: subprocess.run(["rm", "-rf", str(data_root)], check=False)
        )
        _start_apiserver(plane, etcd_url, port)
        install_vpa_crds(plane)
        _start_controllers(plane)
        _start_kwok(plane)
        plane.nodes = [f"kwok-node-{i}" for i in range(nodes)]
        manifests = [node_manifest(n, node_cpu, node_memory, node_pods) for n in plane.nodes]
        plane.kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(manifests))
        _wait_nodes_ready(plane)
    except BaseException:
        with contextlib.suppress(Exception):
            plane.stop()
        raise
    return plane
