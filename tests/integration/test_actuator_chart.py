"""The actuator in the Helm chart: its settings section passes the schema and reaches the
recommender's settings file; its RBAC is rendered only when it is enabled, and the API server
grants exactly what the actuator does with it (checked with `kubectl auth can-i` against the
rendered ClusterRole)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from recommender.kube.rest import KubeClient, load_api_client
from recommender.settings import load_settings
from testbed.cluster import ControlPlane
from tests.integration.test_helm import CHART, can_i, helm, helm_error, only, render

ENABLED: dict[str, Any] = {"config": {"actuator": {"enabled": True, "mode": "restart-annotation"}}}


def _rules(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = only(render(values), "ClusterRole")["rules"]
    return rules


def test_actuator_rbac_only_when_enabled() -> None:
    def grants(rules: list[dict[str, Any]], resource: str, verb: str) -> bool:
        return any(resource in r["resources"] and verb in r["verbs"] for r in rules)

    default = _rules()
    assert not grants(default, "deployments", "patch")
    assert not grants(default, "poddisruptionbudgets", "list")
    assert grants(default, "events", "create"), "the recommender's own Events"
    enabled = _rules(ENABLED)
    for resource, verb in [
        ("deployments", "patch"),
        ("statefulsets", "patch"),
        ("poddisruptionbudgets", "list"),
        ("leases", "get"),
        ("events", "create"),
        ("events", "patch"),
    ]:
        assert grants(enabled, resource, verb), (resource, verb)
    assert not grants(enabled, "pods", "delete") and not grants(enabled, "pods/eviction", "create")


def test_actuator_settings_reach_the_recommender(tmp_path: Path) -> None:
    helm("lint", "--strict", str(CHART), values=ENABLED)
    config = tmp_path / "config.yaml"
    config.write_text(only(render(ENABLED), "ConfigMap")["data"]["config.yaml"])
    settings = load_settings(config, env={})
    assert settings.actuator.enabled is True
    assert settings.actuator.mode == "restart-annotation"


def test_the_schema_checks_the_actuator_section() -> None:
    bad_mode = {"config": {"actuator": {"mode": "evict"}}}
    assert "/config/actuator/mode" in helm_error("template", "rel", str(CHART), values=bad_mode)
    unknown = {"config": {"actuator": {"max_rollouts": 3}}}
    error = helm_error("template", "rel", str(CHART), values=unknown)
    assert "/config/actuator" in error and "max_rollouts" in error


def test_the_api_server_grants_what_the_actuator_does(control_plane: ControlPlane) -> None:
    kube = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    role = only(render(ENABLED), "ClusterRole")
    name = f"actuator-rbac-{uuid.uuid4().hex[:6]}"
    role["metadata"] = {"name": name}
    kube.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", body=role)
    subject = f"system:serviceaccount:default:{name}"
    kube.request(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        body={
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [{"kind": "ServiceAccount", "namespace": "default", "name": name}],
        },
    )
    try:
        for args in [
            ("patch", "deployments.apps", "-n", "shop"),
            ("patch", "statefulsets.apps", "-n", "shop"),
            ("get", "replicasets.apps", "-n", "shop"),
            ("list", "poddisruptionbudgets.policy", "-n", "shop"),
            ("create", "events", "-n", "shop"),
            ("patch", "events", "-n", "shop"),
            ("get", "leases.coordination.k8s.io/vpa-admission-controller", "-n", "kube-system"),
        ]:
            assert can_i(control_plane, subject, *args), args
        for args in [
            ("delete", "pods", "-n", "shop"),
            ("create", "pods/eviction", "-n", "shop"),
            ("get", "leases.coordination.k8s.io/other", "-n", "kube-system"),
            ("delete", "deployments.apps", "-n", "shop"),
        ]:
            assert not can_i(control_plane, subject, *args), args
    finally:
        for kind in ("clusterrolebindings", "clusterroles"):
            kube.request("DELETE", f"/apis/rbac.authorization.k8s.io/v1/{kind}/{name}")
