"""The safety guards between the engine and the status write: the invariants, property-tested."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analytics.quantity import (
    format_cpu_millicores,
    format_memory_bytes,
    parse_cpu_millicores,
    parse_memory_bytes,
)
from recommender.vpa.capping import apply_policy
from recommender.vpa.objects import (
    ContainerResourcePolicy,
    PodResourcePolicy,
    RecommendedContainerResources,
    RecommendedPodResources,
)
from recommender.vpa.safety import Observed, SafetyLimits, guard

MI = 1024**2


def _entry(cpu_m: int, memory: int, name: str = "app") -> RecommendedContainerResources:
    values = {"cpu": format_cpu_millicores(cpu_m), "memory": format_memory_bytes(memory)}
    return RecommendedContainerResources(
        containerName=name,
        target=values,
        lowerBound=values,
        upperBound=values,
        uncappedTarget=values,
    )


def _written(cpu_m: int, memory: int) -> RecommendedPodResources:
    return RecommendedPodResources(containerRecommendations=(_entry(cpu_m, memory),))


def _target(entry: RecommendedContainerResources) -> tuple[int, int]:
    return parse_cpu_millicores(entry.target["cpu"]), parse_memory_bytes(entry.target["memory"])


fractions = st.one_of(st.none(), st.floats(0, 3, allow_nan=False))
decreases = st.one_of(st.none(), st.floats(0, 1, allow_nan=False))
cpus = st.integers(1, 64_000)
memories = st.integers(1, 256 * 1024 * MI)


@given(
    old=st.tuples(cpus, memories),
    new=st.tuples(cpus, memories),
    peak=st.one_of(st.none(), memories),
    oom=st.booleans(),
    up=fractions,
    down=decreases,
    margin=fractions,
)
def test_the_invariants_hold(
    *,
    old: tuple[int, int],
    new: tuple[int, int],
    peak: int | None,
    oom: bool,
    up: float | None,
    down: float | None,
    margin: float | None,
) -> None:
    limits = SafetyLimits(max_increase=up, max_decrease=down, memory_peak_margin=margin)
    observed = {"app": Observed(memory_peak_bytes=peak, oom_killed=oom)}
    (entry,) = guard([_entry(*new)], _written(*old), observed, limits)
    cpu, memory = _target(entry)
    for value, before, proposed in ((cpu, old[0], new[0]), (memory, old[1], new[1])):
        # A guard only holds a target back towards what was written.
        assert min(before, proposed) <= value <= max(before, proposed)
        if down is not None:
            assert value >= math.ceil(before * (1 - down))
        if up is not None:
            assert value <= max(before, math.floor(before * (1 + up)))
    if oom:
        assert memory >= old[1], "an OOM kill never lowers memory"
    if margin is not None and peak is not None and memory < old[1]:
        assert Fraction(memory) >= Fraction(peak) * (1 + Fraction(margin)) - 1
    assert parse_memory_bytes(entry.lower_bound["memory"]) <= memory
    assert parse_memory_bytes(entry.upper_bound["memory"]) >= memory
    assert parse_cpu_millicores(entry.lower_bound["cpu"]) <= cpu
    assert parse_cpu_millicores(entry.upper_bound["cpu"]) >= cpu


@given(
    old=st.tuples(cpus, memories),
    new=st.tuples(cpus, memories),
    bounds=st.tuples(cpus, cpus),
    down=decreases,
)
def test_the_policy_caps_applied_after_the_guards_always_hold(
    old: tuple[int, int], new: tuple[int, int], bounds: tuple[int, int], down: float | None
) -> None:
    low, high = sorted(bounds)
    policy = PodResourcePolicy(
        containerPolicies=(
            ContainerResourcePolicy(
                containerName="app",
                minAllowed={"cpu": format_cpu_millicores(low)},
                maxAllowed={"cpu": format_cpu_millicores(high)},
            ),
        )
    )
    guarded = guard([_entry(*new)], _written(*old), {}, SafetyLimits(max_decrease=down))
    (capped,) = apply_policy(guarded, policy)
    assert low <= parse_cpu_millicores(capped.target["cpu"]) <= high


def test_nothing_written_yet_means_nothing_to_hold_back() -> None:
    limits = SafetyLimits(max_increase=0.1, max_decrease=0.1, memory_peak_margin=0.5)
    (entry,) = guard([_entry(500, 300 * MI)], None, {"app": Observed(900 * MI, True)}, limits)
    assert _target(entry) == (500, 300 * MI)


def test_the_guards_off_change_nothing_but_an_oom() -> None:
    entries = [_entry(100, 100 * MI)]
    assert guard(entries, _written(1000, 1000 * MI), {}, SafetyLimits()) == entries
    (held,) = guard(
        entries, _written(1000, 1000 * MI), {"app": Observed(None, True)}, SafetyLimits()
    )
    assert _target(held) == (100, 1000 * MI)


def test_a_halving_step_and_the_peak_floor() -> None:
    limits = SafetyLimits(max_decrease=0.5, memory_peak_margin=0.25)
    observed = {"app": Observed(memory_peak_bytes=400 * MI)}
    (entry,) = guard([_entry(100, 100 * MI)], _written(1000, 1000 * MI), observed, limits)
    assert _target(entry) == (500, 500 * MI)
    (entry,) = guard([_entry(100, 100 * MI)], _written(1000, 600 * MI), observed, limits)
    assert _target(entry) == (500, 500 * MI), "the peak floor: 400Mi * 1.25"


@pytest.mark.parametrize(
    ("field", "value"), [("max_increase", -0.1), ("max_decrease", 1.5), ("memory_peak_margin", -1)]
)
def test_limits_out_of_range_are_refused_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        SafetyLimits(**{field: value})
