"""Per-container state: CPU dedup, memory peaks per interval, OOM bumps (upstream semantics)."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.container_state import AggregateState, ContainerState
from analytics.go_semantics import UNSET_NS
from analytics.histogram import LayoutMismatchError
from analytics.histogram_layout import MEMORY_LAYOUT
from analytics.model_params import ModelParams

MINUTE = 60 * 10**9
HOUR = 60 * MINUTE
DAY = 24 * HOUR
T0 = 1_709_285_400 * 10**9
MIB = 1024 * 1024


def container(**params: float) -> ContainerState:
    return ContainerState(AggregateState(ModelParams(**params)))


def memory_peaks(state: ContainerState) -> dict[int, float]:
    weights = state.aggregate.memory.weights
    return {int(b): float(weights[b]) for b in np.flatnonzero(weights)}


def bucket(memory_bytes: float) -> int:
    return int(MEMORY_LAYOUT.bucket_index(np.array([memory_bytes]))[0])


def test_cpu_samples_not_newer_than_the_last_are_dropped() -> None:
    state = container()
    assert state.add_cpu_sample(100, T0)
    assert not state.add_cpu_sample(200, T0)
    assert not state.add_cpu_sample(200, T0 - MINUTE)
    assert not state.add_cpu_sample(-1, T0 + MINUTE)
    assert state.add_cpu_sample(300, T0 + MINUTE)
    aggregate = state.aggregate
    assert aggregate.total_samples_count == 2
    assert (aggregate.first_sample_start_ns, aggregate.last_sample_start_ns) == (T0, T0 + MINUTE)


def test_one_peak_per_interval_anchored_at_the_first_sample() -> None:
    state = container()
    state.add_memory_sample(100 * MIB, T0)
    assert state.window_end_ns == T0 + DAY
    state.add_memory_sample(300 * MIB, T0 + HOUR)  # replaces the interval's peak
    state.add_memory_sample(200 * MIB, T0 + 2 * HOUR)  # below the peak: ignored
    assert set(memory_peaks(state)) == {bucket(300 * MIB)}
    state.add_memory_sample(50 * MIB, T0 + 3 * DAY + HOUR)  # two empty intervals later
    assert state.window_end_ns == T0 + 4 * DAY
    assert set(memory_peaks(state)) == {bucket(300 * MIB), bucket(50 * MIB)}
    assert state.memory_peak_bytes == 50 * MIB


def test_older_memory_samples_are_dropped_but_equal_times_kept() -> None:
    state = container()
    assert state.add_memory_sample(100 * MIB, T0)
    assert state.add_memory_sample(200 * MIB, T0)
    assert not state.add_memory_sample(900 * MIB, T0 - 1)
    assert state.memory_peak_bytes == 200 * MIB


def test_interval_opened_at_zero_usage_stays_frozen() -> None:
    # Upstream only replaces a non-zero peak: an interval whose first sample is 0 keeps peak 0.
    state = container()
    state.add_memory_sample(0, T0)
    state.add_memory_sample(500 * MIB, T0 + HOUR)
    assert set(memory_peaks(state)) == {0}


def test_oom_bumps_the_larger_of_request_and_usage_peak() -> None:
    state = container()
    state.add_memory_sample(800 * MIB, T0)
    assert state.record_oom(T0 + HOUR, request_bytes=500 * MIB)
    assert state.oom_peak_bytes == 960 * MIB  # 800Mi x 1.2 beats 800Mi + 100Mi
    assert set(memory_peaks(state)) == {bucket(960 * MIB)}
    small = container()
    small.add_memory_sample(100 * MIB, T0)
    small.record_oom(T0 + HOUR, request_bytes=200 * MIB)
    assert small.oom_peak_bytes == 300 * MIB  # 200Mi + 100Mi beats 200Mi x 1.2


def test_repeated_ooms_do_not_compound() -> None:
    state = container()
    state.add_memory_sample(800 * MIB, T0)
    state.record_oom(T0 + HOUR, 500 * MIB)
    state.record_oom(T0 + 2 * HOUR, 500 * MIB)
    assert state.oom_peak_bytes == 960 * MIB


def test_ooms_older_than_the_previous_interval_are_discarded() -> None:
    state = container()
    state.add_memory_sample(100 * MIB, T0)
    state.add_memory_sample(100 * MIB, T0 + 2 * DAY)  # window now ends at T0 + 3 days
    assert not state.record_oom(T0 + 2 * DAY - HOUR, 500 * MIB)
    assert state.record_oom(T0 + 2 * DAY + HOUR, 500 * MIB)


def test_first_event_can_be_an_oom() -> None:
    state = container()
    assert state.record_oom(T0, 0)
    assert state.oom_peak_bytes == 100 * MIB
    assert state.window_end_ns == T0 + DAY
    assert state.last_cpu_sample_start_ns == UNSET_NS


def test_custom_bump_parameters() -> None:
    state = container(oom_bump_up_ratio=2.0, oom_min_bump_up_bytes=0)
    state.record_oom(T0, 100 * MIB)
    assert state.oom_peak_bytes == 200 * MIB


def test_aggregate_round_trips_and_stays_small() -> None:
    state = container()
    for minute in range(3 * 24 * 60):
        state.add_cpu_sample(50 + minute % 900, T0 + minute * MINUTE)
        state.add_memory_sample((100 + minute % 700) * MIB, T0 + minute * MINUTE)
    data = state.aggregate.to_bytes()
    assert len(data) <= 4096
    restored = AggregateState.from_bytes(data, state.aggregate.params)
    assert restored.cpu == state.aggregate.cpu
    assert restored.memory == state.aggregate.memory
    assert restored.total_samples_count == state.aggregate.total_samples_count
    with pytest.raises(LayoutMismatchError, match="half-life"):
        AggregateState.from_bytes(data, ModelParams(cpu_histogram_decay_half_life_s=3600))


def test_merge_combines_bookkeeping() -> None:
    params = ModelParams()
    first, second = AggregateState(params), AggregateState(params)
    first.add_cpu_sample(100, T0 + HOUR)
    second.add_cpu_sample(100, T0)
    second.add_cpu_sample(100, T0 + 2 * HOUR)
    first.merge(second)
    assert first.total_samples_count == 3
    assert (first.first_sample_start_ns, first.last_sample_start_ns) == (T0, T0 + 2 * HOUR)
