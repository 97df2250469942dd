"""Benchmark of the one-cluster loop on the testbed (prints a table).

Run with `.venv/bin/python -m bench.loop [--workloads 1000 --namespaces 20]`. It starts a
control plane (KWOK nodes), deploys single-container Deployments with a VPA naming vpa-fleet
each, gives a real Prometheus one day of their history at 5-minute steps, and runs the loop:
a bootstrap tick (the whole day), a steady tick a minute later (the same process), and
the first tick of a restarted process (history restored from checkpoints). Two smaller
layouts run on the same control plane for comparison: as many namespaces with a quarter of the
workloads, and a quarter of the namespaces with that quarter. Prometheus queries per tick
follow the namespaces; wall time and writes follow the VPAs.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import logging
import math
import pstats
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from analytics.sources.prometheus import PrometheusHistory, load_config
from recommender.kube.rest import KubeClient, load_api_client
from recommender.loop.cluster import ClusterRecommender, LoopOptions, TickReport
from testbed.cluster import start_control_plane
from testbed.demo import scaled_demo, start_demo

STEP_S = 300
HISTORY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Row:
    layout: str
    namespaces: int
    workloads: int
    tick: str
    report: TickReport


class _Clock:
    def __init__(self, moment: dt.datetime) -> None:
        self.moment = moment

    def __call__(self) -> dt.datetime:
        return self.moment


def _tick(
    recommender: ClusterRecommender,
    tick: str,
    prefix: str,
    namespaces: int,
    workloads: int,
    *,
    profile: bool,
) -> Row:
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    report = recommender.tick()
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    started = time.monotonic()
    recommender.checkpoint()
    print(f"# {prefix} {tick}: checkpoints saved in {time.monotonic() - started:.1f} s")
    return Row(prefix.rstrip("-"), namespaces, workloads, tick, report)


def _run_layout(
    kube: KubeClient,
    workdir: Path,
    prefix: str,
    namespaces: int,
    workloads: int,
    *,
    profile: bool = False,
) -> list[Row]:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    started = time.monotonic()
    demo = start_demo(
        workdir,
        kube,
        scaled_demo(namespaces, workloads),
        days=HISTORY / dt.timedelta(days=1),
        step_s=STEP_S,
        namespace_prefix=prefix,
        end=now - dt.timedelta(minutes=10),
        timeout_s=900,
    )
    print(
        f"# {prefix}: {workloads} workloads in {namespaces} namespaces deployed with history "
        f"in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    try:
        config = load_config(
            {"connection": {"url": demo.prometheus.url}, "cluster": "bench", "step_s": STEP_S}
        )
        options = LoopOptions(
            cluster="bench",
            namespaces=tuple(sorted({w.namespace for w in demo.workloads})),
            history=HISTORY,
        )
        rows = []
        clock = _Clock(now)
        first = ClusterRecommender(kube, PrometheusHistory(config), options, clock=clock)
        first.start(timeout_s=120)
        try:
            rows.append(_tick(first, "bootstrap", prefix, namespaces, workloads, profile=False))
            clock.moment = now + dt.timedelta(minutes=1)
            rows.append(_tick(first, "steady", prefix, namespaces, workloads, profile=profile))
        finally:
            first.stop()
        clock.moment = now + dt.timedelta(minutes=2)
        restarted = ClusterRecommender(kube, PrometheusHistory(config), options, clock=clock)
        restarted.start(timeout_s=120)
        try:
            rows.append(_tick(restarted, "restart", prefix, namespaces, workloads, profile=False))
        finally:
            restarted.stop()
        return rows
    finally:
        demo.stop()


def _table(rows: list[Row]) -> str:
    header = (
        "layout",
        "namespaces",
        "VPAs",
        "tick",
        "Prometheus queries",
        "samples",
        "API writes",
        "wall s",
        "errors",
    )
    lines = [header]
    for row in rows:
        r = row.report
        lines.append(
            (
                row.layout,
                str(row.namespaces),
                str(r.vpas),
                row.tick,
                str(r.queries),
                str(r.samples),
                str(r.writes),
                f"{r.duration_s:.2f}",
                str(len(r.errors)),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in lines
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument(
        "--profile", action="store_true", help="print a profile of the largest steady tick"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # parallel deploys outgrow its pool
    small = max(1, args.workloads // 4)
    few = max(1, args.namespaces // 4)
    layouts = [
        ("a-", args.namespaces, args.workloads),
        ("b-", args.namespaces, small),
        ("c-", few, small),
    ]
    pods = sum(w for _, _, w in layouts)
    nodes = max(2, math.ceil(pods / 200))
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        work = Path(tmp)
        plane = start_control_plane(work / "cluster", nodes=nodes)
        try:
            kube = KubeClient(load_api_client(str(plane.kubeconfig)))
            rows: list[Row] = []
            for prefix, namespaces, workloads in layouts:
                profile = args.profile and prefix == "a-"
                rows += _run_layout(
                    kube, work / prefix, prefix, namespaces, workloads, profile=profile
                )
        finally:
            plane.stop()
    print()
    print(_table(rows))


if __name__ == "__main__":
    main()
