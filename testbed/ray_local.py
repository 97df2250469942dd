"""A local Ray for tests and the demo, bound to loopback, bounded in CPUs and object store."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from recommender.ray_runtime import RAY_ENV, apply_ray_env
from testbed.process import TestbedError, free_port

__all__ = [
    "RAY_ENV",
    "LocalRay",
    "apply_ray_env",
    "init_local_ray",
    "ray_pids",
    "short_temp_dir",
    "shutdown_local_ray",
    "start_ray_head",
    "stop_ray_head",
]


def ray_pids(temp_dir: Path, gcs_address: str | None = None) -> list[int]:
    """PIDs of the Ray whose temporary directory is `temp_dir` (and GCS `gcs_address`): the
    processes that name either on their command line and all their descendants (agents rename
    themselves, so their command lines no longer say whose they are)."""
    parents: dict[int, int] = {}
    roots: set[int] = set()
    markers = [str(temp_dir).encode()] + ([gcs_address.encode()] if gcs_address else [])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        pid = int(proc.name)
        parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        if any(marker in cmdline for marker in markers):
            roots.add(pid)
    found = set(roots)
    changed = True
    while changed:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        changed = bool(children)
        found |= children
    return sorted(found)


@dataclass(frozen=True)
class LocalRay:
    """Where the local Ray is: its GCS address and dashboard URL (empty when disabled)."""

    address: str
    dashboard_url: str
    temp_dir: Path
    client_address: str = ""
    """`ray://host:port` where the head serves Ray Client ("" when it does not)."""


def short_temp_dir() -> Path:
    """Ray's unix sockets need a path shorter than 108 characters."""
    return Path(tempfile.mkdtemp(prefix="vfray-", dir="/tmp"))


def init_local_ray(
    *,
    num_cpus: int = 2,
    object_store_bytes: int = 256 * 1024**2,
    dashboard: bool = False,
    namespace: str = "vpa-fleet-test",
) -> LocalRay:
    """`ray.init()` a fresh local Ray in this process; `ray.shutdown()` ends it."""
    apply_ray_env()
    import ray  # noqa: PLC0415 - Ray reads its environment at import time

    temp_dir = short_temp_dir()
    context = ray.init(
        dashboard_port=free_port() if dashboard else None,
        num_cpus=num_cpus,
        object_store_memory=object_store_bytes,
        include_dashboard=dashboard,
        dashboard_host="127.0.0.1",
        log_to_driver=False,
        namespace=namespace,
        _temp_dir=str(temp_dir),
    )
    dashboard_url = f"http://{context.dashboard_url}" if context.dashboard_url else ""
    return LocalRay(
        address=str(context.address_info["gcs_address"]),
        dashboard_url=dashboard_url,
        temp_dir=temp_dir,
    )


def start_ray_head(
    *,
    num_cpus: int = 2,
    object_store_bytes: int = 256 * 1024**2,
    dashboard: bool = True,
    ray_client: bool = False,
) -> LocalRay:
    """A detached local Ray head (`ray start --head`): for `testbed up` with its dashboard,
    or serving Ray Client on a port of its own as the chart's RayCluster does."""
    temp_dir = short_temp_dir()
    port = free_port()
    args = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={num_cpus}",
        f"--object-store-memory={object_store_bytes}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    dashboard_url = client_address = ""
    if dashboard:
        dashboard_port = free_port()
        args += [
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}",
        ]
        dashboard_url = f"http://127.0.0.1:{dashboard_port}"
    else:
        args.append("--include-dashboard=false")
    if ray_client:
        client_port = free_port()
        args.append(f"--ray-client-server-port={client_port}")
        client_address = f"ray://127.0.0.1:{client_port}"
    result = subprocess.run(
        args,
        env={**os.environ, **RAY_ENV},
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    if result.returncode != 0:
        raise TestbedError(f"ray start --head failed:\n{result.stdout}\n{result.stderr}")
    return LocalRay(
        address=f"127.0.0.1:{port}",
        dashboard_url=dashboard_url,
        temp_dir=temp_dir,
        client_address=client_address,
    )


def stop_ray_head(temp_dir: Path, gcs_address: str, known_pids: list[int]) -> None:
    """Stop the Ray processes of one head started by `start_ray_head` (not other users' Ray):
    those recorded at start (`known_pids`, from `ray_pids`) and any found now."""

    def alive() -> set[int]:
        return {p for p in known_pids if Path(f"/proc/{p}").exists()} | set(
            ray_pids(temp_dir, gcs_address)
        )

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while alive() and time.monotonic() < deadline:
            time.sleep(0.2)


def shutdown_local_ray(info: LocalRay) -> None:
    """End the Ray started by `init_local_ray` and remove its temporary directory."""
    import ray  # noqa: PLC0415 - see init_local_ray

    ray.shutdown()
    shutil.rmtree(info.temp_dir, ignore_errors=True)
