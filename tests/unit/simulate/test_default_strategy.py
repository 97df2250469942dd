"""The `default` strategy on tiny traces, against numbers worked out by hand.

Percentiles are bucket ends (see test_baselines.py): 1.0 core falls in CPU bucket 36, which
ends at 1.016281 cores; 2.0 cores in bucket 49, ending at 2.093480 cores; 500 MiB in memory
bucket 26, ending at 546691264.47 bytes.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from analytics.recommendation import ContainerRecommendation
from analytics.simulate.replay import known_strategies, simulate, strategy_named
from analytics.strategies import ParameterError, get_strategy
from analytics.strategies_default import DEFAULT
from analytics.trace import recommend_trace

MIB = 1024 * 1024
START = dt.datetime(2024, 3, 1, 10, 0)


def trace(samples: list[tuple[int, float, float]]) -> pl.DataFrame:
    """Rows of (minute, cpu cores, memory bytes) of one container."""
    return pl.DataFrame(
        [
            {
                "timestamp": START + dt.timedelta(minutes=minute),
                "cluster": "c",
                "namespace": "ns",
                "workload": "web",
                "pod": "p",
                "container": "app",
                "cpu": cpu,
                "memory": memory,
            }
            for minute, cpu, memory in samples
        ]
    )


def recommend(frame: pl.DataFrame, **params: object) -> ContainerRecommendation:
    (recommendation,) = recommend_trace(frame, "default", params)
    return recommendation


def test_registered_and_known_to_the_simulator() -> None:
    assert get_strategy("default") is DEFAULT
    assert "default" in known_strategies()
    assert strategy_named("default") is DEFAULT
    assert "p90" in DEFAULT.description


def test_parameters_validate_and_errors_name_the_field() -> None:
    params = DEFAULT.parse_params({"cpu_burst_weight": "0.5", "upper_band_fraction": 2})
    assert params.cpu_burst_weight == 0.5  # type: ignore[attr-defined]
    with pytest.raises(ParameterError, match=r"cpu_burst_weight: .*1.*\(got 1.5\)"):
        DEFAULT.parse_params({"cpu_burst_weight": 1.5})
    with pytest.raises(ParameterError, match="lower_band_fraction"):
        DEFAULT.parse_params({"lower_band_fraction": 1})
    with pytest.raises(ParameterError, match="memory_margin_fraction"):
        DEFAULT.parse_params({"memory_margin_fraction": -0.1})
    with pytest.raises(ParameterError, match="magic: unknown parameter"):
        DEFAULT.parse_params({"magic": 1})
    with pytest.raises(ParameterError, match=r"cpu_base_percentile \(0.99\) <= cpu_burst_per"):
        DEFAULT.parse_params({"cpu_base_percentile": 0.99, "cpu_burst_percentile": 0.9})


def test_steady_usage_gets_a_tight_target_and_an_asymmetric_band() -> None:
    frame = trace([(m, 1.0, 500 * MIB) for m in range(30)])
    recommendation = recommend(frame, young_upper_multiplier=0)
    # p90 = p99: no spread, no CPU margin.
    assert recommendation.target.cpu_millicores == 1016
    # int(546691264.47) = 546691264; + int(546691264 * 0.08) = 43735301.
    memory = 546691264 + 43735301
    assert recommendation.target.memory_whole_bytes == memory
    # Bounds: -20% / +40% of the target, truncated (the CPU lower bound is also at most
    # p85 + 15%, here above it).
    assert recommendation.lower_bound.cpu_millicores == int(1016 * 0.8)
    assert recommendation.upper_bound.cpu_millicores == int(1016 * 1.4)
    assert recommendation.lower_bound.memory_whole_bytes == int(memory * 0.8)
    assert recommendation.upper_bound.memory_whole_bytes == int(memory * 1.4)
    # With half an hour of history the upper bound is widened as the VPA widens its own:
    # x (1 + 1 / days), days = min(29 min of lifespan, 30 samples / 1440 a day).
    young = recommend(frame)
    assert young.upper_bound.cpu_millicores == int(int(1016 * 1.4) * (1 + 1440 / 29))
    assert young.lower_bound.cpu_millicores == int(1016 * 0.8)


def test_cpu_adds_a_share_of_the_burst_spread() -> None:
    # 95 samples at 1 core and 5 at 2 cores: p90 is 1.016281 cores, p99 2.093480 cores.
    samples = [(m, 1.0, 500 * MIB) for m in range(95)]
    samples += [(m, 2.0, 500 * MIB) for m in range(95, 100)]
    frame = trace(samples)
    # 1.016281 + 0.05 * (2.093480 - 1.016281) = 1.070141 cores.
    assert recommend(frame).target.cpu_millicores == 1070
    # 1.016281 + 0.12 * (2.093480 - 1.016281) = 1.145545 cores.
    assert recommend(frame, cpu_burst_weight=0.12).target.cpu_millicores == 1145
    assert recommend(frame, cpu_burst_weight=0.1).target.cpu_millicores == 1124
    assert recommend(frame, cpu_burst_weight=0.5).target.cpu_millicores == 1554
    assert recommend(frame, cpu_burst_weight=1.0).target.cpu_millicores == 2093
    # A CPU margin on top: 1.070141 x 1.1 = 1.177155 cores.
    assert recommend(frame, cpu_margin_fraction=0.1).target.cpu_millicores == 1177


def test_minimums() -> None:
    recommendation = recommend(trace([(m, 0.001, 5 * MIB) for m in range(30)]))
    # 0.01 core (bucket end) = 10m; 1e7 * 1.05 bytes is below the 16 MiB minimum.
    assert recommendation.target.cpu_millicores == 10
    assert recommendation.target.memory_whole_bytes == 16 * MIB


def test_replays_in_the_simulator() -> None:
    frame = trace([(m, 1.0, 500 * MIB) for m in range(2 * 1440)]).with_columns(
        cpu_request=pl.lit(4.0), memory_request=pl.lit(2048.0 * MIB)
    )
    result = simulate(frame, "default")
    # Requests 4x the usage leave the upper bound once it is no longer widened for a young
    # history: one resize down, then none (the profile of flat usage keeps the target).
    assert result.total.resizes == 1
    assert result.total.oom_kills == 0
    assert result.total.cpu_shortage_core_hours == 0
