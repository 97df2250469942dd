"""Benchmark of the recommendation engine: ingestion, estimation, state size (prints a table).

Run with `.venv/bin/python -m bench.engine [--containers N] [--days D]`. Everything runs on one
core (POLARS_MAX_THREADS=1; numpy is single-threaded for these kernels). When the Go oracle of
`tests/oracle/` exists, the same samples are ingested into the upstream histograms by it, with
GOMAXPROCS=1, and the ratio of the best runs is printed; otherwise the upstream column says it is
unavailable. Each rate is the best of --repeats runs; the last column shows how far the others
spread.
"""

from __future__ import annotations

import os

os.environ["POLARS_MAX_THREADS"] = "1"

import argparse
import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from analytics.histogram_layout import CPU_LAYOUT, MEMORY_LAYOUT
from analytics.ingest import ingest_samples
from analytics.store import AggregateStore, EstimationInput
from analytics.strategies import build_estimators
from analytics.usage import prepare_samples

_REPO = Path(__file__).resolve().parent.parent
_ORACLE_BUILD = _REPO / "tests" / "oracle" / "build.sh"
_MIB = 1024 * 1024


def synthetic_trace(containers: int, days: float, step_s: int, seed: int = 0) -> pl.DataFrame:
    """A namespace of workloads with three containers each, sampled every step_s seconds."""
    rng = np.random.default_rng(seed)
    steps = int(days * 86400 / step_s)
    start = np.datetime64("2024-03-01T00:00:00", "us")
    grid = start + (np.arange(steps) * step_s * 1_000_000).astype("timedelta64[us]")
    jitter = rng.integers(0, 5_000_000, steps * containers).astype("timedelta64[us]")
    container = np.tile(np.arange(containers), steps)
    step = np.repeat(np.arange(steps), containers)
    workload = pl.Series(container // 3).cast(pl.String).str.pad_start(5, "0")
    return pl.DataFrame(
        {
            "timestamp": np.repeat(grid, containers) + jitter,
            "cluster": "bench",
            "namespace": "load",
            "workload": "w" + workload,
            "pod": "w" + workload + "-7d9f-x",
            "container": "c" + pl.Series(container % 3).cast(pl.String),
            "cpu": rng.gamma(2.0, 0.05 * (1 + container % 7), container.size),
            "memory": (100 + 3 * (container % 50) + step * 0.01 + rng.integers(0, 200, step.size))
            * _MIB,
        }
    )


def timings(repeats: int, run: Callable[[], object]) -> list[float]:
    """Wall times of `repeats` runs after one warm-up run, seconds, fastest first."""
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return sorted(times)


def spread(rates: list[float]) -> str:
    """Median and slowest of several rates (the table shows the best): how noisy the machine is."""
    ordered = sorted(rates, reverse=True)
    return f"median {ordered[len(ordered) // 2]:,.0f}, worst {ordered[-1]:,.0f}"


@dataclass
class Row:
    measure: str
    ours: str
    upstream: str = "-"
    ratio: str = "-"
    spread: str = ""


def upstream_ingestion(frame: pl.DataFrame, repeats: int) -> tuple[str, list[float]]:
    """(text, samples/s of each run) of the Go oracle ingesting the same samples, if it exists.

    The best of `repeats` runs, like ours; no rates when the oracle is unavailable.
    """
    if not _ORACLE_BUILD.is_file():
        return "unavailable (tests/oracle/build.sh not found)", []
    built = subprocess.run(
        ["bash", str(_ORACLE_BUILD)], capture_output=True, text=True, check=False, cwd=_REPO
    )
    lines = built.stdout.strip().splitlines()
    if built.returncode != 0 or not lines:
        return f"unavailable (oracle build failed: exit {built.returncode})", []
    binary = lines[-1].strip()
    ordered = frame.sort("timestamp")
    triples = np.column_stack(
        [
            ordered["timestamp"].dt.epoch("us").to_numpy() / 1e6,
            ordered["cpu"].to_numpy(),
            ordered["memory"].to_numpy(),
        ]
    ).astype("<f8")
    rates = []
    with tempfile.NamedTemporaryFile(suffix=".f64") as handle:
        handle.write(triples.tobytes())
        handle.flush()
        for _ in range(repeats):
            ran = subprocess.run(
                [binary, "bench", "--input", handle.name],
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "GOMAXPROCS": "1"},
            )
            if ran.returncode != 0:
                return f"unavailable (oracle bench failed: exit {ran.returncode})", []
            try:
                rates.append(float(json.loads(ran.stdout)["samples_per_s"]))
            except (ValueError, KeyError, TypeError):
                return "unavailable (oracle printed no samples_per_s)", []
    return f"{max(rates):,.0f}", rates


def tiled(aggregates: EstimationInput, n: int) -> EstimationInput:
    """n aggregates made by repeating the given ones."""
    return aggregates.take(np.resize(np.arange(len(aggregates), dtype=np.int64), n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--containers", type=int, default=1000, help="containers in the trace")
    parser.add_argument("--days", type=float, default=1.0, help="days of history")
    parser.add_argument("--step-s", type=int, default=60, help="seconds between samples")
    parser.add_argument("--estimate", type=int, default=50_000, help="containers estimated at once")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many runs")
    args = parser.parse_args()

    frame = synthetic_trace(args.containers, args.days, args.step_s)
    samples = prepare_samples(frame)
    n_samples = frame.height

    def ingest_everything() -> AggregateStore:
        store = AggregateStore.empty()
        ingest_samples(store, prepare_samples(frame))
        return store

    def ingest_prepared() -> AggregateStore:
        store = AggregateStore.empty()
        ingest_samples(store, samples)
        return store

    full = [n_samples / t for t in timings(args.repeats, ingest_everything)]
    prepared = [n_samples / t for t in timings(args.repeats, ingest_prepared)]
    store = ingest_prepared()
    _, estimators = build_estimators("vpa")
    many = tiled(store.estimation_input(), args.estimate)

    def estimate() -> None:
        fresh = EstimationInput(
            many.cpu,
            many.memory,
            many.first_sample_start_ns,
            many.last_sample_start_ns,
            many.total_samples_count,
            many.containers_per_pod,
        )
        estimators.estimate(fresh)

    estimated = [args.estimate / t for t in timings(args.repeats, estimate)]
    sizes = np.array([len(store.aggregate_bytes(i)) for i in range(store.n_aggregates)])
    worst = 8 * 4 + sum(65 + 10 * layout.num_buckets for layout in (CPU_LAYOUT, MEMORY_LAYOUT))

    upstream_text, upstream_rates = upstream_ingestion(frame, args.repeats)
    upstream_best = max(upstream_rates, default=0.0)

    def ratio(rate: float) -> str:
        return f"{rate / upstream_best:.2f}" if upstream_best else "-"

    rows = [
        Row(
            "ingestion, samples/s (validate + ingest)",
            f"{max(full):,.0f}",
            upstream_text,
            ratio(max(full)),
            spread(full),
        ),
        Row(
            "ingestion, samples/s (ingest prepared samples)",
            f"{max(prepared):,.0f}",
            upstream_text,
            ratio(max(prepared)),
            spread(prepared),
        ),
        Row(
            "estimation (vpa), containers/s",
            f"{max(estimated):,.0f}",
            spread=spread(estimated),
        ),
        Row(
            "state, bytes/container, both resources (mean / max)",
            f"{sizes.mean():,.0f} / {sizes.max():,}",
        ),
        Row("state, bytes/container if every bucket is used", f"{worst:,}"),
    ]
    print(
        f"engine benchmark: {args.containers} containers x {args.days:g} days every "
        f"{args.step_s}s = {n_samples:,} samples; estimation over {args.estimate:,} containers; "
        f"one core, best of {args.repeats}"
    )
    header = Row("measure", "ours", "upstream (Go, GOMAXPROCS=1)", "ours/upstream", "ours, spread")
    table = [header, *rows]
    fields = ("measure", "ours", "upstream", "ratio")
    widths = [max(len(getattr(r, f)) for r in table) for f in fields]
    for r in table:
        print(
            f"{r.measure:<{widths[0]}}  {r.ours:>{widths[1]}}  {r.upstream:<{widths[2]}}  "
            f"{r.ratio:<{widths[3]}}  {r.spread}".rstrip()
        )
    if len(upstream_rates) > 1:
        print(f"upstream ingestion spread: {spread(upstream_rates)}")


if __name__ == "__main__":
    main()
