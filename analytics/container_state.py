"""Per-container state with the stock recommender's semantics, one sample at a time.

`AggregateState` is what a recommendation is computed from: the CPU usage histogram, the memory
peak histogram and the CPU sample bookkeeping of one workload container, shared by its replicas.
`ContainerState` is one running container (a container of one pod): it deduplicates CPU samples
and turns memory samples and OOM kills into one peak per aggregation interval.

CPU amounts are integer millicores and memory amounts integer bytes, as upstream's
`ResourceAmount`; times are int64 nanoseconds since the Unix epoch.
"""

from __future__ import annotations

import struct
from typing import Final

from analytics.go_semantics import UNSET_NS, resource_amount
from analytics.histogram import DecayingHistogram, serialized_size
from analytics.histogram_layout import CPU_LAYOUT, MEMORY_LAYOUT, MIN_SAMPLE_WEIGHT
from analytics.model_params import ModelParams

__all__ = ["AggregateState", "ContainerState"]

MEMORY_PEAK_WEIGHT: Final = 1.0
"""Weight of one memory peak before decay."""

_COUNTERS: Final = struct.Struct("<qqqq")


class AggregateState:
    """Histograms and CPU sample bookkeeping of one workload container (upstream's aggregate)."""

    def __init__(self, params: ModelParams, creation_ns: int = UNSET_NS) -> None:
        self.params = params
        self.cpu = DecayingHistogram(CPU_LAYOUT, params.cpu_half_life_ns)
        self.memory = DecayingHistogram(MEMORY_LAYOUT, params.memory_half_life_ns)
        self.first_sample_start_ns: int = UNSET_NS
        self.last_sample_start_ns: int = UNSET_NS
        self.total_samples_count = 0
        self.creation_ns = creation_ns

    def add_cpu_sample(self, millicores: int, t_ns: int) -> None:
        """Aggregate one CPU usage sample (already deduplicated by the container)."""
        self.cpu.add_sample(millicores / 1000.0, MIN_SAMPLE_WEIGHT, t_ns)
        self.last_sample_start_ns = max(self.last_sample_start_ns, t_ns)
        if self.first_sample_start_ns == UNSET_NS or t_ns < self.first_sample_start_ns:
            self.first_sample_start_ns = t_ns
        self.total_samples_count += 1

    def add_memory_peak(self, memory_bytes: int, t_ns: int) -> None:
        """Add one memory peak, timestamped at the end of its aggregation interval."""
        self.memory.add_sample(float(memory_bytes), MEMORY_PEAK_WEIGHT, t_ns)

    def subtract_memory_peak(self, memory_bytes: int, t_ns: int) -> None:
        """Remove a peak added earlier with the same value and time."""
        self.memory.subtract_sample(float(memory_bytes), MEMORY_PEAK_WEIGHT, t_ns)

    def merge(self, other: AggregateState) -> None:
        """Fold other into this state, as upstream merges aggregates of one VPA."""
        self.cpu.merge(other.cpu)
        self.memory.merge(other.memory)
        if self.first_sample_start_ns == UNSET_NS or (
            other.first_sample_start_ns != UNSET_NS
            and other.first_sample_start_ns < self.first_sample_start_ns
        ):
            self.first_sample_start_ns = other.first_sample_start_ns
        self.last_sample_start_ns = max(self.last_sample_start_ns, other.last_sample_start_ns)
        self.total_samples_count += other.total_samples_count

    def to_bytes(self) -> bytes:
        """Compact serialized form (counters, then the CPU and memory histograms)."""
        counters = _COUNTERS.pack(
            self.first_sample_start_ns,
            self.last_sample_start_ns,
            self.total_samples_count,
            self.creation_ns,
        )
        return counters + self.cpu.to_bytes() + self.memory.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes, params: ModelParams) -> AggregateState:
        """Inverse of `to_bytes`; raises LayoutMismatchError for histograms of another layout."""
        if len(data) < _COUNTERS.size:
            raise ValueError("serialized aggregate state is truncated")
        first, last, count, creation = _COUNTERS.unpack_from(data)
        state = cls(params, creation)
        state.first_sample_start_ns, state.last_sample_start_ns = first, last
        state.total_samples_count = count
        rest = data[_COUNTERS.size :]
        state.cpu = DecayingHistogram.from_bytes(rest, CPU_LAYOUT, params.cpu_half_life_ns)
        rest = rest[serialized_size(rest) :]
        state.memory = DecayingHistogram.from_bytes(rest, MEMORY_LAYOUT, params.memory_half_life_ns)
        return state


class ContainerState:
    """One running container feeding an aggregate: CPU dedup and per-interval memory peaks."""

    def __init__(self, aggregate: AggregateState) -> None:
        self.aggregate = aggregate
        self.last_cpu_sample_start_ns: int = UNSET_NS
        self.window_end_ns: int = UNSET_NS
        self.last_memory_sample_start_ns: int = UNSET_NS
        self.memory_peak_bytes = 0
        self.oom_peak_bytes = 0

    @property
    def _interval_ns(self) -> int:
        return self.aggregate.params.memory_interval_ns

    def add_cpu_sample(self, millicores: int, t_ns: int) -> bool:
        """Add a CPU sample unless invalid or not newer than the last one; True if added."""
        if millicores < 0 or t_ns <= self.last_cpu_sample_start_ns:
            return False
        self.aggregate.add_cpu_sample(millicores, t_ns)
        self.last_cpu_sample_start_ns = t_ns
        return True

    def add_memory_sample(self, memory_bytes: int, t_ns: int, is_oom: bool = False) -> bool:
        """Fold a memory sample into the current interval's peak; True unless dropped.

        Non-OOM samples older than the last memory sample are dropped. The first sample anchors
        the intervals: they end at first + k * interval.
        """
        if memory_bytes < 0 or (not is_oom and t_ns < self.last_memory_sample_start_ns):
            return False
        self.last_memory_sample_start_ns = t_ns
        if self.window_end_ns == UNSET_NS:
            self.window_end_ns = t_ns
        add_new_peak = False
        if t_ns < self.window_end_ns:
            old_peak = max(self.memory_peak_bytes, self.oom_peak_bytes)
            if old_peak != 0 and memory_bytes > old_peak:
                self.aggregate.subtract_memory_peak(old_peak, self.window_end_ns)
                add_new_peak = True
        else:
            elapsed = t_ns - self.window_end_ns
            self.window_end_ns += elapsed - elapsed % self._interval_ns + self._interval_ns
            self.memory_peak_bytes = 0
            self.oom_peak_bytes = 0
            add_new_peak = True
        if add_new_peak:
            self.aggregate.add_memory_peak(memory_bytes, self.window_end_ns)
            if is_oom:
                self.oom_peak_bytes = memory_bytes
            else:
                self.memory_peak_bytes = memory_bytes
        return True

    def record_oom(self, t_ns: int, request_bytes: int) -> bool:
        """Record an OOM kill as a bumped-up memory sample; False if it is too old to count.

        The memory used is the larger of the request at the kill and this interval's usage peak
        (the OOM peak is left out so repeated kills do not compound).
        """
        if self.window_end_ns != UNSET_NS and t_ns < self.window_end_ns - self._interval_ns:
            return False
        params = self.aggregate.params
        used = max(request_bytes, self.memory_peak_bytes)
        needed = max(
            used + resource_amount(params.oom_min_bump_up_bytes),
            resource_amount(float(used) * params.oom_bump_up_ratio),
        )
        return self.add_memory_sample(needed, t_ns, is_oom=True)
