"""Starting and stopping the testbed's processes: free loopback ports, logs, readiness."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"


class TestbedError(RuntimeError):
    """A testbed component could not be built, found or started; the message says which and why."""

    __test__ = False  # not a pytest test class


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 30) -> str:
    """The last lines of a component's log, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Process:
    """A running testbed component with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    extra_stop: list[Callable[[], None]] = field(default_factory=list)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the component's process group, then SIGKILL after `timeout_s`."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=timeout_s)
        for stop in self.extra_stop:
            stop()

    def failure(self, why: str) -> TestbedError:
        """An error naming this component, why it failed, and its own log tail."""
        code = self.popen.poll()
        status = "still running" if code is None else f"exited with code {code}"
        return TestbedError(
            f"{self.name} {why} ({status}); log {self.log_path}, last lines:\n"
            f"{log_tail(self.log_path)}"
        )


def start(
    name: str,
    argv: Sequence[str | os.PathLike[str]],
    log_dir: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Process:
    """Start `argv` in its own process group, stdout and stderr to `log_dir/<name>.log`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    binary = Path(argv[0])
    if binary.is_absolute() and not binary.exists():
        raise TestbedError(f"{name}: binary {binary} does not exist; run testbed/build.sh")
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [os.fspath(a) for a in argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    return Process(name=name, popen=popen, log_path=log_path)


def wait_until(
    process: Process,
    ready: Callable[[], bool],
    timeout_s: float,
    what: str,
    interval_s: float = 0.2,
) -> None:
    """Poll `ready()` until it is true; fail with the component's log tail on exit or timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process.alive():
            raise process.failure(f"exited before {what}")
        try:
            if ready():
                return
        except Exception:  # readiness probes fail in many ways until ready
            pass
        time.sleep(interval_s)
    raise process.failure(f"did not become ready ({what}) within {timeout_s:.0f} s")
