"""`vpa-fleet run`: the recommender loop against one cluster (see `recommender.loop`)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from recommender.settings import SettingsError, describe, load_settings

_FORCE_AFTER_S = 2.0
"""A second signal this long after the first stops at once."""

# Flag destination -> dotted settings key; only flags given on the command line override.
_FLAGS = {
    "kubeconfig": "kubeconfig",
    "context": "context",
    "prometheus_url": "prometheus_url",
    "namespaces": "namespaces",
    "recommender_name": "recommender_name",
    "cluster": "cluster",
    "tick_interval": "tick_interval_s",
    "history_days": "history_days",
    "strategy": "strategy",
    "ray_address": "ray.address",
    "leader_elect": "leader_election.enabled",
    "log_level": "log_level",
    "once": "once",
    "fleet": "fleet",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the recommender loop against a cluster",
        description="Watch the VPAs that name this recommender, read their pods' usage from "
        "Prometheus, and write their recommendations. Settings come from flags, then "
        "VPA_FLEET_* environment variables, then the --config file.",
    )
    parser.add_argument("--config", type=Path, help="YAML settings file")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, $KUBECONFIG)")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument("--prometheus-url", help="Prometheus base URL, e.g. http://prom:9090")
    parser.add_argument(
        "--fleet", type=Path, help="fleet file: many clusters, sharded over Ray actors"
    )
    parser.add_argument(
        "-n",
        "--namespace",
        dest="namespaces",
        action="append",
        help="watch only this namespace (repeatable; default: all)",
    )
    parser.add_argument("--recommender-name", help="the name VPAs select us by (vpa-fleet)")
    parser.add_argument("--cluster", help="this cluster's name in recommendations and metrics")
    parser.add_argument("--tick-interval", type=float, help="seconds between ticks (60)")
    parser.add_argument("--history-days", type=float, help="days of history to start from (8)")
    parser.add_argument("--strategy", help="recommendation strategy (vpa)")
    parser.add_argument("--ray-address", help="an existing Ray cluster (default: embedded Ray)")
    parser.add_argument(
        "--leader-elect",
        action="store_const",
        const=True,
        help="hold a Lease; only the holder writes (for several replicas)",
    )
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (INFO)")
    parser.add_argument(
        "--once", action="store_const", const=True, help="run one tick, checkpoint, and exit"
    )
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any setting by its dotted name, e.g. prometheus.step_s=30 (repeatable)",
    )
    parser.set_defaults(func=_run)


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    overrides: dict[str, object] = {}
    for assignment in args.assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key.strip():
            raise SettingsError([f"--set {assignment!r}: expected KEY=VALUE"])
        overrides[key.strip()] = value
    for dest, key in _FLAGS.items():
        value = getattr(args, dest)
        if value is not None:
            overrides[key] = value
    return overrides


def _run(args: argparse.Namespace) -> int:
    from recommender.loop.service import ServiceError, run_service  # noqa: PLC0415

    try:
        settings = load_settings(args.config, _overrides(args))
    except SettingsError as error:
        print(f"vpa-fleet run: invalid settings:\n{error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    print(f"vpa-fleet run with settings:\n{describe(settings)}", flush=True)
    stop = threading.Event()
    first_signal: list[float] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Under make (or any wrapper) one Ctrl-C can arrive twice within a moment: only a
        # second one a little later means "stop now".
        if first_signal and time.monotonic() - first_signal[0] > _FORCE_AFTER_S:
            raise KeyboardInterrupt
        if first_signal:
            return
        first_signal.append(time.monotonic())
        print(
            f"\n{signal.Signals(signum).name}: finishing the current tick and stopping "
            "(again to stop at once)",
            file=sys.stderr,
            flush=True,
        )
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return run_service(settings, stop, sys.stdout)
    except ServiceError as error:
        print(f"vpa-fleet run: {error}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
