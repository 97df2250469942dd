"""Load: one API server with thousands of VPAs over tens of thousands of KWOK pods (prints a
table). Run with `.venv/bin/python -m bench.load [--vpas 5000 --replicas 10 --namespaces 100]`.

It starts a control plane of its own (KWOK nodes), deploys `--vpas` Deployments of
`--replicas` pods each with a VPA naming vpa-fleet, gives a real Prometheus `--days` of their
history, then runs the recommender in a separate process (so that its memory is its own):
start (LIST then WATCH of VPAs, pods and policies), a bootstrap tick, checkpoints, and a
steady tick a minute later. It reports wall times, the recommender's peak and final RSS, the
requests it sent by method and their rate against its client-side limit (`--qps`,
`--burst`), and what the API server itself counted (apiserver_request_total) during the
run: pods are listed and watched, never read one by one.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import math
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

from analytics.sources.prometheus import PrometheusHistory, load_config
from recommender.kube.ratelimit import RateLimiter
from recommender.kube.rest import KubeClient, load_api_client
from recommender.loop.cluster import ClusterRecommender, LoopOptions
from testbed.cluster import ControlPlane, start_control_plane
from testbed.demo import scaled_demo, start_demo

STEP_S = 300


def _memory_kib(field: str) -> int:
    """VmRSS or VmHWM (peak) of this process, KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def probe(
    *,
    kubeconfig: str,
    prometheus_url: str,
    namespaces: list[str],
    days: float,
    qps: float,
    burst: int,
    now: dt.datetime,
) -> dict[str, Any]:
    """The recommender's start, bootstrap tick, checkpoints and steady tick, in figures."""
    limiter = RateLimiter(qps, burst)
    kube = KubeClient(load_api_client(kubeconfig), limiter=limiter)
    config = load_config(
        {"connection": {"url": prometheus_url}, "cluster": "bench", "step_s": STEP_S}
    )
    options = LoopOptions(
        cluster="bench", namespaces=tuple(namespaces), history=dt.timedelta(days=days)
    )
    clock = [now]
    recommender = ClusterRecommender(
        kube, PrometheusHistory(config), options, clock=lambda: clock[0]
    )
    figures: dict[str, Any] = {"rss_before_kib": _memory_kib("VmRSS")}
    began = time.monotonic()
    recommender.start(timeout_s=600)
    figures["start_s"] = time.monotonic() - began
    figures["rss_started_kib"] = _memory_kib("VmRSS")
    bootstrap = recommender.tick()
    figures["bootstrap"] = _tick_figures(bootstrap)
    began = time.monotonic()
    figures["checkpointed"] = recommender.checkpoint()
    figures["checkpoint_s"] = time.monotonic() - began
    clock[0] = now + dt.timedelta(minutes=1)
    figures["steady"] = _tick_figures(recommender.tick())
    recommender.stop()
    figures["requests"] = dict(kube.requests)
    figures["limiter_waited_s"] = limiter.waited_s
    figures["rss_end_kib"] = _memory_kib("VmRSS")
    figures["rss_peak_kib"] = _memory_kib("VmHWM")
    return figures


def _tick_figures(report: Any) -> dict[str, Any]:
    return {
        "vpas": report.vpas,
        "namespaces": report.namespaces,
        "queries": report.queries,
        "samples": report.samples,
        "writes": report.writes,
        "unchanged": report.unchanged,
        "errors": len(report.errors),
        "results_error": sum(1 for r in report.results if r.outcome == "error"),
        "duration_s": report.duration_s,
    }


_REQUEST = re.compile(r"^apiserver_request_total\{([^}]*)\} (\S+)$")


def apiserver_requests(plane: ControlPlane) -> Counter[tuple[str, str]]:
    """apiserver_request_total summed by (verb, resource), as the API server counts."""
    pki = plane.pki
    answer = requests.get(
        f"{plane.server}/metrics",
        cert=(str(pki.admin_cert), str(pki.admin_key)),
        verify=str(pki.ca_cert),
        timeout=30,
    )
    answer.raise_for_status()
    counts: Counter[tuple[str, str]] = Counter()
    for line in answer.text.splitlines():
        found = _REQUEST.match(line)
        if found is None:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', found[1]))
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        counts[(labels.get("verb", ""), resource)] += int(float(found[2]))
    return counts


def _run_probe(
    plane: ControlPlane, url: str, namespaces: list[str], args: argparse.Namespace, now: str
) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "bench.load",
        "--probe",
        json.dumps(
            {
                "kubeconfig": str(plane.kubeconfig),
                "prometheus_url": url,
                "namespaces": namespaces,
                "days": args.days,
                "qps": args.qps,
                "burst": args.burst,
                "now": now,
            }
        ),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=7200)
    if done.returncode != 0:
        raise RuntimeError(f"the probe failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vpas", type=int, default=5000)
    parser.add_argument("--replicas", type=int, default=10)
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--days", type=float, default=0.1, help="history given to Prometheus")
    parser.add_argument("--qps", type=float, default=50, help="the recommender's kube_api_qps")
    parser.add_argument("--burst", type=int, default=100, help="its kube_api_burst")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    if args.probe:
        given = json.loads(args.probe)
        given["now"] = dt.datetime.fromisoformat(given["now"])
        print(json.dumps(probe(**given)))
        return

    pods = args.vpas * args.replicas
    nodes = max(2, math.ceil(pods / 1000))
    workloads = tuple(
        dataclasses.replace(w, replicas=args.replicas)
        for w in scaled_demo(args.namespaces, args.vpas)
    )
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        work = Path(tmp)
        began = time.monotonic()
        plane = start_control_plane(
            work / "cluster", nodes=nodes, node_cpu="4000", node_memory="16Ti", node_pods=1100
        )
        try:
            kube = KubeClient(load_api_client(str(plane.kubeconfig)))
            print(f"# control plane with {nodes} nodes in {time.monotonic() - began:.0f} s")
            began = time.monotonic()
            demo = start_demo(
                work / "demo",
                kube,
                workloads,
                days=args.days,
                step_s=STEP_S,
                end=now - dt.timedelta(minutes=10),
                timeout_s=7200,
            )
            print(
                f"# {args.vpas} VPAs, {pods} pods in {args.namespaces} namespaces deployed with "
                f"history in {time.monotonic() - began:.0f} s ({demo.timings})",
                flush=True,
            )
            try:
                namespaces = sorted({w.namespace for w in demo.workloads})
                before = apiserver_requests(plane)
                figures = _run_probe(plane, demo.prometheus.url, namespaces, args, now.isoformat())
                server = apiserver_requests(plane) - before
            finally:
                demo.stop()
        finally:
            plane.stop()
    print(json.dumps(figures))
    sent = figures["requests"]
    total = sum(sent.values())
    busy = figures["start_s"] + figures["bootstrap"]["duration_s"] + figures["steady"]["duration_s"]
    busy += figures["checkpoint_s"]
    rows = [
        ("VPAs / pods / namespaces", f"{args.vpas} / {pods} / {args.namespaces}"),
        ("start (LIST + WATCH), s", f"{figures['start_s']:.1f}"),
        ("bootstrap tick, s", f"{figures['bootstrap']['duration_s']:.1f}"),
        (
            "  writes / errors",
            f"{figures['bootstrap']['writes']} / {figures['bootstrap']['errors']}",
        ),
        (
            "  Prometheus queries / samples",
            f"{figures['bootstrap']['queries']} / {figures['bootstrap']['samples']}",
        ),
        ("checkpoints saved / s", f"{figures['checkpointed']} / {figures['checkpoint_s']:.1f}"),
        ("steady tick, s", f"{figures['steady']['duration_s']:.1f}"),
        (
            "  writes / unchanged",
            f"{figures['steady']['writes']} / {figures['steady']['unchanged']}",
        ),
        ("requests sent by method", ", ".join(f"{k} {v}" for k, v in sorted(sent.items()))),
        (
            "requests sent / at most burst + qps x busy time",
            f"{total} / {args.burst + args.qps * busy:.0f}",
        ),
        (
            "request rate (busy time), /s",
            f"{total / busy:.1f} (limit {args.qps:g}, burst {args.burst})",
        ),
        ("time waiting for the limit, s", f"{figures['limiter_waited_s']:.1f}"),
        (
            "RSS after start / peak / end, MiB",
            " / ".join(
                f"{figures[k] / 1024:.0f}"
                for k in ("rss_started_kib", "rss_peak_kib", "rss_end_kib")
            ),
        ),
        ("API server: GET pods", str(server[("GET", "pods")])),
        (
            "API server: LIST pods / WATCH pods",
            f"{server[('LIST', 'pods')]} / {server[('WATCH', 'pods')]}",
        ),
        ("API server: PATCH VPA status", str(server[("PATCH", "verticalpodautoscalers/status")])),
        ("API server: all requests during the run", str(sum(server.values()))),
    ]
    print()
    print(_table(rows))


if __name__ == "__main__":
    main()
