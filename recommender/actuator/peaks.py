"""Observed memory peaks per VPA container, from the engine's state (pure): the end of the
highest memory-histogram bucket still holding weight (what a 100th percentile returns), or
the current interval's peak of a running container when higher. Decaying weights fall below
epsilon only after many half-lives, so an old peak keeps counting for weeks: on purpose, as
the floor of a memory decrease must be conservative."""

from __future__ import annotations

import numpy as np

from analytics.store import AggregateStore


def memory_peaks(
    store: AggregateStore, cluster: str, namespace: str, workload: str
) -> dict[str, int]:
    """Container name -> observed memory peak in bytes, for the containers with history."""
    rows = store.workload_rows(cluster, namespace, workload)
    if rows.size == 0:
        return {}
    layout = store.memory.layout
    containers = store.aggregate_keys["container"].to_list()
    running = store.container_aggregate
    peaks: dict[str, int] = {}
    for row in rows.tolist():
        held = np.flatnonzero(store.memory.weights[row] >= layout.epsilon)
        peak = int(layout.percentile_values[held[-1]]) if held.size else 0
        mine = store.memory_peak_bytes[running == row]
        if mine.size:
            peak = max(peak, int(mine.max()))
        if peak > 0:
            peaks[str(containers[row])] = peak
    return peaks
