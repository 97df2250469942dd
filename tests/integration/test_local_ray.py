"""The testbed's local Ray: real actors, bounded resources, loopback-only sockets."""

from __future__ import annotations

import os
import re
import subprocess

import ray

from testbed.ray_local import LocalRay, ray_pids


@ray.remote(num_cpus=0, max_restarts=1)
class _Counter:
    def __init__(self) -> None:
        self.total = 0

    def add(self, amount: int) -> int:
        self.total += amount
        return self.total


def test_actor_keeps_state_across_calls(local_ray: LocalRay) -> None:
    counter = _Counter.remote()  # type: ignore[attr-defined]
    assert ray.get([counter.add.remote(i) for i in range(1, 5)])[-1] == 10
    ray.kill(counter)


def test_resources_are_bounded(local_ray: LocalRay) -> None:
    resources = ray.cluster_resources()
    assert resources["CPU"] == 2
    assert resources["object_store_memory"] <= 256 * 1024**2


def test_ray_listens_on_loopback_only(local_ray: LocalRay) -> None:
    ours = {*ray_pids(local_ray.temp_dir), os.getpid()}
    sockets = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    ray_sockets = [
        line.split()[3]
        for line in sockets.splitlines()
        if {int(pid) for pid in re.findall(r"pid=(\d+)", line)} & ours
    ]
    assert ray_sockets, "no Ray listener found"
    exposed = [a for a in ray_sockets if not a.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:"))]
    assert not exposed, f"Ray listens beyond loopback: {exposed}"
