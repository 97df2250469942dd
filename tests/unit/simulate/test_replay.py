"""The replay simulator against hand-computed cases."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl
import pytest

from analytics.arrays import Int64Array
from analytics.estimators import Resource
from analytics.model_params import ModelParams
from analytics.simulate.replay import (
    METRIC_KEYS,
    SimulationError,
    _CrashLoops,
    _kills,
    prepare_trace,
    simulate,
    simulate_many,
)
from analytics.store import EstimationInput
from analytics.strategies import STRATEGIES, PodEstimators, Strategy, register_strategy
from analytics.trace import recommend_trace

MIB = 1024 * 1024
GIB = 1024 * MIB
START = dt.datetime(2024, 3, 1, 10, 0)  # on the hour: intervals start at START


def constant_trace(
    *,
    minutes: int,
    cpu: float = 0.25,
    memory: float = 512 * MIB,
    cpu_request: float = 1.0,
    memory_request: float = GIB,
    memory_limit: float | None = 2 * GIB,
    pod: str = "web-0",
    containers: tuple[str, ...] = ("app",),
    start: dt.datetime = START,
) -> pl.DataFrame:
    """Constant usage of one pod, sampled once a minute, with its starting requests."""
    rows = [
        {
            "timestamp": start + dt.timedelta(minutes=i),
            "cluster": "c",
            "namespace": "ns",
            "workload": "web",
            "pod": pod,
            "container": container,
            "cpu": cpu,
            "memory": memory,
            "cpu_request": cpu_request,
            "memory_request": memory_request,
            "memory_limit": memory_limit,
        }
        for i in range(minutes)
        for container in containers
    ]
    return pl.DataFrame(rows, schema_overrides={"memory_limit": pl.Float64})


@dataclass(frozen=True)
class Fixed:
    """An estimator that always says the same amount."""

    resource: Resource
    amount: int

    def estimate(self, aggregates: EstimationInput) -> Int64Array:
        return np.full(len(aggregates), self.amount, dtype=np.int64)

    def describe(self) -> str:
        return f"{self.amount}"


@pytest.fixture
def fixed_strategy() -> Iterator[str]:
    """Target 500m / 768Mi, bounds [400m, 600m] and [700Mi, 800Mi], whatever the usage."""
    cpu, memory = Resource.CPU, Resource.MEMORY
    estimators = PodEstimators(
        target_cpu=Fixed(cpu, 500),
        target_memory=Fixed(memory, 768 * MIB),
        lower_cpu=Fixed(cpu, 400),
        lower_memory=Fixed(memory, 700 * MIB),
        upper_cpu=Fixed(cpu, 600),
        upper_memory=Fixed(memory, 800 * MIB),
    )
    register_strategy(Strategy("test-fixed", "fixed", ModelParams, lambda _: estimators))
    yield "test-fixed"
    del STRATEGIES["test-fixed"]


def test_constant_usage_and_request_give_exact_slack() -> None:
    # One interval longer than the trace: the requests never change.
    frame = constant_trace(minutes=120)
    result = simulate(frame, "vpa", interval_s=10 * 86400)
    total = result.total
    assert total.cpu_slack_core_hours == pytest.approx(0.75 * 2)
    assert total.memory_slack_gib_hours == pytest.approx(0.5 * 2)
    assert total.cpu_shortage_core_hours == 0
    assert total.oom_kills == 0
    assert total.resizes == 0
    assert total.cpu_request_core_hours == pytest.approx(2.0)
    assert total.memory_request_gib_hours == pytest.approx(2.0)
    assert total.cpu_relative_slack == pytest.approx(0.75)
    assert total.memory_relative_slack == pytest.approx(0.5)


def test_usage_above_the_request_is_shortage() -> None:
    frame = constant_trace(minutes=60, cpu=1.5, cpu_request=1.0)
    total = simulate(frame, "vpa", interval_s=10 * 86400).total
    assert total.cpu_shortage_core_hours == pytest.approx(0.5)
    assert total.cpu_slack_core_hours == 0


def test_a_limit_below_usage_kills_once_per_restart_period() -> None:
    frame = constant_trace(
        minutes=60, memory=600 * MIB, memory_request=400 * MIB, memory_limit=500 * MIB
    )
    result = simulate(frame, "vpa", interval_s=10 * 86400)
    # Over the limit for the whole hour: killed at 0, 5, ..., 55 minutes.
    assert result.total.oom_kills == 12
    # While killed the container is seen at its limit, above its request: no memory slack.
    assert result.total.memory_slack_gib_hours == 0
    once = simulate(frame, "vpa", interval_s=10 * 86400, oom_restart_s=86400)
    assert once.total.oom_kills == 1


def test_no_limit_no_kills() -> None:
    frame = constant_trace(
        minutes=60, memory=600 * MIB, memory_request=400 * MIB, memory_limit=None
    )
    assert simulate(frame, "vpa", interval_s=10 * 86400).total.oom_kills == 0
    assert simulate(frame.drop("memory_limit"), "vpa").total.oom_kills == 0


def test_out_of_bounds_request_takes_the_target(fixed_strategy: str) -> None:
    frame = constant_trace(minutes=180)  # 3 intervals of 1 hour
    result = simulate(frame, fixed_strategy)
    timeline = result.timeline
    assert timeline.cpu_request_millicores[:, 0].tolist() == [1000, 500, 500]
    assert timeline.memory_request_bytes[:, 0].tolist() == [GIB, 768 * MIB, 768 * MIB]
    # The limit keeps the initial limit/request ratio (2).
    assert timeline.memory_limit_bytes[:, 0].tolist() == [2 * GIB, 1536 * MIB, 1536 * MIB]
    total = result.total
    assert total.resizes == 1
    assert total.cpu_slack_core_hours == pytest.approx(0.75 + 2 * 0.25)
    assert total.memory_slack_gib_hours == pytest.approx(0.5 + 2 * 0.25)
    assert total.cpu_request_core_hours == pytest.approx(1.0 + 2 * 0.5)


def test_request_inside_the_bounds_is_left_alone(fixed_strategy: str) -> None:
    frame = constant_trace(minutes=180, cpu_request=0.45, memory_request=750 * MIB)
    result = simulate(frame, fixed_strategy)
    assert result.total.resizes == 0
    assert result.timeline.cpu_request_millicores[:, 0].tolist() == [450, 450, 450]


def test_one_container_out_of_bounds_resizes_the_whole_pod(fixed_strategy: str) -> None:
    inside = constant_trace(
        minutes=120, containers=("b",), cpu_request=0.45, memory_request=750 * MIB
    )
    outside = constant_trace(minutes=120, containers=("a",))
    result = simulate(pl.concat([inside, outside]), fixed_strategy)
    assert result.total.resizes == 1
    assert result.timeline.cpu_request_millicores[1].tolist() == [500, 500]


def test_a_pod_starting_later_gets_the_target_at_admission(fixed_strategy: str) -> None:
    first = constant_trace(minutes=180, cpu_request=0.45, memory_request=750 * MIB)
    later = constant_trace(minutes=60, pod="web-1", start=START + dt.timedelta(minutes=90))
    result = simulate(pl.concat([first, later]), fixed_strategy)
    assert result.total.resizes == 0
    pods = result.timeline.container_keys["pod"].to_list()
    assert pods == ["web-0", "web-1"]
    # web-1 runs from 11:30 with the target, not its recorded 1 core.
    assert result.timeline.cpu_request_millicores[:, 1].tolist() == [1000, 500, 500]
    assert result.total.cpu_slack_core_hours == pytest.approx(3 * 0.2 + 1.0 * 0.25)


def test_the_first_recommendation_is_the_engines_on_the_samples_so_far() -> None:
    # After an hour the upper bound is still wide (7.52 cores): 10 cores is outside it.
    frame = constant_trace(
        minutes=3 * 60, cpu_request=10.0, memory_request=4 * GIB, memory_limit=4 * GIB
    )
    result = simulate(frame, "vpa")
    first_hour = frame.filter(pl.col("timestamp") < START + dt.timedelta(hours=1))
    (expected,) = recommend_trace(first_hour, "vpa")
    assert result.timeline.cpu_request_millicores[1, 0] == expected.target.cpu_millicores
    assert result.timeline.memory_request_bytes[1, 0] == expected.target.memory_whole_bytes
    assert result.total.resizes == 1  # constant usage: the target stays inside later bounds


def test_an_oom_kill_feeds_back_like_a_real_one() -> None:
    frame = constant_trace(
        minutes=120, memory=600 * MIB, memory_request=400 * MIB, memory_limit=500 * MIB
    )
    result = simulate(frame, "vpa")
    # What the recommender saw in the first hour: memory at the limit, a kill every 5 minutes
    # with the request at the kill.
    seen = frame.filter(pl.col("timestamp") < START + dt.timedelta(hours=1)).with_columns(
        pl.lit(float(500 * MIB)).alias("memory"),
        ((pl.col("timestamp") - START).dt.total_minutes() % 5 == 0).alias("oom"),
    )
    (expected,) = recommend_trace(seen, "vpa")
    assert result.timeline.memory_request_bytes[1, 0] == expected.target.memory_whole_bytes
    assert result.timeline.memory_limit_bytes[1, 0] > 600 * MIB
    assert result.timeline.oom_kills[:, 0].tolist() == [12, 0]
    assert result.total.oom_kills == 12


def test_crash_loops_carry_over_interval_boundaries() -> None:
    minute = 60 * 10**9
    loops = _CrashLoops.none(2)
    container = np.array([0, 1, 0, 1, 0, 1], dtype=np.int64)
    t_ns = np.array([0, 0, 1, 1, 2, 2], dtype=np.int64) * minute
    over = np.array([True, False, True, True, True, True])
    kills = _kills(container, t_ns, over, loops, 3 * minute)
    assert kills.tolist() == [True, False, False, True, False, False]
    # Minutes 3 and 4: container 0 has been over since minute 0 (a kill at 3), container 1
    # since minute 1 (a kill at 4); then container 0 drops below and goes over again at 6.
    container = np.array([0, 1, 0, 1, 0, 0], dtype=np.int64)
    t_ns = np.array([3, 3, 4, 4, 5, 6], dtype=np.int64) * minute
    over = np.array([True, True, True, True, False, True])
    kills = _kills(container, t_ns, over, loops, 3 * minute)
    assert kills.tolist() == [True, False, False, True, False, True]


def test_results_per_workload_and_json_keys() -> None:
    web = constant_trace(minutes=60)
    api = constant_trace(minutes=60, cpu=0.5).with_columns(pl.lit("api").alias("workload"))
    result = simulate(pl.concat([web, api]), "vpa", interval_s=10 * 86400)
    assert [w.workload for w in result.workloads] == ["api", "web"]
    assert result.workloads[0].metrics.cpu_slack_core_hours == pytest.approx(0.5)
    assert result.workloads[1].metrics.cpu_slack_core_hours == pytest.approx(0.75)
    data = result.to_dict()
    assert list(data) == ["strategy", *METRIC_KEYS, "workloads"]
    assert data["strategy"] == "vpa"
    assert data["cpu_slack_core_hours"] == pytest.approx(1.25)
    workloads = data["workloads"]
    assert isinstance(workloads, list)
    assert list(workloads[0]) == ["cluster", "namespace", "workload", *METRIC_KEYS]


def test_sample_spacing_sets_the_weight_of_a_sample() -> None:
    frame = constant_trace(minutes=60).gather_every(5)  # one sample per 5 minutes
    assert prepare_trace(frame).sample_s == 300
    total = simulate(frame, "vpa", interval_s=10 * 86400).total
    assert total.cpu_slack_core_hours == pytest.approx(0.75)
    assert prepare_trace(frame, sample_s=60).sample_s == 60


def test_simulate_many_shares_one_preparation_and_reports_progress() -> None:
    frame = constant_trace(minutes=150)
    seen: list[tuple[str, int, int]] = []
    results = simulate_many(
        frame,
        [("vpa", None), ("percentile", {"safety_margin_fraction": 0.3})],
        progress=lambda name, done, total: seen.append((name, done, total)),
    )
    assert [r.strategy for r in results] == ["vpa", "percentile"]
    assert results[1].params == {"safety_margin_fraction": 0.3}
    assert seen == [(name, done, 3) for name in ("vpa", "percentile") for done in (1, 2, 3)]


def test_bad_strategy_or_params_fail_before_any_replay() -> None:
    frame = constant_trace(minutes=10)
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        simulate_many(frame, [("vpa", None), ("nope", None)])
    with pytest.raises(ValueError, match="safety_margin_fraction"):
        simulate_many(frame, [("vpa", {"safety_margin_fraction": -1})])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop("cpu_request"), "missing column 'cpu_request'"),
        (lambda f: f.drop("memory_request"), "missing column 'memory_request'"),
        (
            lambda f: f.with_columns(pl.lit(None, dtype=pl.Float64).alias("cpu_request")),
            "column 'cpu_request' has no value for container c/ns/web/web-0/app",
        ),
        (
            lambda f: f.with_columns(pl.lit(1.0).alias("memory_limit")),
            "memory_limit is below memory_request",
        ),
        (lambda f: f.head(0), "no samples"),
    ],
)
def test_traces_that_cannot_be_simulated(change, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SimulationError, match=message):
        prepare_trace(change(constant_trace(minutes=10)))


def test_bad_settings() -> None:
    frame = constant_trace(minutes=10)
    with pytest.raises(SimulationError, match="interval_s"):
        simulate(frame, interval_s=0)
    with pytest.raises(SimulationError, match="oom_restart_s"):
        simulate(frame, oom_restart_s=-1)


def test_baselines_are_registered_strategies() -> None:
    frame = constant_trace(minutes=120)
    results = simulate_many(frame, [("krr-simple", None), ("autopilot", {"bound_fraction": 0})])
    assert [r.strategy for r in results] == ["krr-simple", "autopilot"]
    assert results[0].total.resizes == 1
    assert {"krr-simple", "autopilot"} <= set(STRATEGIES)
    with pytest.raises(ValueError, match="known: autopilot, default, krr-simple, percentile, vpa"):
        simulate(frame, "magic")
