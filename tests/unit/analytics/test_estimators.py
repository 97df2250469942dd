"""Estimators and strategies: upstream's arithmetic, composition, parameters, registry."""

from __future__ import annotations

import pytest

from analytics.estimators import (
    ConfidenceMultiplierEstimator,
    MarginEstimator,
    PercentileEstimator,
    Resource,
    confidence,
)
from analytics.ingest import ingest_samples
from analytics.model_params import ModelParams
from analytics.store import AggregateStore, EstimationInput
from analytics.strategies import (
    STRATEGIES,
    ParameterError,
    PercentileParams,
    PodEstimators,
    Strategy,
    build_estimators,
    get_strategy,
    register_strategy,
)
from analytics.usage import prepare_samples

from .traces import MIB, steady_trace

DAY_NS = 24 * 3600 * 10**9


def aggregates(**trace: object) -> EstimationInput:
    store = AggregateStore.empty()
    ingest_samples(store, prepare_samples(steady_trace(**trace)))  # type: ignore[arg-type]
    return store.estimation_input()


def test_steady_100m_gives_126m_target() -> None:
    _, estimators = build_estimators("vpa")
    estimates = estimators.estimate(aggregates(minutes=24 * 60))
    assert estimates.target_cpu.tolist() == [126]  # bucket end 110m, + 15%
    assert estimates.lower_cpu.tolist() == [125]
    # One day of history: the upper bound is doubled, (1 + 1/1) ** 1.
    assert estimates.upper_cpu.tolist() == [252]


def test_confidence_is_days_of_history_or_samples_per_day() -> None:
    history = aggregates(minutes=24 * 60 + 1)
    assert confidence(history, DAY_NS).tolist() == [1.0]
    sparse = aggregates(minutes=10)
    assert confidence(sparse, DAY_NS)[0] == pytest.approx(9 / 1440)


def test_no_history_bounds() -> None:
    single = aggregates(minutes=1)
    upper = ConfidenceMultiplierEstimator(PercentileEstimator(Resource.CPU, 0.95), 1.0, 1.0, DAY_NS)
    lower = ConfidenceMultiplierEstimator(
        PercentileEstimator(Resource.CPU, 0.5), 0.001, -2.0, DAY_NS
    )
    assert upper.estimate(single).tolist() == [10**14]  # infinite, clamped
    assert lower.estimate(single).tolist() == [0]


@pytest.mark.parametrize(
    ("containers", "cpu_millicores", "memory"),
    # The smallest non-empty CPU percentile is the first bucket's end, 10m (+ margin: 11m).
    [(("app",), 25, 250 * MIB), (("app", "log"), 12, 125 * MIB), (("a", "b", "c"), 11, 87381333)],
)
def test_pod_minimums_split_over_containers(
    containers: tuple[str, ...], cpu_millicores: int, memory: int
) -> None:
    _, estimators = build_estimators("vpa")
    tiny = aggregates(cpu_cores=0.001, memory_bytes=MIB, containers=containers, minutes=600)
    estimates = estimators.estimate(tiny)
    assert set(estimates.target_cpu.tolist()) == {cpu_millicores}
    assert set(estimates.target_memory.tolist()) == {memory}
    assert set(estimates.lower_memory.tolist()) == {memory}


def test_margin_truncates_like_resource_amounts() -> None:
    history = aggregates(minutes=60)
    base = PercentileEstimator(Resource.CPU, 0.9)
    assert base.estimate(history).tolist() == [110]
    assert MarginEstimator(base, 0.15).estimate(history).tolist() == [126]  # 110 + 16.5
    assert "p90 of cpu usage + 15%" in MarginEstimator(base, 0.15).describe()


def test_percentile_strategy_has_no_confidence_scaling() -> None:
    _, estimators = build_estimators("percentile", {"upper_bound_cpu_percentile": "1.0"})
    estimates = estimators.estimate(aggregates(minutes=30))
    assert estimates.upper_cpu.tolist() == [126]
    assert estimates.target_memory.tolist() == [628694953]  # 500Mi: bucket end 521.4Mi + 15%


def test_parameters_are_validated_with_field_names() -> None:
    with pytest.raises(ParameterError, match=r"target_cpu_percentile: .*less than or equal to 1"):
        build_estimators("vpa", {"target_cpu_percentile": "2"})
    with pytest.raises(ParameterError, match="lower_bound_memory_percentile"):
        build_estimators("vpa", {"lower_bound_memory_percentile": 0.99})
    with pytest.raises(ParameterError, match="frobnicate: unknown parameter"):
        build_estimators("percentile", {"frobnicate": 1})
    with pytest.raises(ParameterError, match="cpu_histogram_decay_half_life_s"):
        build_estimators("vpa", {"cpu_histogram_decay_half_life_s": "-1"})
    params, _ = build_estimators("vpa", {"safety_margin_fraction": "0.3"})
    assert params.model_fields_only() == ModelParams()


def test_registry() -> None:
    assert {"vpa", "percentile"} <= set(STRATEGIES)
    with pytest.raises(ValueError, match=r"unknown strategy 'nope'; known: .*percentile.*vpa"):
        get_strategy("nope")

    def build(params: PercentileParams) -> PodEstimators:
        fixed = PercentileEstimator(Resource.CPU, params.target_cpu_percentile)
        memory = PercentileEstimator(Resource.MEMORY, params.target_memory_percentile)
        return PodEstimators(fixed, memory, fixed, memory, fixed, memory)

    register_strategy(Strategy("bare", "percentiles only", PercentileParams, build))
    try:
        _, estimators = build_estimators("bare")
        assert estimators.estimate(aggregates(minutes=30)).target_cpu.tolist() == [110]
    finally:
        del STRATEGIES["bare"]
