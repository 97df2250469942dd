"""Baseline strategies (krr-simple, autopilot) on tiny traces, against numbers worked out by hand.

Histogram percentiles answer with the end of the bucket the percentile falls in. CPU bucket i
starts at 0.2 * (1.05**i - 1) cores and memory bucket i at 2e8 * (1.05**i - 1) bytes, so:

| usage | bucket | bucket end |
|---|---|---|
| 0.001 core | 0 | 0.01 core |
| 0.1 core | 8 | 0.2 * (1.05**9 - 1) = 0.110266 core |
| 0.2 core | 14 | 0.2 * (1.05**15 - 1) = 0.215786 core |
| 1.0 core | 36 | 0.2 * (1.05**37 - 1) = 1.016281 cores |
| 2.0 cores | 49 | 0.2 * (1.05**50 - 1) = 2.093480 cores |
| 5 MiB | 0 | 1e7 bytes |
| 500 MiB | 26 | 2e8 * (1.05**27 - 1) = 546691264.47 bytes |
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from analytics.recommendation import ContainerRecommendation
from analytics.simulate.replay import known_strategies, strategy_named
from analytics.strategies import STRATEGIES, ParameterError, get_strategy
from analytics.strategies_baselines import BASELINES
from analytics.trace import recommend_trace

MIB = 1024 * 1024
START = dt.datetime(2024, 3, 1, 10, 0)


def trace(samples: list[tuple[int, str, float, float]]) -> pl.DataFrame:
    """Rows of (minute, pod, cpu cores, memory bytes) of workload web, container app."""
    return pl.DataFrame(
        [
            {
                "timestamp": START + dt.timedelta(minutes=minute),
                "cluster": "c",
                "namespace": "ns",
                "workload": "web",
                "pod": pod,
                "container": "app",
                "cpu": cpu,
                "memory": memory,
            }
            for minute, pod, cpu, memory in samples
        ]
    )


def recommend(frame: pl.DataFrame, strategy: str, **params: object) -> ContainerRecommendation:
    (recommendation,) = recommend_trace(frame, strategy, params)
    return recommendation


def test_registered_on_demand_and_known_to_the_simulator() -> None:
    assert {"krr-simple", "autopilot"} <= set(STRATEGIES)
    assert "KRR" in get_strategy("krr-simple").description
    assert "Autopilot" in get_strategy("autopilot").description
    assert set(BASELINES) <= set(known_strategies())
    assert strategy_named("autopilot") is BASELINES["autopilot"]
    assert strategy_named("vpa") is STRATEGIES["vpa"]


def test_krr_cpu_is_the_95th_percentile() -> None:
    # 18 samples at 0.2 core then 2 at 2 cores: 10% of the time at 2 cores, so p95 is there.
    samples = [(m, "p", 0.2, 300 * MIB) for m in range(18)]
    samples += [(m, "p", 2.0, 300 * MIB) for m in (18, 19)]
    assert recommend(trace(samples), "krr-simple").target.cpu_millicores == 2093
    # 98 at 0.2 core and 2 at 2 cores: 2% of the time, below p95.
    samples = [(m, "p", 0.2, 300 * MIB) for m in range(98)]
    samples += [(m, "p", 2.0, 300 * MIB) for m in (98, 99)]
    assert recommend(trace(samples), "krr-simple").target.cpu_millicores == 215


def test_krr_memory_is_the_peak_plus_15_percent() -> None:
    samples = [(m, "p", 0.2, 300 * MIB) for m in range(30)]
    samples[7] = (7, "p", 0.2, 500 * MIB)
    recommendation = recommend(trace(samples), "krr-simple")
    # int(546691264.47) = 546691264; + int(546691264 * 0.15) = 82003689.
    assert recommendation.target.memory_whole_bytes == 546691264 + 82003689
    # Bounds: -/+ 10% of the target, truncated.
    assert recommendation.lower_bound.memory_whole_bytes == int(628694953 * 0.9)
    assert recommendation.upper_bound.memory_whole_bytes == int(628694953 * 1.1)
    assert recommendation.lower_bound.cpu_millicores == int(215 * 0.9)
    assert recommendation.upper_bound.cpu_millicores == int(215 * 1.1)


def test_krr_minimums() -> None:
    idle = trace([(m, "p", 0.001, 5 * MIB) for m in range(30)])
    recommendation = recommend(idle, "krr-simple")
    # 0.01 core (bucket end) = 10m, the minimum; 1e7 * 1.15 < 100 MiB, the minimum.
    assert recommendation.target.cpu_millicores == 10
    assert recommendation.target.memory_whole_bytes == 100 * MIB
    lower = recommend(idle, "krr-simple", min_memory_mib=1, min_cpu_millicores=0)
    assert lower.target.memory_whole_bytes == 10_000_000 + 1_500_000


def test_krr_parameters() -> None:
    samples = [(m, "p", 0.2, 300 * MIB) for m in range(18)]
    samples += [(m, "p", 2.0, 500 * MIB) for m in (18, 19)]
    recommendation = recommend(
        trace(samples), "krr-simple", cpu_percentile=0.5, memory_buffer_fraction=0.0
    )
    assert recommendation.target.cpu_millicores == 215
    assert recommendation.target.memory_whole_bytes == 546691264


def test_autopilot_cpu_is_a_percentile_of_the_load() -> None:
    # 24 replicas at 0.1 core and one at 1 core, every minute: 1 core is 4% of the time
    # (below p95) but 1.016 / (24 * 0.110 + 1.016) = 28% of the load (above).
    pods = [(f"p{i}", 0.1) for i in range(24)] + [("busy", 1.0)]
    frame = trace([(m, pod, cpu, 300 * MIB) for m in range(10) for pod, cpu in pods])
    assert recommend(frame, "autopilot").target.cpu_millicores == 1016
    plain = recommend(frame, "autopilot", cpu_load_adjusted=False)
    assert plain.target.cpu_millicores == 110


def test_autopilot_memory_is_the_peak_plus_10_percent() -> None:
    samples = [(m, "p", 0.2, 300 * MIB) for m in range(30)]
    samples[20] = (20, "p", 0.2, 500 * MIB)
    recommendation = recommend(trace(samples), "autopilot")
    # int(546691264.47) = 546691264; + int(546691264 * 0.1) = 54669126.
    assert recommendation.target.memory_whole_bytes == 546691264 + 54669126
    assert recommendation.target.cpu_millicores == 215
    assert recommendation.upper_bound.cpu_millicores == int(215 * 1.1)


def test_autopilot_forgets_cpu_faster_than_krr() -> None:
    # A day at 2 cores, then a day at 0.2 core: with a 12 h half-life the old load has a
    # quarter of the weight of the new, yet still 2.09 * 0.25 / (2.09 * 0.25 + 0.216) = 71% of
    # the load-adjusted histogram; as a plain percentile it is 20% of the time, above p95.
    day = 24 * 60
    samples = [(m, "p", 2.0, 300 * MIB) for m in range(day)]
    samples += [(m, "p", 0.2, 300 * MIB) for m in range(day, 2 * day)]
    frame = trace(samples)
    assert recommend(frame, "krr-simple").target.cpu_millicores == 2093
    assert recommend(frame, "autopilot").target.cpu_millicores == 2093
    # With a 2 h half-life the first day weighs 2**-12 of the second: p95 is the new level.
    quick = recommend(frame, "autopilot", cpu_histogram_decay_half_life_s=7200)
    assert quick.target.cpu_millicores == 215


@pytest.mark.parametrize(
    ("strategy", "params", "field"),
    [
        ("krr-simple", {"bound_fraction": 1.0}, "bound_fraction"),
        ("krr-simple", {"cpu_percentile": 95}, "cpu_percentile"),
        ("autopilot", {"memory_margin_fraction": -0.1}, "memory_margin_fraction"),
        ("autopilot", {"target_cpu_percentile": 0.9}, "unknown parameter"),
    ],
)
def test_bad_parameters_name_the_field(
    strategy: str, params: dict[str, object], field: str
) -> None:
    with pytest.raises(ParameterError, match=field):
        get_strategy(strategy).parse_params(params)
