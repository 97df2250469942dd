"""The scalar path: replays prepared samples one by one through `ContainerState` objects.

It is the reference the vectorized path is tested against, and the shape an online loop that
receives samples one at a time would use.
"""

from __future__ import annotations

from collections import Counter

from analytics.container_state import AggregateState, ContainerState
from analytics.model_params import ModelParams
from analytics.store import AggregateKey, AggregateStore, ContainerKey
from analytics.usage import PreparedSamples

__all__ = ["ScalarModel"]


class ScalarModel:
    """Aggregates and running containers keyed by name, fed sample by sample."""

    def __init__(self, params: ModelParams | None = None) -> None:
        self.params = (params or ModelParams()).model_fields_only()
        self.aggregates: dict[AggregateKey, AggregateState] = {}
        self.containers: dict[ContainerKey, ContainerState] = {}

    def _container(self, key: ContainerKey, t_ns: int) -> ContainerState:
        state = self.containers.get(key)
        if state is None:
            aggregate_key = (key[0], key[1], key[2], key[4])
            aggregate = self.aggregates.get(aggregate_key)
            if aggregate is None:
                aggregate = AggregateState(self.params, creation_ns=t_ns)
                self.aggregates[aggregate_key] = aggregate
            state = ContainerState(aggregate)
            self.containers[key] = state
        return state

    def ingest(self, samples: PreparedSamples) -> Counter[str]:
        """Feed samples in canonical order: per row its CPU sample, memory sample, then OOM kill.

        Returns the count of samples dropped by the container state, by reason.
        """
        skipped: Counter[str] = Counter()
        keys = samples.container_keys.rows()
        for i in range(len(samples)):
            t_ns = int(samples.t_ns[i])
            key = keys[int(samples.container[i])]
            state = self._container((key[0], key[1], key[2], key[3], key[4]), t_ns)
            if samples.cpu_valid[i] and not state.add_cpu_sample(
                int(samples.cpu_millicores[i]), t_ns
            ):
                skipped["cpu_not_newer"] += 1
            if samples.memory_valid[i] and not state.add_memory_sample(
                int(samples.memory_bytes[i]), t_ns
            ):
                skipped["memory_older"] += 1
            if samples.oom[i] and not state.record_oom(t_ns, int(samples.oom_memory_bytes[i])):
                skipped["oom_too_old"] += 1
        return skipped

    def to_store(self) -> AggregateStore:
        """The same state as a dense store (rows in key order)."""
        return AggregateStore.from_states(self.params, self.aggregates, self.containers)
