"""`python -m testbed up|down|status`: the local control plane by hand, for the demo.

`up` starts every component detached and records them in `.testbed/state.json`; `down`
stops exactly those processes. Everything listens on 127.0.0.1. `up` also deploys the demo
workloads (testbed.demo.DEMO) with their VPAs and starts Prometheus with history for exactly
the pods they run; with `--no-demo` it deploys nothing and Prometheus gets the history of
testbed.series.DEFAULT_SPEC (pods that do not exist in the cluster).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from testbed.process import TestbedError

ROOT = Path(__file__).resolve().parent.parent
# Where `up` keeps its state, kubeconfig, data and logs; tests point it elsewhere.
STATE_DIR = Path(os.environ.get("VPA_FLEET_TESTBED_DIR", ROOT / ".testbed"))
STATE_FILE = STATE_DIR / "state.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _print_state(state: dict[str, Any]) -> None:
    if state.get("demo"):
        from testbed.demo import format_inventory  # noqa: PLC0415 - imports are slow

        namespaces = sorted({row["namespace"] for row in state["demo"]})
        print(f"demo workloads in namespaces {', '.join(namespaces)} (VPAs named after them):")
        print(format_inventory(state["demo"]))
        print()
    print(f"kubeconfig:     {state['kubeconfig']}")
    print(f"API server:     {state['server']}")
    print(f"Prometheus:     {state['prometheus_url']}")
    print(f"Ray address:    {state['ray_address']}")
    print(f"Ray dashboard:  {state['ray_dashboard_url']}")
    print(f"logs:           {state['logs']}")
    print(f"\nexport KUBECONFIG={state['kubeconfig']}")


def up(args: argparse.Namespace) -> int:
    from recommender.kube.rest import KubeClient, load_api_client  # noqa: PLC0415
    from testbed.cluster import start_control_plane  # noqa: PLC0415 - imports are slow
    from testbed.demo import DEMO, inventory, start_demo  # noqa: PLC0415
    from testbed.prometheus import start_prometheus_with_history  # noqa: PLC0415
    from testbed.ray_local import ray_pids, start_ray_head  # noqa: PLC0415

    if STATE_FILE.exists():
        print("testbed is already up (python -m testbed down first):", file=sys.stderr)
        _print_state(json.loads(STATE_FILE.read_text()))
        return 1
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    STATE_DIR.mkdir(parents=True)
    started = time.monotonic()
    print("starting etcd, kube-apiserver, controllers and KWOK ...", file=sys.stderr)
    plane = start_control_plane(STATE_DIR / "cluster", nodes=args.nodes)
    pgids = [p.popen.pid for p in plane.processes]
    demo_rows: list[dict[str, Any]] = []
    try:
        days = args.history_days
        if args.no_demo:
            print(f"starting Prometheus with {days:g} days of history ...", file=sys.stderr)
            prometheus, _ = start_prometheus_with_history(STATE_DIR / "prometheus", days=days)
        else:
            print(
                f"deploying the demo workloads, then Prometheus with {days:g} days of their "
                "history ...",
                file=sys.stderr,
            )
            api = load_api_client(str(plane.kubeconfig))
            try:
                demo = start_demo(STATE_DIR / "prometheus", KubeClient(api), DEMO, days=days)
            finally:
                api.close()  # type: ignore[no-untyped-call]
            prometheus = demo.prometheus
            demo_rows = inventory(demo.workloads, demo.pods)
        pgids.append(prometheus.process.popen.pid)
        print("starting Ray ...", file=sys.stderr)
        ray = start_ray_head()
    except BaseException:
        for pgid in pgids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        raise
    state: dict[str, object] = {
        "kubeconfig": str(plane.kubeconfig),
        "server": plane.server,
        "prometheus_url": prometheus.url,
        "ray_address": ray.address,
        "ray_dashboard_url": ray.dashboard_url,
        "ray_temp_dir": str(ray.temp_dir),
        "ray_pids": ray_pids(ray.temp_dir, ray.address),
        "process_groups": pgids,
        "logs": str(plane.workdir / "logs"),
        "etcd_data": str(plane.etcd_data),
        "demo": demo_rows,
    }
    STATE_FILE.write_text(json.dumps(state, indent=2))
    print(f"testbed up in {time.monotonic() - started:.1f} s", file=sys.stderr)
    _print_state(state)
    return 0


def down(args: argparse.Namespace) -> int:
    from testbed.ray_local import stop_ray_head  # noqa: PLC0415

    if not STATE_FILE.exists():
        print("testbed is not up", file=sys.stderr)
        return 0
    state = json.loads(STATE_FILE.read_text())
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pgid in state["process_groups"]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in state["process_groups"]) and time.monotonic() < deadline:
            time.sleep(0.2)
    stop_ray_head(Path(state["ray_temp_dir"]), state["ray_address"], state["ray_pids"])
    shutil.rmtree(state["ray_temp_dir"], ignore_errors=True)
    if state.get("etcd_data"):  # in /dev/shm: memory until removed
        shutil.rmtree(state["etcd_data"], ignore_errors=True)
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    print("testbed down", file=sys.stderr)
    return 0


def status(args: argparse.Namespace) -> int:
    if not STATE_FILE.exists():
        print("testbed is not up", file=sys.stderr)
        return 1
    state = json.loads(STATE_FILE.read_text())
    _print_state(state)
    dead = [p for p in state["process_groups"] if not _alive(p)]
    if dead:
        print(f"\nwarning: processes {dead} have exited; see {state['logs']}", file=sys.stderr)
        return 1
    return 0


def get(args: argparse.Namespace) -> int:
    """One value of the state, for scripts: `--kubeconfig "$(python -m testbed get kubeconfig)"`."""
    if not STATE_FILE.exists():
        print("testbed is not up (python -m testbed up)", file=sys.stderr)
        return 1
    state = json.loads(STATE_FILE.read_text())
    if args.key not in state:
        print(f"no {args.key!r} in the state; known: {', '.join(sorted(state))}", file=sys.stderr)
        return 1
    print(state[args.key])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up", help="start the local control plane, Prometheus and Ray")
    up_parser.add_argument("--nodes", type=int, default=3, help="simulated KWOK nodes")
    up_parser.add_argument(
        "--history-days", type=float, default=8, help="days of Prometheus history"
    )
    up_parser.add_argument(
        "--no-demo",
        action="store_true",
        help="deploy no workloads; Prometheus gets the history of testbed.series.DEFAULT_SPEC",
    )
    up_parser.set_defaults(func=up)
    sub.add_parser("down", help="stop everything `up` started").set_defaults(func=down)
    sub.add_parser("status", help="print where everything is").set_defaults(func=status)
    get_parser = sub.add_parser("get", help="print one value: kubeconfig, prometheus_url, ...")
    get_parser.add_argument("key")
    get_parser.set_defaults(func=get)
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except TestbedError as exc:
        print(f"testbed: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
