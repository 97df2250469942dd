"""The product's Ray: an embedded local Ray on loopback that stops cleanly, a connection to an
existing Ray, and a bounded, named failure for an address where no Ray answers.

The embedded Ray starts in a child process: the session's `local_ray` fixture may already hold
a Ray in the test process, and a process holds one Ray at a time.
"""

from __future__ import annotations

import json
import os
import queue
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from recommender.ray_runtime import RayStartError, dashboard_headers, start_ray
from recommender.settings import RaySettings
from testbed.process import free_port
from testbed.ray_local import ray_pids, short_temp_dir

ROOT = Path(__file__).resolve().parents[2]

# argv: temp dir, dashboard port. Prints what it started, waits for a line on stdin, stops,
# and prints which of its Ray processes are still alive.
EMBEDDED = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path

    from recommender.ray_runtime import start_ray, stop_ray
    from recommender.settings import RaySettings
    from testbed.ray_local import ray_pids

    temp_dir, port = Path(sys.argv[1]), int(sys.argv[2])
    runtime = start_ray(
        RaySettings(
            num_cpus=1,
            object_store_bytes=80 * 1024**2,
            dashboard_port=port,
            temp_dir=temp_dir,
            namespace="runtime-test",
        )
    )
    import ray

    @ray.remote(num_cpus=0)
    def square(x):
        return x * x

    print(json.dumps({
        "address": runtime.address,
        "dashboard_url": runtime.dashboard_url,
        "embedded": runtime.embedded,
        "square": ray.get(square.remote(7)),
        "namespace": ray.get_runtime_context().namespace,
        "pids": [p for p in ray_pids(temp_dir) if p != os.getpid()],
    }), flush=True)
    sys.stdin.readline()
    pids = [p for p in ray_pids(temp_dir) if p != os.getpid()]
    stop_ray(runtime)

    def alive(pid):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"

    deadline = time.monotonic() + 15
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    print(json.dumps({"alive": [p for p in pids if alive(p)]}), flush=True)
    """
)

# argv: address. Connects to an existing Ray, runs a task, disconnects.
CONNECT = textwrap.dedent(
    """
    import json, sys
    from recommender.ray_runtime import start_ray, stop_ray
    from recommender.settings import RaySettings

    runtime = start_ray(
        RaySettings(address=sys.argv[1], namespace="runtime-test", connect_timeout_s=20)
    )
    import ray

    @ray.remote(num_cpus=0)
    def add(a, b):
        return a + b

    print(json.dumps({
        "address": runtime.address,
        "embedded": runtime.embedded,
        "dashboard_url": runtime.dashboard_url,
        "sum": ray.get(add.remote(2, 3)),
    }), flush=True)
    stop_ray(runtime)
    """
)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def listening_addresses(pids: set[int]) -> list[str]:
    """Local addresses of the TCP listeners owned by these processes."""
    sockets = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return [
        line.split()[3]
        for line in sockets.splitlines()
        if {int(pid) for pid in re.findall(r"pid=(\d+)", line)} & pids
    ]


class Child:
    """A Python child process whose stdout lines arrive on a queue (reads never block the
    test past their timeout)."""

    def __init__(self, script: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        threading.Thread(target=self._pump, args=(self.process.stdout, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.process.stderr, False), daemon=True).start()

    def _pump(self, stream: Iterator[str], to_queue: bool) -> None:
        for line in stream:
            if to_queue:
                self.lines.put(line)
            else:
                self.stderr.append(line)

    def read_json(self, timeout_s: float) -> dict[str, object]:
        try:
            line = self.lines.get(timeout=timeout_s)
        except queue.Empty:
            pytest.fail(f"no answer within {timeout_s} s; stderr:\n{''.join(self.stderr)[-3000:]}")
        result: dict[str, object] = json.loads(line)
        return result

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def finish(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def test_embedded_ray_on_loopback_stops_cleanly() -> None:
    temp_dir, port = short_temp_dir(), free_port()
    child = Child(EMBEDDED, str(temp_dir), str(port))
    try:
        started = child.read_json(timeout_s=120)
        assert started["embedded"] is True
        assert started["square"] == 49
        assert started["namespace"] == "runtime-test"
        assert str(started["address"]).startswith("127.0.0.1:")
        dashboard = str(started["dashboard_url"])
        assert dashboard == f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = requests.get(
                    f"{dashboard}/api/version", headers=dashboard_headers(), timeout=5
                )
                if answer.status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "the dashboard does not answer"
            time.sleep(0.5)
        assert "ray_version" in answer.json()
        # Token authentication is on: without the token the API refuses.
        assert requests.get(f"{dashboard}/api/version", timeout=5).status_code == 401

        ours = {*ray_pids(temp_dir), child.process.pid}
        addresses = listening_addresses(ours)
        assert f"127.0.0.1:{port}" in addresses
        exposed = [a for a in addresses if not a.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:"))]
        assert not exposed, f"the embedded Ray listens beyond loopback: {exposed}"

        # the same program, given the address, connects instead of starting a Ray
        connected = Child(CONNECT, str(started["address"]))
        assert connected.read_json(timeout_s=60) == {
            "address": started["address"],
            "embedded": False,
            "dashboard_url": dashboard,
            "sum": 5,
        }
        assert connected.finish(timeout_s=30) == 0

        pids = [int(p) for p in started["pids"]]  # type: ignore[attr-defined]
        assert pids
        child.send("stop")
        assert child.read_json(timeout_s=60) == {"alive": []}
        assert child.finish(timeout_s=30) == 0
        assert not [p for p in pids if alive(p)]
    finally:
        child.kill()


def test_embedded_ray_refuses_to_listen_beyond_loopback() -> None:
    script = (
        "from recommender.ray_runtime import start_ray\n"
        "from recommender.settings import RaySettings\n"
        "start_ray(RaySettings(dashboard=False))\n"
    )
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "RayStartError: an embedded Ray would listen beyond 127.0.0.1" in result.stderr
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0" in result.stderr


def test_an_unreachable_address_fails_in_bounded_time_naming_it() -> None:
    address = f"127.0.0.1:{free_port()}"
    began = time.monotonic()
    with pytest.raises(RayStartError, match=f"cannot reach Ray at {re.escape(address)}"):
        start_ray(RaySettings(address=address, connect_timeout_s=2))
    assert time.monotonic() - began < 10


def test_an_address_that_is_not_ray_fails_in_bounded_time_naming_it() -> None:
    with socket.socket() as listener:  # accepts connections, never speaks
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        began = time.monotonic()
        with pytest.raises(RayStartError, match=f"cannot connect to Ray at {re.escape(address)}"):
            start_ray(RaySettings(address=address, connect_timeout_s=2))
        assert time.monotonic() - began < 10
