"""What the hourly profile of `default` costs beside the histograms (prints a table).

Run with `.venv/bin/python -m bench.profile [--seeds 0-4] [--days 14]`: generates the trace
families (`vpa-fleet simulate --generate`), ingests them in one batch into a store without a
profile (what `vpa` keeps) and one with (what `default` keeps), and prints the ingest time
(best of --repeats), the checkpoint JSON of a container (median and largest, as
`snapshot_to_json` writes it for the loop's RecommenderCheckpoint) and the profile's arrays.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from analytics.estimation import store_for
from analytics.ingest import ingest_samples
from analytics.simulate.families import generate, parse_seeds
from analytics.snapshot import export_workload, snapshot_to_json
from analytics.store import AggregateStore
from analytics.strategies import build_estimators
from analytics.usage import PreparedSamples, prepare_samples


def _store(strategy: str) -> AggregateStore:
    params, estimators = build_estimators(strategy)
    return store_for(params.model_fields_only(), estimators)


def _ingest_s(strategy: str, samples: PreparedSamples, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        store = _store(strategy)
        start = time.perf_counter()
        ingest_samples(store, samples)
        best = min(best, time.perf_counter() - start)
    return best


def _checkpoint_bytes(store: AggregateStore) -> list[int]:
    """The JSON bytes of each container's checkpoint entry."""
    keys = store.aggregate_keys.select("cluster", "namespace", "workload").unique()
    sizes = []
    for cluster, namespace, workload in keys.iter_rows():
        for entry in snapshot_to_json(export_workload(store, cluster, namespace, workload)):
            sizes.append(len(json.dumps(entry, separators=(",", ":")).encode()))
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    samples = prepare_samples(generate(seeds=parse_seeds(args.seeds), days=args.days))
    print(f"{samples.t_ns.shape[0]:,} samples of {samples.container_keys.height} containers")
    print(f"{'store':<22}{'ingest (s)':>12}{'entry median (B)':>18}{'entry max (B)':>15}")
    for strategy, label in (("vpa", "histograms (vpa)"), ("default", "+ profile (default)")):
        seconds = _ingest_s(strategy, samples, args.repeats)
        store = _store(strategy)
        ingest_samples(store, samples)
        sizes = _checkpoint_bytes(store)
        print(f"{label:<22}{seconds:>12.3f}{int(np.median(sizes)):>18,}{max(sizes):>15,}")
        if store.profile is not None:
            arrays = store.profile.to_arrays()
            per_row = sum(a.nbytes for a in arrays.values()) // len(store.profile)
            print(
                f"profile arrays: {per_row:,} bytes a container, "
                f"{per_row * 1000 / 2**20:.1f} MiB per 1,000 containers"
            )


if __name__ == "__main__":
    main()
