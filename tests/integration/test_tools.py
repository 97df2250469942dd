"""kubectl and helm from the testbed know Kubernetes 1.35 and work against its API server."""

from __future__ import annotations

import subprocess
from pathlib import Path

from testbed import binaries
from testbed.cluster import ControlPlane


def _run(*argv: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, check=False, cwd=cwd, timeout=120
    )
    assert result.returncode == 0, f"{argv} failed: {result.stderr}"
    return result.stdout


def test_helm_renders_a_chart_that_the_api_server_accepts(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    helm = binaries.path("helm", "helm")
    assert 'Version:"v3.21.4"' in _run(helm, "version")
    _run(helm, "create", "demo", cwd=tmp_path)
    _run(helm, "lint", tmp_path / "demo")
    manifests = _run(helm, "template", "demo", tmp_path / "demo", "--kube-version", "1.35.4")
    applied = control_plane.kubectl(
        "apply", "--dry-run=server", "-n", "default", "-f", "-", input_text=manifests
    )
    assert "deployment.apps/demo created (server dry run)" in applied
    assert "service/demo created (server dry run)" in applied
    # A dry run persists nothing.
    assert "demo" not in control_plane.kubectl("get", "deployments", "-n", "default", "-o", "name")


def test_kubectl_is_the_pinned_release_and_knows_resize(control_plane: ControlPlane) -> None:
    version = control_plane.kubectl("version", "--client", "-o", "json")
    assert '"gitVersion": "v1.35.4"' in version
    assert "--subresource" in control_plane.kubectl("patch", "--help")
