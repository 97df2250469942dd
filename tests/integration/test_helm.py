"""The Helm chart (helm/vpa-fleet) on the real testbed: it lints and renders, the API server
accepts what it renders (CRDs included), its pods pass the PodSecurity `restricted` profile,
and its RBAC is proven: installed for real, its ServiceAccount can do what the loop does and
is refused what it must not do, and the loop completes ticks with that ServiceAccount's token.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import subprocess
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
import yaml
from cryptography import x509

from analytics.sources.prometheus import (
    PrometheusConnection,
    PrometheusHistory,
    PrometheusSourceConfig,
    load_config,
)
from recommender.api.client import ClientError, ClientTls, InspectionClient
from recommender.api.serve import start_api
from recommender.api.server import StatusBoard
from recommender.cli import build_parser
from recommender.fleet.access import ClusterAccessError, HomeCluster, cluster_client
from recommender.fleet.actors import discover
from recommender.fleet.config import load_fleet
from recommender.fleet.plan import Shard
from recommender.kube.checkpoints import RECOMMENDER_LABEL, checkpoint_path
from recommender.kube.lease import LeaseElector
from recommender.kube.rest import JSON, JSON_PATCH, KubeApiError, KubeClient, load_api_client
from recommender.kube.status_writer import vpa_path
from recommender.loop.cluster import ClusterRecommender, LoopOptions
from recommender.settings import Settings, load_settings
from testbed import binaries
from testbed.cluster import ControlPlane
from testbed.demo import DEMO, KWOK_NODE_SELECTOR, start_demo, vpa_manifest, workload_manifest
from testbed.process import TestbedError
from tests.integration.kube_helpers import eventually, inline_kubeconfig, pod_template

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "vpa-fleet"
KUBE_VERSION = binaries.versions()["KUBE_VERSION"]
TOKEN_ENV = "VPA_FLEET_PROMETHEUS__CONNECTION__BEARER_TOKEN"

# Values of a release on the testbed: pods go to the KWOK nodes; small requests.
TESTBED_VALUES: dict[str, Any] = {
    "nodeSelector": dict(KWOK_NODE_SELECTOR),
    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
}


# --- helm and kubectl -----------------------------------------------------------------------


def _run(argv: list[str], input_text: str | None = None) -> CompletedProcess[str]:
    return subprocess.run(
        argv, input=input_text, capture_output=True, text=True, check=False, timeout=300
    )


def _helm(args: tuple[str, ...], values: Mapping[str, Any] | None) -> CompletedProcess[str]:
    argv = [str(binaries.path("helm", "helm")), *args]
    if values is None:
        return _run(argv)
    return _run([*argv, "--values", "-"], json.dumps(values))  # JSON is YAML


def helm(*args: str, values: Mapping[str, Any] | None = None) -> str:
    """Run the testbed's helm (values given on stdin); its stdout."""
    result = _helm(args, values)
    assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def helm_error(*args: str, values: Mapping[str, Any] | None = None) -> str:
    """Run helm expecting it to fail; its stderr."""
    result = _helm(args, values)
    assert result.returncode != 0, f"helm {' '.join(args)} succeeded:\n{result.stdout[:2000]}"
    return result.stderr


def render(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "rel",
    namespace: str = "vpa-fleet",
    crds: bool = False,
) -> list[JSON]:
    text = helm(
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
        *(["--include-crds"] if crds else []),
        values=values or {},
    )
    return [doc for doc in yaml.safe_load_all(text) if doc]


def only(manifests: list[JSON], kind: str) -> JSON:
    found = [m for m in manifests if m["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}(s) rendered"
    return found[0]


def can_i(plane: ControlPlane, subject: str, *args: str) -> bool:
    """`kubectl auth can-i` as `subject` (impersonated by the admin)."""
    argv = [str(binaries.path("kube", "kubectl")), "--kubeconfig", str(plane.kubeconfig)]
    result = _run([*argv, "auth", "can-i", *args, f"--as={subject}"])
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), f"can-i {args}: {answer!r} {result.stderr}"
    return answer == "yes"


# --- rendering ------------------------------------------------------------------------------


def test_helm_lint_passes_with_the_default_values_and_every_option() -> None:
    helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION)
    helm(
        "lint",
        "--strict",
        str(CHART),
        values={
            "config": {"namespaces": ["shop", "batch"], "max_allowed_memory": "16Gi"},
            "prometheus": {"bearerToken": {"secretName": "prometheus-token"}},
            "serviceMonitor": {"enabled": True},
            "networkPolicy": {"egress": {"enabled": True}},
        },
    )


def test_the_chart_renders_the_single_cluster_objects() -> None:
    manifests = render(crds=True)
    kinds = sorted(m["kind"] for m in manifests)
    crds = ["CustomResourceDefinition"] * len(list((CHART / "crds").glob("*.yaml")))
    assert kinds == sorted(
        [
            *crds,
            "ServiceAccount",
            "ConfigMap",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Service",
            "Deployment",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Secret",  # the inspection API's token
            "Secret",  # and its certificate
        ]
    )
    deployment = only(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["run", "--config", "/etc/vpa-fleet/config.yaml", "--leader-elect"]
    assert container["image"] == "vpa-fleet:0.1.0"
    # The Service's ports are the container's: the inspection API and /metrics.
    service = only(manifests, "Service")
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {
        p["name"] for p in container["ports"]
    }


def test_the_chart_and_the_package_have_one_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    with (ROOT / "pyproject.toml").open("rb") as file:
        project = tomllib.load(file)["project"]
    assert chart["appVersion"] == project["version"]


def test_the_inspection_api_is_on_by_default_with_a_token_and_tls(tmp_path: Path) -> None:
    manifests = render(release="prod", namespace="autoscaling")
    secrets = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Secret"}
    token = base64.b64decode(secrets["prod-vpa-fleet-api-token"]["data"]["token"])
    assert len(token) == 48
    tls = secrets["prod-vpa-fleet-api-tls"]
    assert tls["type"] == "kubernetes.io/tls"
    cert = x509.load_pem_x509_certificate(base64.b64decode(tls["data"]["tls.crt"]))
    ca = x509.load_pem_x509_certificate(base64.b64decode(tls["data"]["ca.crt"]))
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "prod-vpa-fleet.autoscaling.svc" in names.get_values_for_type(x509.DNSName)
    # The settings the pod loads serve the API on the Service's port with both mounted.
    config = tmp_path / "config.yaml"
    config.write_text(only(manifests, "ConfigMap")["data"]["config.yaml"])
    api = load_settings(config, env={}).api
    assert (api.enabled, api.listen) == (True, "0.0.0.0:50051")
    pod = only(manifests, "Deployment")["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v.get("secret", {}).get("secretName") for v in pod["volumes"]}
    assert str(api.token_file).startswith(mounts["api-token"])
    assert str(api.tls_cert_file).startswith(mounts["api-tls"])
    assert volumes["api-token"] == "prod-vpa-fleet-api-token"
    assert volumes["api-tls"] == "prod-vpa-fleet-api-tls"
    # Off, nothing of it is rendered and the settings say so.
    off = render({"api": {"enabled": False}}, release="prod", namespace="autoscaling")
    assert not [m for m in off if m["kind"] == "Secret"]
    config.write_text(only(off, "ConfigMap")["data"]["config.yaml"])
    assert load_settings(config, env={}).api.enabled is False


def test_the_charts_token_and_certificate_guard_a_real_api_server(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """The API started with the settings and Secrets the chart renders (only the paths and the
    port moved to this machine): TLS with the chart's CA and the token answer; no token, or
    plaintext, are refused."""
    manifests = render(release="prod", namespace="autoscaling")
    secrets = {m["metadata"]["name"]: m["data"] for m in manifests if m["kind"] == "Secret"}
    files = {
        "token": secrets["prod-vpa-fleet-api-token"]["token"],
        **secrets["prod-vpa-fleet-api-tls"],
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(base64.b64decode(data))
    config = tmp_path / "config.yaml"
    config.write_text(only(manifests, "ConfigMap")["data"]["config.yaml"])
    settings = load_settings(
        config,
        {
            "kubeconfig": str(control_plane.kubeconfig),
            "api.listen": "127.0.0.1:0",
            "api.token_file": str(tmp_path / "token"),
            "api.tls_cert_file": str(tmp_path / "tls.crt"),
            "api.tls_key_file": str(tmp_path / "tls.key"),
        },
        env={},
    )
    server = start_api(settings, StatusBoard())
    try:
        address = f"localhost:{server.port}"
        token = (tmp_path / "token").read_text()
        tls = ClientTls(tmp_path / "ca.crt")
        with InspectionClient(address, token=token, tls=tls) as client:
            client.fleet_status()
        with (
            InspectionClient(address, token="", tls=tls) as client,
            pytest.raises(ClientError, match="UNAUTHENTICATED"),
        ):
            client.fleet_status()
        with (
            InspectionClient(address, token=token) as client,
            pytest.raises(ClientError, match="UNAVAILABLE"),
        ):
            client.fleet_status()
    finally:
        server.stop(0)


def test_the_charts_crds_are_those_of_crds_dir() -> None:
    ours = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    charts = {p.name: p.read_bytes() for p in (CHART / "crds").iterdir()}
    assert ours, "crds/ holds our CRDs"
    assert charts == ours, "helm/vpa-fleet/crds/ must be a copy of crds/ (cp crds/*.yaml ...)"


# Fleet mode: two clusters, one read from the kubeconfig Secret, one in-cluster.
FLEET_VALUES: dict[str, Any] = {
    "mode": "fleet",
    "fleet": {
        "actors": 3,
        "clusters": [
            {
                "name": "eu-1",
                "prometheus": {"connection": {"url": "https://prom.eu-1:9090"}},
                "exclude": ["kube-*"],
                "max_concurrent_passes": 2,
            },
            {
                "name": "home",
                "inCluster": True,
                "prometheus": {"connection": {"url": "http://prometheus.monitoring:9090"}},
            },
        ],
        "ray": {"workers": {"replicas": 3, "objectStoreBytes": 512 * 1024**2}},
    },
}


def test_fleet_mode_renders_a_raycluster_a_driver_and_the_fleet_file(tmp_path: Path) -> None:
    helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, values=FLEET_VALUES)
    manifests = render(FLEET_VALUES, release="prod", namespace="autoscaling")
    kinds = sorted(m["kind"] for m in manifests)
    assert kinds.count("Deployment") == 1 and kinds.count("RayCluster") == 1
    # The kubeconfig Secret is read with get on its name only; the chart holds no kubeconfig.
    roles = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Role"}
    secrets_role = roles["prod-vpa-fleet-kubeconfigs"]
    assert secrets_role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["prod-vpa-fleet-kubeconfigs"],
            "verbs": ["get"],
        }
    ]
    assert sorted(m["metadata"]["name"] for m in manifests if m["kind"] == "Secret") == [
        "prod-vpa-fleet-api-tls",  # the driver serves the inspection API
        "prod-vpa-fleet-api-token",
        "prod-vpa-fleet-ray-token",
    ]
    # The fleet file loads, with the Secret's key of each cluster's name.
    data = only(manifests, "ConfigMap")["data"]
    (tmp_path / "fleet.yaml").write_text(data["fleet.yaml"])
    fleet = load_fleet(tmp_path / "fleet.yaml")
    assert (fleet.actors, [c.name for c in fleet.clusters]) == (3, ["eu-1", "home"])
    eu = fleet.cluster("eu-1")
    assert eu.kubeconfig_secret is not None
    assert (eu.kubeconfig_secret.namespace, eu.kubeconfig_secret.name) == (
        "autoscaling",
        "prod-vpa-fleet-kubeconfigs",
    )
    assert eu.kubeconfig_secret.key == "eu-1" and eu.max_concurrent_passes == 2
    home = fleet.cluster("home")
    assert home.kubeconfig is None and home.kubeconfig_secret is None  # in-cluster
    # The driver: the real command line, Ray Client to the RayCluster's head, the Lease.
    driver = only(manifests, "Deployment")["spec"]["template"]["spec"]
    container = driver["containers"][0]
    args = build_parser().parse_args(container["args"])
    assert args.fleet == Path("/etc/vpa-fleet/fleet.yaml") and args.leader_elect
    (tmp_path / "config.yaml").write_text(data["config.yaml"])
    settings = load_settings(
        tmp_path / "config.yaml", {"fleet": str(args.fleet), "leader_election.enabled": True}, {}
    )
    ray_cluster = only(manifests, "RayCluster")
    assert ray_cluster["apiVersion"] == "ray.io/v1"
    name = ray_cluster["metadata"]["name"]
    assert settings.ray.address == f"ray://{name}-head-svc.autoscaling.svc:10001"
    assert settings.leader_election.lease_namespace == "autoscaling"
    # Ray: the head holds no ShardActor; workers and their /dev/shm sized from the values.
    spec = ray_cluster["spec"]
    assert spec["rayVersion"] == "2.60.0"
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    (workers,) = spec["workerGroupSpecs"]
    assert workers["replicas"] == workers["minReplicas"] == workers["maxReplicas"] == 3
    assert workers["rayStartParams"]["object-store-memory"] == str(512 * 1024**2)
    shm = next(v for v in workers["template"]["spec"]["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": str(576 * 1024**2)}
    # One Ray token for every Ray process and the driver, from the Secret.
    for pod in (driver, spec["headGroupSpec"]["template"]["spec"], workers["template"]["spec"]):
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == (
            "prod-vpa-fleet-ray-token"
        )
        assert pod["serviceAccountName"] == "prod-vpa-fleet"
    # The Ray pods are not the driver's: its Service and NetworkPolicy leave them alone.
    selector = only(manifests, "Service")["spec"]["selector"]
    ray_labels = workers["template"]["metadata"]["labels"]
    assert not selector.items() <= ray_labels.items()


def test_fleet_mode_refuses_no_clusters_and_tokens_in_the_fleet_file() -> None:
    error = helm_error("template", "rel", str(CHART), values={"mode": "fleet"})
    assert "fleet.clusters: mode fleet needs at least one cluster" in error
    bad = json.loads(json.dumps(FLEET_VALUES))
    bad["fleet"]["clusters"][0]["prometheus"]["connection"]["bearer_token"] = "t"
    error = helm_error("template", "rel", str(CHART), values=bad)
    assert "/fleet/clusters/0/prometheus/connection" in error


def test_values_the_chart_cannot_honour_fail_rendering_naming_them() -> None:
    error = helm_error("template", "rel", str(CHART), values={"leaderElection": {"enabled": False}})
    assert "replicaCount: 2 replicas need leaderElection.enabled: true" in error
    # One replica without leader election: no --leader-elect, and no Role for Leases.
    single = render({"replicaCount": 1, "leaderElection": {"enabled": False}})
    args = only(single, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--leader-elect" not in args
    assert not [m for m in single if m["kind"] in ("Role", "PodDisruptionBudget")]
    error = helm_error(
        "template",
        "rel",
        str(CHART),
        values={"leaderElection": {"renewIntervalSeconds": 20, "leaseDurationSeconds": 15}},
    )
    assert "renewIntervalSeconds must be less than" in error


def test_the_schema_rejects_unknown_settings_and_unquoted_quantities() -> None:
    error = helm_error("template", "rel", str(CHART), values={"config": {"tick_interval": 30}})
    assert "/config" in error and "tick_interval" in error
    error = helm_error("template", "rel", str(CHART), values={"config": {"max_allowed_cpu": 4}})
    assert "/config/max_allowed_cpu" in error
    # Secrets never go into the ConfigMap.
    error = helm_error(
        "template",
        "rel",
        str(CHART),
        values={"prometheus": {"settings": {"connection": {"bearer_token": "t"}}}},
    )
    assert "bearer_token" in error
    error = helm_error("template", "rel", str(CHART), values={"mode": "both"})
    assert "/mode" in error


# Settings the chart gives itself (or, for the fleet file, that single mode never gives).
CHART_SETS = {
    "kubeconfig",
    "context",
    "prometheus",
    "leader_election",
    "ray",
    "once",
    "fleet",
    "api",
}


def test_the_schema_knows_every_setting_the_chart_leaves_to_the_user() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    config = set(schema["properties"]["config"]["properties"])
    assert config.isdisjoint(CHART_SETS)
    assert config <= set(Settings.model_fields), "the schema names no unknown setting"
    assert set(Settings.model_fields) - config <= CHART_SETS, "every setting is covered"
    prometheus = schema["properties"]["prometheus"]["properties"]["settings"]["properties"]
    assert set(prometheus) <= set(PrometheusSourceConfig.model_fields) - {"cluster", "history_s"}
    connection = set(prometheus["connection"]["properties"])
    assert connection <= set(PrometheusConnection.model_fields) - {"url", "bearer_token"}


def test_the_pod_loads_its_settings_from_the_configmap_flags_and_secret(tmp_path: Path) -> None:
    values = {
        "config": {"cluster": "prod-eu-1", "namespaces": ["shop"], "history_days": 2},
        "prometheus": {
            "url": "https://prometheus.monitoring:9090",
            "bearerToken": {"secretName": "prom", "secretKey": "token"},
            "settings": {"step_s": 30, "connection": {"timeout_s": 20}},
        },
        "ray": {"objectStoreBytes": 512 * 1024**2},
    }
    manifests = render(values, release="prod", namespace="autoscaling")
    config = tmp_path / "config.yaml"
    config.write_text(only(manifests, "ConfigMap")["data"]["config.yaml"])
    pod = only(manifests, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    # The arguments are those of the real command line.
    args = build_parser().parse_args(container["args"])
    assert args.command == "run"
    assert args.leader_elect is True
    assert args.config == Path("/etc/vpa-fleet/config.yaml")
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert args.config.parent == Path(mount["mountPath"])
    # The token comes from the Secret through the environment, never from the ConfigMap.
    token = next(e for e in container["env"] if e["name"] == TOKEN_ENV)
    assert token["valueFrom"]["secretKeyRef"] == {"name": "prom", "key": "token"}
    assert "bearer_token" not in config.read_text()
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env[TOKEN_ENV] = "s3cret"
    settings = load_settings(config, {"leader_election.enabled": args.leader_elect}, env)
    assert settings.cluster == "prod-eu-1"
    assert settings.namespaces == ("shop",)
    assert settings.prometheus is not None
    assert settings.prometheus.connection.url == "https://prometheus.monitoring:9090"
    assert settings.prometheus.connection.bearer_token is not None
    assert settings.prometheus.connection.bearer_token.get_secret_value() == "s3cret"
    assert settings.prometheus.connection.timeout_s == 20
    assert settings.prometheus.step_s == 30
    # The Lease is the one the Role grants, in the release namespace.
    election = settings.leader_election
    assert election.enabled
    role = only(manifests, "Role")
    named = next(r for r in role["rules"] if "resourceNames" in r)
    assert (election.lease_namespace, [election.lease_name]) == (
        role["metadata"]["namespace"],
        named["resourceNames"],
    )
    # Ray: embedded, in the writable /tmp, its object store fitting in /dev/shm.
    assert settings.ray.address is None
    assert settings.ray.temp_dir == Path("/tmp/ray")
    assert settings.ray.object_store_bytes == 512 * 1024**2
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["tmp"] == "/tmp" and "emptyDir" in volumes["tmp"]
    shm = volumes["dshm"]["emptyDir"]
    assert mounts["dshm"] == "/dev/shm" and shm["medium"] == "Memory"
    assert int(shm["sizeLimit"]) >= settings.ray.object_store_bytes
    assert env["HOME"].startswith("/tmp")
    # The namespaces watched are the namespaces the ClusterRole is bound in.
    bindings = [
        m for m in manifests if m["kind"] == "RoleBinding" and m["roleRef"]["kind"] != "Role"
    ]
    assert [b["metadata"]["namespace"] for b in bindings] == ["shop"]
    assert not [m for m in manifests if m["kind"] == "ClusterRoleBinding"]


def test_the_pod_spec_is_restricted_by_construction() -> None:
    pod = only(render(), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
    for volume in pod["volumes"]:
        # The kinds PodSecurity `restricted` allows (secret: the inspection API's token and TLS).
        assert set(volume) - {"name"} <= {"configMap", "emptyDir", "secret"}


def test_the_service_monitor_scrapes_the_metrics_port() -> None:
    manifests = render({"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}})
    monitor = only(manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    service = only(manifests, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )


def test_the_kubelet_probes_the_loop_beside_the_metrics() -> None:
    container = only(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["livenessProbe"]["periodSeconds"] == 30
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    for values in ({"probes": {"enabled": False}}, {"config": {"metrics": {"enabled": False}}}):
        container = only(render(values), "Deployment")["spec"]["template"]["spec"]["containers"][0]
        assert "livenessProbe" not in container and "readinessProbe" not in container, values
    timeout = {"config": {"metrics": {"liveness_timeout_s": 1800}}}
    config = yaml.safe_load(only(render(timeout), "ConfigMap")["data"]["config.yaml"])
    assert config["metrics"]["liveness_timeout_s"] == 1800
    error = helm_error(
        "template", "rel", str(CHART), values={"probes": {"liveness": {"periodSeconds": 0}}}
    )
    assert "/probes/liveness/periodSeconds" in error


# --- on the API server ----------------------------------------------------------------------


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    name = f"helm-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        control_plane.kubectl("delete", "namespace", name, "--wait=false")


def _dry_run(plane: ControlPlane, manifests: list[JSON]) -> str:
    text = yaml.safe_dump_all(manifests)
    return plane.kubectl("apply", "--dry-run=server", "-f", "-", input_text=text)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({}, id="defaults"),
        pytest.param(
            {
                "replicaCount": 3,
                "prometheus": {"bearerToken": {"secretName": "prom"}},
                "networkPolicy": {
                    "ingressFrom": [{"namespaceSelector": {"matchLabels": {"team": "sre"}}}],
                    "egress": {
                        "enabled": True,
                        "rules": [
                            {
                                "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}],
                                "ports": [{"port": 443, "protocol": "TCP"}],
                            }
                        ],
                    },
                },
                "rbac": {
                    "extraRules": [
                        {"apiGroups": ["argoproj.io"], "resources": ["rollouts"], "verbs": ["get"]}
                    ]
                },
                "image": {"digest": "sha256:" + "0" * 64},
            },
            id="every-option",
        ),
    ],
)
def test_the_api_server_accepts_every_rendered_object(
    control_plane: ControlPlane, namespace: str, values: dict[str, Any]
) -> None:
    manifests = render(values, release=namespace, namespace=namespace, crds=True)
    applied = _dry_run(control_plane, manifests)
    for manifest in manifests:
        kind, name = manifest["kind"].lower(), manifest["metadata"]["name"]
        assert any(
            line.startswith(f"{kind}.") or line.startswith(f"{kind}/")
            for line in applied.splitlines()
            if f"/{name} " in line and "(server dry run)" in line
        ), f"{kind}/{name} not in:\n{applied}"
    # A dry run persists nothing.
    kinds = "deployments,configmaps,serviceaccounts,roles,rolebindings"
    selector = "app.kubernetes.io/name=vpa-fleet"
    assert control_plane.kubectl("get", kinds, "-n", namespace, "-l", selector, "-o", "name") == ""


def test_namespaced_bindings_are_accepted_in_the_watched_namespaces(
    control_plane: ControlPlane, namespace: str
) -> None:
    manifests = render({"config": {"namespaces": [namespace]}}, namespace=namespace)
    applied = _dry_run(control_plane, manifests)
    assert "rolebinding.rbac.authorization.k8s.io/rel-vpa-fleet created (server dry run)" in (
        applied
    )


@pytest.fixture(scope="module")
def kuberay_crd(control_plane: ControlPlane) -> str:
    """KubeRay's RayCluster CRD (from the ray-operator Go module, cached by the testbed)."""
    crd = binaries.path("kuberay", "ray.io_rayclusters.yaml")
    control_plane.kubectl("apply", "--server-side", "-f", str(crd))

    def established() -> bool:
        crd = json.loads(control_plane.kubectl("get", "crd", "rayclusters.ray.io", "-o", "json"))
        conditions = crd.get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    eventually(established, 60, "the RayCluster CRD to be established")
    return "rayclusters.ray.io"


def test_the_api_server_accepts_the_fleet_mode_objects(
    control_plane: ControlPlane, namespace: str, kuberay_crd: str
) -> None:
    manifests = render(FLEET_VALUES, release=namespace, namespace=namespace, crds=True)
    applied = _dry_run(control_plane, manifests)
    for manifest in manifests:
        kind, name = manifest["kind"].lower(), manifest["metadata"]["name"]
        assert any(
            line.startswith((f"{kind}.", f"{kind}/")) and f"/{name} " in line
            for line in applied.splitlines()
            if "(server dry run)" in line
        ), f"{kind}/{name} not in:\n{applied}"
    # The schema of the CRD is enforced: a RayCluster without a head is refused.
    broken = json.loads(json.dumps(only(manifests, "RayCluster")))
    del broken["spec"]["headGroupSpec"]
    with pytest.raises(TestbedError, match="headGroupSpec"):
        _dry_run(control_plane, [broken])


def test_the_ray_pods_pass_podsecurity_restricted(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    control_plane.kubectl("create", "serviceaccount", "rel-vpa-fleet", "-n", namespace)
    ray_cluster = only(render(FLEET_VALUES, namespace=namespace), "RayCluster")["spec"]
    templates = [ray_cluster["headGroupSpec"]["template"]]
    templates += [group["template"] for group in ray_cluster["workerGroupSpecs"]]
    pods = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {**t["metadata"], "name": f"ray-probe-{i}", "namespace": namespace},
            "spec": t["spec"],
        }
        for i, t in enumerate(templates)
    ]
    applied = _dry_run(control_plane, pods)
    assert applied.count("created (server dry run)") == 2, applied


def _pod_from_template(manifests: list[JSON], namespace: str) -> JSON:
    template = only(manifests, "Deployment")["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**template["metadata"], "name": "restricted-probe", "namespace": namespace},
        "spec": template["spec"],
    }


# --- a real release, and its ServiceAccount -------------------------------------------------


@dataclass
class Release:
    name: str
    namespace: str
    service_account: str
    lease: str
    kube: KubeClient
    """Authenticated with a token of the release's ServiceAccount (TokenRequest API)."""
    kubeconfig: Path

    @property
    def subject(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def _service_account_kubeconfig(plane: ControlPlane, namespace: str, name: str, path: Path) -> Path:
    token = plane.kubectl("create", "token", name, "-n", namespace, "--duration=1h").strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "testbed",
                "cluster": {
                    "server": plane.server,
                    "certificate-authority": str(plane.pki.ca_cert),
                },
            }
        ],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "testbed", "user": name}}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _install(
    plane: ControlPlane, workdir: Path, values: Mapping[str, Any], *, restricted: bool
) -> Release:
    """`helm install` for real in a fresh namespace (labelled to enforce PodSecurity
    `restricted` when asked); returns once the Deployment's pods are Ready on KWOK nodes."""
    name = f"vf-{uuid.uuid4().hex[:6]}"
    values = {**TESTBED_VALUES, **values}
    manifests = render(values, release=name, namespace=name)
    plane.kubectl("create", "namespace", name)
    try:
        if restricted:
            plane.kubectl(
                "label",
                "namespace",
                name,
                "pod-security.kubernetes.io/enforce=restricted",
                "pod-security.kubernetes.io/enforce-version=latest",
            )
        kubeconfig = ["--kubeconfig", str(plane.kubeconfig), "--namespace", name]
        helm("install", name, str(CHART), *kubeconfig, values=values)
        # A pod of the template is admitted, or refused naming the PodSecurity rule, at once
        # (the ReplicaSet would only retry).
        pod = json.dumps(_pod_from_template(manifests, name))
        plane.kubectl("apply", "--dry-run=server", "-f", "-", input_text=pod)
        deployment = only(manifests, "Deployment")["metadata"]["name"]
        plane.kubectl("rollout", "status", f"deployment/{deployment}", "-n", name, "--timeout=120s")
    except BaseException:
        _uninstall(plane, name)
        raise
    account = only(manifests, "ServiceAccount")["metadata"]["name"]
    lease = next(r for r in only(manifests, "Role")["rules"] if "resourceNames" in r)
    path = _service_account_kubeconfig(plane, name, account, workdir / f"{name}.kubeconfig")
    return Release(
        name,
        name,
        account,
        lease["resourceNames"][0],
        KubeClient(load_api_client(str(path))),
        path,
    )


def _uninstall(plane: ControlPlane, name: str) -> None:
    """Uninstall the release `name` (if installed) and delete its namespace."""
    argv = [str(binaries.path("helm", "helm")), "uninstall", name, "--ignore-not-found"]
    _run([*argv, "--kubeconfig", str(plane.kubeconfig), "--namespace", name])
    plane.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false")


@pytest.fixture(scope="module")
def release(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    installed = _install(control_plane, tmp_path_factory.mktemp("helm"), {}, restricted=True)
    try:
        yield installed
    finally:
        _uninstall(control_plane, installed.name)


@dataclass
class Apps:
    """A namespace of workloads the recommender serves, with a Secret it must not read."""

    namespace: str
    vpa: str
    deployment: str
    pod: str
    secret: str


@pytest.fixture(scope="module")
def apps(control_plane: ControlPlane) -> Iterator[Apps]:
    namespace = f"apps-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", namespace)
    objects = [
        workload_manifest(
            "Deployment", "web", pod_template("web"), replicas=1, namespace=namespace
        ),
        vpa_manifest(namespace, "web", "Deployment"),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db", "namespace": namespace},
            "stringData": {"password": "hunter2"},
        },
    ]
    control_plane.kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(objects))

    def running_pod() -> str | None:
        pods = json.loads(
            control_plane.kubectl("get", "pods", "-n", namespace, "-l", "app=web", "-o", "json")
        )["items"]
        names = [p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Running"]
        return names[0] if names else None

    pod = eventually(running_pod, 60, "a Running pod of web")
    try:
        yield Apps(namespace, "web", "web", pod, "db")
    finally:
        control_plane.kubectl("delete", "namespace", namespace, "--wait=false")


def test_helm_install_runs_the_pods_in_a_namespace_enforcing_restricted(
    control_plane: ControlPlane, release: Release
) -> None:
    # Installed and rolled out: the ReplicaSet's pods were admitted under `restricted`.
    ready = control_plane.kubectl(
        "get",
        "deployment",
        "-n",
        release.namespace,
        "-l",
        f"app.kubernetes.io/instance={release.name}",
        "-o",
        "jsonpath={.items[0].status.readyReplicas}",
    )
    assert ready == "2"
    labels = json.loads(control_plane.kubectl("get", "namespace", release.namespace, "-o", "json"))
    assert labels["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_podsecurity_restricted_refuses_the_same_pod_made_privileged(
    control_plane: ControlPlane, release: Release
) -> None:
    manifests = render(TESTBED_VALUES, release=release.name, namespace=release.namespace)
    pod = _pod_from_template(manifests, release.namespace)
    accepted = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", input_text=json.dumps(pod)
    )
    assert "pod/restricted-probe created (server dry run)" in accepted
    pod["spec"]["containers"][0]["securityContext"] = {"allowPrivilegeEscalation": True}
    argv = [str(binaries.path("kube", "kubectl")), "--kubeconfig", str(control_plane.kubeconfig)]
    refused = _run([*argv, "apply", "--dry-run=server", "-f", "-"], json.dumps(pod))
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr
    assert "allowPrivilegeEscalation != false" in refused.stderr


# (verb, resource, flags): what the loop does, each of which the ServiceAccount may do.
ALLOWED = [
    ("list", "verticalpodautoscalers.autoscaling.k8s.io", ["--all-namespaces"]),
    ("watch", "verticalpodautoscalers.autoscaling.k8s.io", ["--all-namespaces"]),
    (
        "patch",
        "verticalpodautoscalers.autoscaling.k8s.io",
        ["--subresource=status", "-n", "{apps}"],
    ),
    ("list", "pods", ["--all-namespaces"]),
    ("watch", "pods", ["--all-namespaces"]),
    *[
        (verb, kind, ["-n", "{apps}"])
        for verb in ("get", "list")
        for kind in (
            "deployments.apps",
            "statefulsets.apps",
            "daemonsets.apps",
            "replicasets.apps",
            "replicationcontrollers",
            "jobs.batch",
            "cronjobs.batch",
        )
    ],
    ("get", "deployments.apps", ["--subresource=scale", "-n", "{apps}"]),
    ("get", "rollouts.argoproj.io", ["--subresource=scale", "-n", "{apps}"]),
    *[
        (verb, "recommendercheckpoints.vpa-fleet.io", ["-n", "{apps}"])
        for verb in ("get", "list", "create", "update", "delete")
    ],
    ("list", "recommendercheckpoints.vpa-fleet.io", ["--all-namespaces"]),
    ("list", "recommenderpolicies.vpa-fleet.io", ["--all-namespaces"]),
    ("create", "events", ["-n", "{apps}"]),
    ("patch", "events", ["-n", "{apps}"]),
    ("watch", "recommenderpolicies.vpa-fleet.io", ["--all-namespaces"]),
    ("patch", "recommenderpolicies.vpa-fleet.io", ["--subresource=status", "-n", "{apps}"]),
    ("create", "leases.coordination.k8s.io", ["-n", "{release}"]),
    ("get", "leases.coordination.k8s.io/{lease}", ["-n", "{release}"]),
    ("update", "leases.coordination.k8s.io/{lease}", ["-n", "{release}"]),
]

# What it must not do: write pods or workloads, read Secrets anywhere, change VPA specs, take
# other Leases, anything the loop does not need.
REFUSED = [
    ("delete", "pods", ["-n", "{apps}"]),
    ("create", "pods", ["-n", "{apps}"]),
    ("patch", "pods", ["-n", "{apps}"]),
    ("patch", "pods", ["--subresource=resize", "-n", "{apps}"]),
    ("create", "pods", ["--subresource=eviction", "-n", "{apps}"]),
    ("get", "pods", ["-n", "{apps}"]),
    ("get", "secrets", ["-n", "{apps}"]),
    ("list", "secrets", ["--all-namespaces"]),
    ("get", "secrets", ["-n", "{release}"]),
    ("get", "configmaps", ["-n", "{apps}"]),
    ("patch", "deployments.apps", ["-n", "{apps}"]),
    ("update", "deployments.apps", ["--subresource=scale", "-n", "{apps}"]),
    ("watch", "deployments.apps", ["-n", "{apps}"]),
    ("delete", "jobs.batch", ["-n", "{apps}"]),
    ("get", "verticalpodautoscalers.autoscaling.k8s.io", ["-n", "{apps}"]),
    ("update", "verticalpodautoscalers.autoscaling.k8s.io", ["-n", "{apps}"]),
    ("patch", "verticalpodautoscalers.autoscaling.k8s.io", ["-n", "{apps}"]),
    ("create", "verticalpodautoscalers.autoscaling.k8s.io", ["-n", "{apps}"]),
    ("delete", "verticalpodautoscalers.autoscaling.k8s.io", ["-n", "{apps}"]),
    (
        "update",
        "verticalpodautoscalers.autoscaling.k8s.io",
        ["--subresource=status", "-n", "{apps}"],
    ),
    ("watch", "recommendercheckpoints.vpa-fleet.io", ["-n", "{apps}"]),
    ("patch", "recommendercheckpoints.vpa-fleet.io", ["-n", "{apps}"]),
    ("deletecollection", "recommendercheckpoints.vpa-fleet.io", ["-n", "{apps}"]),
    ("create", "recommenderpolicies.vpa-fleet.io", ["-n", "{apps}"]),
    ("patch", "recommenderpolicies.vpa-fleet.io", ["-n", "{apps}"]),
    ("delete", "recommenderpolicies.vpa-fleet.io", ["-n", "{apps}"]),
    ("get", "leases.coordination.k8s.io/other", ["-n", "{release}"]),
    ("update", "leases.coordination.k8s.io/other", ["-n", "{release}"]),
    ("delete", "leases.coordination.k8s.io/{lease}", ["-n", "{release}"]),
    ("list", "leases.coordination.k8s.io", ["-n", "{release}"]),
    ("create", "leases.coordination.k8s.io", ["-n", "{apps}"]),
    ("list", "nodes", []),
    ("create", "serviceaccounts/token", ["-n", "{release}"]),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", []),
    ("impersonate", "serviceaccounts", ["-n", "{release}"]),
]


def _filled(words: list[str], release: Release, apps: Apps) -> list[str]:
    return [
        w.format(apps=apps.namespace, release=release.namespace, lease=release.lease) for w in words
    ]


def test_auth_can_i_allows_exactly_what_the_loop_needs(
    control_plane: ControlPlane, release: Release, apps: Apps
) -> None:
    def allowed(verb: str, resource: str, flags: list[str]) -> bool:
        return can_i(
            control_plane, release.subject, verb, *_filled([resource, *flags], release, apps)
        )

    refused = [(v, r, " ".join(f)) for v, r, f in ALLOWED if not allowed(v, r, f)]
    granted = [(v, r, " ".join(f)) for v, r, f in REFUSED if allowed(v, r, f)]
    assert (refused, granted) == ([], []), f"refused: {refused}; allowed: {granted}"


def _forbidden(call: Any) -> KubeApiError:
    with pytest.raises(KubeApiError) as error:
        call()
    assert error.value.status == 403, error.value
    return error.value


def test_its_token_reads_what_the_loop_reads(release: Release, apps: Apps) -> None:
    kube = release.kube
    vpas, version = kube.list_all("/apis/autoscaling.k8s.io/v1/verticalpodautoscalers")
    assert (apps.namespace, apps.vpa) in {
        (v["metadata"]["namespace"], v["metadata"]["name"]) for v in vpas
    }
    pods, pods_version = kube.list_all("/api/v1/pods")
    assert (apps.namespace, apps.pod) in {
        (p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods
    }
    # Watches open and end when the server closes them.
    list(kube.watch("/apis/autoscaling.k8s.io/v1/verticalpodautoscalers", version, timeout_s=1))
    list(kube.watch("/api/v1/pods", pods_version, timeout_s=1))
    deployments = f"/apis/apps/v1/namespaces/{apps.namespace}/deployments"
    assert kube.get(f"{deployments}/{apps.deployment}")["metadata"]["name"] == apps.deployment
    assert kube.list_all(deployments)[0]
    scale = kube.get(f"{deployments}/{apps.deployment}/scale")
    assert scale["status"]["selector"] == "app=web"
    assert kube.get("/apis/apps/v1")["kind"] == "APIResourceList"  # discovery


def test_its_token_writes_vpa_status_and_nothing_else_of_the_vpa(
    control_plane: ControlPlane, release: Release, apps: Apps
) -> None:
    path = vpa_path(apps.namespace, apps.vpa)
    status = {
        "recommendation": {
            "containerRecommendations": [
                {"containerName": "app", "target": {"cpu": "120m", "memory": "150Mi"}}
            ]
        }
    }
    patch = [{"op": "add", "path": "/status", "value": status}]
    release.kube.request("PATCH", f"{path}/status", body=patch, content_type=JSON_PATCH)
    written = json.loads(
        control_plane.kubectl("get", "vpa", apps.vpa, "-n", apps.namespace, "-o", "json")
    )
    assert written["status"] == status
    spec_patch = [{"op": "replace", "path": "/spec/updatePolicy/updateMode", "value": "Off"}]
    _forbidden(
        lambda: release.kube.request("PATCH", path, body=spec_patch, content_type=JSON_PATCH)
    )


def test_its_token_creates_reads_replaces_lists_and_deletes_checkpoints(
    release: Release, apps: Apps
) -> None:
    kube = release.kube
    body = {
        "apiVersion": "vpa-fleet.io/v1alpha1",
        "kind": "RecommenderCheckpoint",
        "metadata": {
            "name": apps.vpa,
            "namespace": apps.namespace,
            "labels": {RECOMMENDER_LABEL: "vpa-fleet"},
        },
        "spec": {
            "vpaName": apps.vpa,
            "recommender": "vpa-fleet",
            "historyEnd": "2026-01-01T00:00:00.000000Z",
            "formatVersion": 1,
        },
    }
    created = kube.request("POST", checkpoint_path(apps.namespace), body=body)
    path = checkpoint_path(apps.namespace, apps.vpa)
    read = kube.get(path)
    assert read["metadata"]["uid"] == created["metadata"]["uid"]
    read["spec"]["historyEnd"] = "2026-01-02T00:00:00.000000Z"
    kube.request("PUT", path, body=read)
    listed, _ = kube.list_all(checkpoint_path(), labelSelector=f"{RECOMMENDER_LABEL}=vpa-fleet")
    assert (apps.namespace, apps.vpa) in {
        (c["metadata"]["namespace"], c["metadata"]["name"]) for c in listed
    }
    kube.request("DELETE", path)
    with pytest.raises(KubeApiError) as gone:
        kube.get(path)
    assert gone.value.not_found


def test_its_token_holds_its_lease_and_no_other(release: Release, apps: Apps) -> None:
    elector = LeaseElector(release.kube, release.namespace, release.lease, "replica-a", 15)
    assert elector.try_acquire_or_renew()  # create
    assert elector.try_acquire_or_renew()  # get, update
    assert elector.holder() == "replica-a"
    elector.release()
    assert elector.holder() is None
    _forbidden(LeaseElector(release.kube, release.namespace, "other", "x").try_acquire_or_renew)
    _forbidden(LeaseElector(release.kube, apps.namespace, release.lease, "x").try_acquire_or_renew)


def test_its_token_is_refused_pod_deletion_secrets_and_workload_writes(
    release: Release, apps: Apps
) -> None:
    kube = release.kube
    error = _forbidden(
        lambda: kube.request("DELETE", f"/api/v1/namespaces/{apps.namespace}/pods/{apps.pod}")
    )
    assert release.subject in error.message
    _forbidden(lambda: kube.get(f"/api/v1/namespaces/{apps.namespace}/secrets/{apps.secret}"))
    _forbidden(lambda: kube.get(f"/api/v1/namespaces/{release.namespace}/secrets"))
    _forbidden(lambda: kube.get("/api/v1/secrets"))
    scale = [{"op": "replace", "path": "/spec/replicas", "value": 0}]
    deployment = f"/apis/apps/v1/namespaces/{apps.namespace}/deployments/{apps.deployment}"
    _forbidden(lambda: kube.request("PATCH", deployment, body=scale, content_type=JSON_PATCH))
    _forbidden(lambda: kube.request("DELETE", deployment))


# --- the loop as the ServiceAccount ---------------------------------------------------------


def test_the_loop_ticks_and_checkpoints_with_the_charts_service_accounts(
    control_plane: ControlPlane, release: Release, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A release watching only the demo's namespaces (RoleBindings there, nothing
    cluster-wide) bootstraps them: every VPA of ours written, checkpoints saved and a stale one
    collected. Then the cluster-wide release restarts from those checkpoints."""
    admin = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with contextlib.ExitStack() as cleanup:
        demo = start_demo(
            tmp_path_factory.mktemp("helm-demo"),
            admin,
            DEMO,
            days=1,
            namespace_prefix=f"h{uuid.uuid4().hex[:4]}-",
            end=now - dt.timedelta(minutes=10),
        )
        cleanup.callback(demo.stop)
        namespaces = tuple(sorted({w.namespace for w in demo.workloads}))
        for namespace in namespaces:
            cleanup.callback(
                control_plane.kubectl, "delete", "namespace", namespace, "--wait=false"
            )
        ours = sorted(
            f"{w.namespace}/{w.name}"
            for w in demo.workloads
            if w.vpa is not None and w.vpa.recommender == "vpa-fleet"
        )
        scoped = _install(
            control_plane,
            tmp_path_factory.mktemp("helm-scoped"),
            {"config": {"namespaces": list(namespaces)}},
            restricted=True,
        )
        cleanup.callback(_uninstall, control_plane, scoped.name)
        # Nothing cluster-wide: not even listing VPAs.
        _forbidden(lambda: scoped.kube.get("/apis/autoscaling.k8s.io/v1/verticalpodautoscalers"))
        # A checkpoint of a VPA that no longer exists: the loop deletes it.
        stale = {
            "apiVersion": "vpa-fleet.io/v1alpha1",
            "kind": "RecommenderCheckpoint",
            "metadata": {
                "name": "gone",
                "namespace": namespaces[0],
                "labels": {RECOMMENDER_LABEL: "vpa-fleet"},
            },
            "spec": {
                "vpaName": "gone",
                "vpaUID": str(uuid.uuid4()),
                "recommender": "vpa-fleet",
                "historyEnd": "2026-01-01T00:00:00.000000Z",
                "formatVersion": 1,
            },
        }
        admin.request("POST", checkpoint_path(namespaces[0]), body=stale)
        config = load_config({"connection": {"url": demo.prometheus.url}, "cluster": "testbed"})
        options = LoopOptions(
            cluster="testbed", namespaces=namespaces, history=dt.timedelta(days=1)
        )

        first = ClusterRecommender(
            scoped.kube, PrometheusHistory(config), options, clock=lambda: now
        )
        first.start()
        try:
            report = first.tick()
            saved = first.checkpoint()
        finally:
            first.stop()
        assert report.errors == []
        assert sorted(r.key for r in report.results if r.outcome == "written") == ours
        assert saved == len(ours)
        listed, _ = admin.list_all(checkpoint_path(namespaces[0]))
        assert "gone" not in {c["metadata"]["name"] for c in listed}
        for key in ours:
            namespace, name = key.split("/")
            vpa = admin.get(vpa_path(namespace, name))
            conditions = {c["type"]: c["status"] for c in vpa["status"]["conditions"]}
            assert conditions == {"RecommendationProvided": "True"}, key

        # The cluster-wide release goes on from those checkpoints two minutes later.
        later = now + dt.timedelta(minutes=2)
        second = ClusterRecommender(
            release.kube, PrometheusHistory(config), options, clock=lambda: later
        )
        second.start()
        try:
            restored = sorted(f"{namespace}/{name}" for namespace, name in second.history_end)
            again = second.tick()
        finally:
            second.stop()
        assert restored == ours
        assert again.errors == []
        assert {r.outcome for r in again.results} == {"unchanged"}


def test_fleet_mode_installs_and_reads_only_its_kubeconfig_secret(
    control_plane: ControlPlane, kuberay_crd: str, apps: Apps, tmp_path: Path
) -> None:
    """A fleet-mode release for real: the driver's pods run under PodSecurity `restricted`,
    the RayCluster is stored, and its ServiceAccount gets the member cluster's kubeconfig from
    the Secret (and no other Secret) and lists that cluster's VPAs with it."""
    name = f"vff-{uuid.uuid4().hex[:6]}"
    values = {**TESTBED_VALUES, **FLEET_VALUES}
    kubeconfigs = f"{name}-vpa-fleet-kubeconfigs"
    control_plane.kubectl("create", "namespace", name)
    try:
        control_plane.kubectl(
            "label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted"
        )
        objects = [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": kubeconfigs, "namespace": name},
                "stringData": {"eu-1": inline_kubeconfig(control_plane)},
            },
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "unrelated", "namespace": name},
                "stringData": {"password": "hunter2"},
            },
        ]
        control_plane.kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(objects))
        kubeconfig = ["--kubeconfig", str(control_plane.kubeconfig), "--namespace", name]
        helm("install", name, str(CHART), *kubeconfig, values=values)
        control_plane.kubectl(
            "rollout", "status", f"deployment/{name}-vpa-fleet", "-n", name, "--timeout=120s"
        )
        stored = json.loads(control_plane.kubectl("get", "rayclusters", "-n", name, "-o", "json"))
        assert [r["metadata"]["name"] for r in stored["items"]] == [f"{name}-vpa-fleet-ray"]
        account = f"system:serviceaccount:{name}:{name}-vpa-fleet"
        assert can_i(control_plane, account, "get", f"secret/{kubeconfigs}", "-n", name)
        assert not can_i(control_plane, account, "get", "secret/unrelated", "-n", name)
        assert not can_i(control_plane, account, "list", "secrets", "-n", name)
        assert not can_i(
            control_plane, account, "get", f"secret/{apps.secret}", "-n", apps.namespace
        )
        # The actors' way in, with the ServiceAccount's token as the home cluster's identity.
        token_config = _service_account_kubeconfig(
            control_plane, name, f"{name}-vpa-fleet", tmp_path / "sa.kubeconfig"
        )
        configmap = control_plane.kubectl(
            "get", "configmap", f"{name}-vpa-fleet", "-n", name, "-o", "json"
        )
        (tmp_path / "fleet.yaml").write_text(json.loads(configmap)["data"]["fleet.yaml"])
        fleet = load_fleet(tmp_path / "fleet.yaml")
        home = HomeCluster(str(token_config))
        member = cluster_client(fleet.cluster("eu-1"), home)
        assert Shard("eu-1", apps.namespace) in discover(fleet.cluster("eu-1"), member, "vpa-fleet")
        # A key the Secret does not have: named, with the keys it has, never their values.
        eu = fleet.cluster("eu-1")
        assert eu.kubeconfig_secret is not None
        ref = eu.kubeconfig_secret.model_copy(update={"key": "us-1"})
        missing = eu.model_copy(update={"name": "us-1", "kubeconfig_secret": ref})
        with pytest.raises(ClusterAccessError) as error:
            cluster_client(missing, home)
        assert f"cluster us-1: kubeconfig_secret {name}/{kubeconfigs} key 'us-1'" in str(
            error.value
        )
        assert "the Secret has no such key (its keys: ['eu-1'])" in str(error.value)
        assert "BEGIN" not in str(error.value)
    finally:
        _uninstall(control_plane, name)
