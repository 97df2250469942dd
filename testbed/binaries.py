"""Where the testbed's binaries live, and building them when they are missing.

Versions are pinned in `testbed/versions.env`; `testbed/build.sh` builds each component from
its Go module into `$VPA_FLEET_CACHE/bin/<component>-<version>/` (default
`~/.cache/vpa-fleet`), so that later runs start in seconds.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

from testbed.process import TestbedError, log_tail

TESTBED_DIR = Path(__file__).resolve().parent
BUILD_SCRIPT = TESTBED_DIR / "build.sh"

# component -> (version key in versions.env, files the component provides)
_COMPONENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "kube": (
        "KUBE_VERSION",
        ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"),
    ),
    "etcd": ("ETCD_VERSION", ("etcd",)),
    "kwok": ("KWOK_VERSION", ("kwok", "stages.yaml")),
    "helm": ("HELM_VERSION", ("helm",)),
    "vpa": ("VPA_VERSION", ("vpa-v1-crd-gen.yaml",)),
    "vpa-components": ("VPA_VERSION", ("updater", "admission-controller")),
    "kuberay": ("KUBERAY_VERSION", ("ray.io_rayclusters.yaml",)),
}


@functools.cache
def versions() -> dict[str, str]:
    """The pinned versions, read once from `versions.env`."""
    pinned: dict[str, str] = {}
    for raw in (TESTBED_DIR / "versions.env").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pinned[key.strip()] = value.strip()
    return pinned


def cache_dir() -> Path:
    return Path(os.environ.get("VPA_FLEET_CACHE", Path.home() / ".cache" / "vpa-fleet"))


def component_dir(component: str) -> Path:
    key, _ = _COMPONENTS[component]
    return cache_dir() / "bin" / f"{component}-{versions()[key]}"


def path(component: str, name: str) -> Path:
    """The path of one file of a component, building the component first if it is missing."""
    target = component_dir(component) / name
    if not target.exists():
        ensure(component)
    return target


def ensure(*components: str) -> None:
    """Build the missing components; raise TestbedError naming the failed one otherwise."""
    for component in components or tuple(_COMPONENTS):
        if component not in _COMPONENTS:
            raise TestbedError(f"unknown testbed component {component!r}")
        _, files = _COMPONENTS[component]
        directory = component_dir(component)
        if all((directory / f).exists() for f in files):
            continue
        result = subprocess.run(
            ["bash", str(BUILD_SCRIPT), component],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            log = cache_dir() / "logs"
            raise TestbedError(
                f"building testbed component {component!r} failed "
                f"(testbed/build.sh {component}, logs under {log}):\n"
                f"{result.stderr.strip()}\n"
                "It needs Go >= 1.25 on PATH and the Go module proxy reachable."
            )
        missing = [f for f in files if not (directory / f).exists()]
        if missing:
            raise TestbedError(
                f"testbed/build.sh {component} succeeded but {missing} are missing under "
                f"{directory}; last build log lines:\n{log_tail(cache_dir() / 'logs')}"
            )
