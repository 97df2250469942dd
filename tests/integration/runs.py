"""`vpa-fleet run` as a process, the way the tests start it: the installed command against a
testbed API server and Prometheus, with an embedded Ray of one CPU whose dashboard takes a
free port and whose session files go to a fresh short directory (Ray's sockets need short
paths), so that several runs never collide."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from testbed.process import free_port

VPA_FLEET = Path(sys.executable).with_name("vpa-fleet")


def ray_temp_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="vfray-", dir="/tmp"))


def run_argv(
    kubeconfig: Path | str,
    prometheus_url: str,
    namespaces: Iterable[str] = (),
    *extra: str,
    cluster: str = "testbed",
    ray_temp: Path | None = None,
) -> list[str]:
    """The argv of `vpa-fleet run` for these namespaces (none: all), then `extra`."""
    return [
        str(VPA_FLEET),
        "run",
        "--kubeconfig",
        str(kubeconfig),
        "--prometheus-url",
        prometheus_url,
        "--cluster",
        cluster,
        *[arg for namespace in namespaces for arg in ("-n", namespace)],
        "--set",
        f"ray.dashboard_port={free_port()}",
        "--set",
        "ray.num_cpus=1",
        "--set",
        f"ray.temp_dir={ray_temp or ray_temp_dir()}",
        *extra,
    ]
