"""A real Prometheus on 127.0.0.1 with backfilled history, for tests, benchmarks and the demo.

History is written as OpenMetrics text (`testbed.series`), turned into TSDB blocks with
`promtool tsdb create-blocks-from openmetrics` BEFORE Prometheus starts, so that the blocks
are loaded at start-up and queryable as soon as `/-/ready` answers (blocks added to a running
Prometheus only show up at its next reload, up to a minute later).

Binaries come from Debian's `prometheus` package (2.42 in bookworm);
`testbed/install-prometheus.sh` installs it without starting the system service.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from types import TracebackType

from testbed.process import LOOPBACK, Process, TestbedError, free_port, start, wait_until
from testbed.series import DEFAULT_SPEC, SyntheticHistory, WorkloadSpec

INSTALL_HINT = (
    "run testbed/install-prometheus.sh (installs Debian's package `prometheus`, which provides "
    "both `prometheus` and `promtool`, without starting its system service)"
)

# promtool picks the largest of 2h x 3^k that fits: 162h gives two blocks for 8 days, where
# the default 2h gives ~97 and 24h (really 18h) gives ~11. promtool re-reads the whole input
# once per block, so fewer blocks is faster: 2.4 s instead of 5.9 s (24h) for 8 days here.
MAX_BLOCK_DURATION = "162h"

_CONFIG = """\
# Written by testbed/prometheus.py: no scrape targets, the data is backfilled.
global:
  scrape_interval: 1m
  evaluation_interval: 1m
scrape_configs: []
"""


def prometheus_binaries() -> tuple[Path, Path]:
    """The paths of `prometheus` and `promtool` (PATH first, then /usr/bin)."""
    found: dict[str, Path] = {}
    for name in ("prometheus", "promtool"):
        on_path = shutil.which(name)
        if on_path is not None:
            found[name] = Path(on_path)
        elif os.access(f"/usr/bin/{name}", os.X_OK):
            found[name] = Path("/usr/bin") / name
    missing = [name for name in ("prometheus", "promtool") if name not in found]
    if missing:
        raise TestbedError(
            f"Prometheus testbed: {' and '.join(missing)} not found on PATH or in /usr/bin; "
            + INSTALL_HINT
        )
    return found["prometheus"], found["promtool"]


@dataclass(frozen=True)
class BackfillResult:
    """Blocks that `promtool` wrote into `data_dir`, and how long it took (seconds)."""

    data_dir: Path
    blocks: int
    seconds: float


def backfill(
    openmetrics: Path, data_dir: Path, *, max_block_duration: str | None = MAX_BLOCK_DURATION
) -> BackfillResult:
    """Turn an OpenMetrics file (timestamps in seconds, ending with `# EOF`) into TSDB blocks."""
    _, promtool = prometheus_binaries()
    data_dir.mkdir(parents=True, exist_ok=True)
    before = _blocks(data_dir)
    started = time.monotonic()
    block_flag = [f"--max-block-duration={max_block_duration}"] if max_block_duration else []
    argv = [str(promtool), "tsdb", "create-blocks-from", *block_flag, "--quiet"]
    result = subprocess.run(
        [*argv, "openmetrics", str(openmetrics), str(data_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 and block_flag and "max-block-duration" in result.stderr:
        # The flag is hidden and not promised to stay; without it blocks are 2h (slower).
        return backfill(openmetrics, data_dir, max_block_duration=None)
    if result.returncode != 0:
        raise TestbedError(
            f"promtool backfill of {openmetrics} into {data_dir} failed "
            f"(exit {result.returncode}):\n{(result.stdout + result.stderr).strip()[-3000:]}"
        )
    blocks = len(_blocks(data_dir) - before)
    if blocks == 0:
        raise TestbedError(f"promtool wrote no blocks from {openmetrics} (is it empty?)")
    return BackfillResult(data_dir, blocks, time.monotonic() - started)


def _blocks(data_dir: Path) -> set[str]:
    return {p.name for p in data_dir.iterdir() if (p / "meta.json").exists()}


@dataclass
class PrometheusInstance:
    """A running Prometheus: `url` is `http://127.0.0.1:<port>`; `timings` are in seconds."""

    url: str
    data_dir: Path
    process: Process
    timings: dict[str, float] = field(default_factory=dict)

    def stop(self) -> None:
        """Stop Prometheus (SIGTERM, then SIGKILL). Safe to call more than once."""
        self.process.stop()

    def __enter__(self) -> PrometheusInstance:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _ready(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
        return bool(response.status == 200)


def _with_errors(message: str, log: str) -> str:
    """Put the log's error lines first: a bad flag prints its error above a long usage text
    that fills the log tail."""
    errors = [
        line
        for line in log.splitlines()
        if "level=error" in line or line.startswith(("Error", "prometheus: error:"))
    ]
    if not errors:
        return message
    return "errors in the Prometheus log:\n" + "\n".join(errors[:5]) + "\n" + message


def start_prometheus(
    workdir: Path,
    *,
    openmetrics: Path | None = None,
    retention: str = "30d",
    timeout_s: float = 60.0,
) -> PrometheusInstance:
    """Start Prometheus on a free 127.0.0.1 port with its TSDB in `workdir/data`.

    When `openmetrics` is given it is backfilled first, so its samples are queryable as soon
    as this returns. `retention` must cover the history (older blocks are deleted at the first
    compaction). Raises TestbedError with the log tail when Prometheus does not become ready.
    """
    prometheus, _ = prometheus_binaries()
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    timings: dict[str, float] = {}
    if openmetrics is not None:
        timings["backfill_s"] = backfill(openmetrics, data_dir).seconds
    data_dir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(_CONFIG)

    started = time.monotonic()
    for attempt in range(3):
        port = free_port()
        url = f"http://{LOOPBACK}:{port}"
        argv = [
            str(prometheus),
            f"--config.file={config}",
            f"--storage.tsdb.path={data_dir}",
            f"--storage.tsdb.retention.time={retention}",
            # The only listener Prometheus 2.x opens; the default is 0.0.0.0:9090.
            f"--web.listen-address={LOOPBACK}:{port}",
            # Otherwise links and redirects use the machine's hostname.
            f"--web.external-url={url}/",
            "--log.level=info",
        ]
        process = start("prometheus", argv, workdir / "logs", cwd=workdir)
        try:
            wait_until(process, partial(_ready, url), timeout_s, f"{url}/-/ready")
        except TestbedError as error:
            process.stop()
            log = process.log_path.read_text(errors="replace")
            # free_port() cannot reserve the port; another process may have taken it since.
            if attempt < 2 and "address already in use" in log:
                continue
            raise TestbedError(_with_errors(str(error), log)) from None
        except BaseException:  # e.g. Ctrl-C while waiting: never leave it running
            process.stop()
            raise
        timings["start_s"] = time.monotonic() - started
        return PrometheusInstance(url, data_dir, process, timings)
    raise AssertionError("unreachable")  # pragma: no cover


def start_prometheus_with_history(
    workdir: Path,
    spec: Sequence[WorkloadSpec] = DEFAULT_SPEC,
    days: float = 8,
    step_s: int = 60,
    end: datetime | float | None = None,
    *,
    seed: int = 0,
    retention: str | None = None,
    keep_openmetrics: bool = False,
) -> tuple[PrometheusInstance, SyntheticHistory]:
    """Generate `days` of history for `spec` at `step_s` seconds ending at `end` (default now),
    backfill it and start Prometheus; returns the instance and the generated ground truth.

    `retention` defaults to 30 days, or longer when the history is. The OpenMetrics file
    (about 180 MB for the default spec over 8 days at 60 s) is deleted after the backfill
    unless `keep_openmetrics`.
    """
    if retention is None:
        retention = f"{max(30, math.ceil(days) + 2)}d"
    started = time.monotonic()
    history = SyntheticHistory.generate(spec, days=days, step_s=step_s, end=end, seed=seed)
    openmetrics = workdir / "history.om.txt"
    workdir.mkdir(parents=True, exist_ok=True)
    history.write_openmetrics(openmetrics)
    generate_s = time.monotonic() - started
    try:
        instance = start_prometheus(workdir, openmetrics=openmetrics, retention=retention)
    finally:
        if not keep_openmetrics:
            openmetrics.unlink(missing_ok=True)
    instance.timings = {"generate_s": generate_s, **instance.timings}
    return instance, history
