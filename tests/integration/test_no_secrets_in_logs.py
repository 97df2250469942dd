"""A full `vpa-fleet run` at DEBUG with credentials everywhere they can be given (a
ServiceAccount token in the kubeconfig, a Prometheus bearer token and a password in its URL)
prints none of them: not on stdout or stderr, not in any log file of its Ray session."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from recommender.kube.rest import KubeClient, load_api_client
from testbed.cluster import ControlPlane
from testbed.demo import DemoWorkload, start_demo
from testbed.series import MI, ContainerSpec
from tests.integration.runs import ray_temp_dir, run_argv

APP = ContainerSpec("app", 0.1, 100 * MI, 0.1, 128 * MI)


def _service_account_kubeconfig(
    kube: KubeClient, plane: ControlPlane, namespace: str, path: Path
) -> str:
    """A kubeconfig authenticating with a fresh ServiceAccount token (cluster-admin here: the
    point is where the token ends up, not what it may do). Returns the token."""
    name = "log-probe"
    kube.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        body={"metadata": {"name": name}},
    )
    kube.request(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        body={
            "metadata": {"name": f"{namespace}-{name}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    )
    answer = kube.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        body={"spec": {"expirationSeconds": 3600}},
    )
    token = str(answer["status"]["token"])
    ca = base64.b64encode(plane.pki.ca_cert.read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "t", "cluster": {"server": plane.server, "certificate-authority-data": ca}}
        ],
        "users": [{"name": "probe", "user": {"token": token}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "probe"}}],
        "current-context": "t",
    }
    path.write_text(yaml.safe_dump(config))
    return token


def test_a_debug_run_prints_no_credential(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> None:
    kube = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    namespace = f"logs-{uuid.uuid4().hex[:5]}"
    workloads = (DemoWorkload("Deployment", namespace, "app", 1, (APP,)),)
    demo = start_demo(
        tmp_path_factory.mktemp("logs"),
        kube,
        workloads,
        days=0.2,
        step_s=300,
        end=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10),
    )
    try:
        kubeconfig = tmp_path_factory.mktemp("logs-kubeconfig") / "kubeconfig"
        token = _service_account_kubeconfig(kube, control_plane, namespace, kubeconfig)
        bearer = f"bearer-{secrets.token_hex(16)}"
        password = f"pw-{secrets.token_hex(8)}"
        ray_temp = ray_temp_dir()

        def run(prometheus_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                run_argv(
                    kubeconfig,
                    prometheus_url,
                    [namespace],
                    "--once",
                    "--log-level",
                    "DEBUG",
                    "--set",
                    "metrics.enabled=false",
                    *extra,
                    ray_temp=ray_temp,
                ),
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )

        # A password in the URL is refused, and the refusal does not repeat it.
        refused = run(demo.prometheus.url.replace("http://", f"http://probe:{password}@"))
        full = run(demo.prometheus.url, "--set", f"prometheus.connection.bearer_token={bearer}")
    finally:
        demo.stop()
    assert refused.returncode == 2
    assert "put credentials in username/password" in refused.stderr
    output = full.stdout + full.stderr
    assert full.returncode == 0, output[-4000:]
    assert f"{namespace}/app written" in output, "the run read history and wrote: a full run"
    assert "***" in output, "the settings are printed, masked"
    logs = [p for p in ray_temp.rglob("*") if p.is_file() and p.suffix in {".log", ".out", ".err"}]
    assert logs, "the Ray session wrote logs"
    texts = {"the output": output, "the refusal": refused.stdout + refused.stderr}
    texts |= {str(p): p.read_text(errors="replace") for p in logs}
    credentials = {
        "the ServiceAccount token": token,
        "the token's signature": token.split(".")[-1],
        "the Prometheus bearer token": bearer,
        "the Prometheus password": password,
    }
    leaks = [
        f"{what} in {where}"
        for where, text in texts.items()
        for what, value in credentials.items()
        if value in text
    ]
    assert leaks == []
