"""RBAC proven with the actuator on: the chart installed with `config.actuator.enabled`, then
`vpa-fleet run` authenticated as the chart's ServiceAccount (a token of it, not the admin)
completes a full tick and rolls out a single-replica Deployment whose requests are far from
its recommendation."""

from __future__ import annotations

import datetime as dt
import subprocess
import uuid

import pytest

from recommender.kube.rest import KubeApiError, KubeClient, load_api_client
from recommender.kube.status_writer import vpa_path
from testbed.cluster import ControlPlane
from testbed.demo import DemoWorkload, start_demo
from testbed.series import container
from tests.integration.runs import run_argv
from tests.integration.test_helm import _install, _uninstall

# Uses 50m and 64Mi, asks for 1 CPU and 1Gi: outside any bound the engine gives it.
SOLO = DemoWorkload("Deployment", "rbac", "solo", 1, (container("solo", 0.05, 64, 1.0, 1024),))


def test_the_charts_service_account_ticks_and_rolls_out_with_the_actuator_on(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> None:
    admin = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    demo = start_demo(
        tmp_path_factory.mktemp("helm-actuator"),
        admin,
        (SOLO,),
        days=1,
        namespace_prefix=f"ha{uuid.uuid4().hex[:4]}-",
        end=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10),
    )
    release = _install(
        control_plane,
        tmp_path_factory.mktemp("helm-actuator-release"),
        {"config": {"actuator": {"enabled": True, "mode": "patch"}}},
        restricted=True,
    )
    try:
        [workload] = demo.workloads
        namespace = workload.namespace
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/solo"
        before = admin.get(path)
        # The token is the ServiceAccount's: it may patch Deployments, not delete pods.
        with pytest.raises(KubeApiError) as refused:
            release.kube.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/anything")
        assert refused.value.status == 403
        done = subprocess.run(
            run_argv(
                release.kubeconfig,
                demo.prometheus.url,
                [namespace],
                "--once",
                "--set",
                "history_days=1",
                "--set",
                "actuator.enabled=true",
                "--set",
                "actuator.mode=patch",
                "--set",
                "metrics.enabled=false",
            ),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-4000:]
        assert f"{namespace}/solo written: " in done.stdout
        assert "checkpointed 1 VPA(s)" in done.stdout
        assert f"actuator rollout: Deployment {namespace}/solo rolled out" in done.stdout, output
        assert "403" not in output and "Forbidden" not in output
        [entry] = admin.get(vpa_path(namespace, "solo"))["status"]["recommendation"][
            "containerRecommendations"
        ]
        after = admin.get(path)
        template = after["spec"]["template"]["spec"]["containers"][0]
        assert template["resources"]["requests"]["cpu"] == entry["target"]["cpu"]
        assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    finally:
        _uninstall(control_plane, release.name)
        demo.stop()
