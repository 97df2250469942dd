"""Recommendations for whole traces, checked against the stock recommender's own output."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from analytics.trace import recommend_trace, replay_trace
from analytics.usage import SampleError

from .traces import MIB, START, mixed_trace, steady_trace


def entry(cpu: tuple[str, str, str], memory: tuple[str, str, str], name: str = "app") -> dict:
    target, lower, upper = ({"cpu": c, "memory": m} for c, m in zip(cpu, memory, strict=True))
    return {
        "containerName": name,
        "target": target,
        "lowerBound": lower,
        "upperBound": upper,
        "uncappedTarget": target,
    }


# Each expectation was printed by the VPA v1.7.3 model and logic packages (ContainerState,
# AggregateContainerState, CreatePodResourceRecommender, MapToListOfRecommendedContainerResources)
# fed the same samples in the same order.
STOCK = {
    "steady two days": (
        steady_trace(),
        [entry(("126m", "125m", "189m"), ("628694953", "628066511", "943151615"))],
    ),
    "steady thirty minutes": (
        steady_trace(minutes=30),
        [entry(("126m", "114m", "6382m"), ("628694953", "570619584", "31846651239"))],
    ),
    "two replicas, two containers": (
        steady_trace(containers=("app", "log"), pods=("a", "b"), minutes=600),
        [
            entry(("126m", "125m", "428m"), ("628694953", "625683044", "2140081818"), "app"),
            entry(("126m", "125m", "428m"), ("628694953", "625683044", "2140081818"), "log"),
        ],
    ),
    "replicas with OOM kills": (
        mixed_trace(7),
        [
            entry(("1737m", "808m", "7168m"), ("2162292018", "2038169762", "7568022063"), "app"),
            entry(("247m", "92m", "948m"), ("1038683533", "973396962", "3635392365"), "proxy"),
        ],
    ),
    "half a day, one sample a minute, many OOM kills": (
        mixed_trace(11, days=0.5, step_minutes=1),
        [
            entry(("1836m", "809m", "6489m"), ("3481230109", "3291314826", "10449820105"), "app"),
            entry(("247m", "108m", "813m"), ("2048373350", "2040202674", "6145973716"), "proxy"),
        ],
    ),
}


@pytest.mark.parametrize("name", STOCK)
def test_matches_the_stock_recommender(name: str) -> None:
    frame, expected = STOCK[name]
    assert [r.to_status_entry() for r in recommend_trace(frame)] == expected


def test_recommendation_fields() -> None:
    (recommendation,) = recommend_trace(steady_trace())
    assert (recommendation.cluster, recommendation.namespace) == ("prod", "shop")
    assert (recommendation.workload, recommendation.container_name) == ("web", "app")
    assert recommendation.target.cpu_cores == 0.126
    assert recommendation.uncapped_target == recommendation.target
    assert recommendation.lower_bound.memory_bytes <= recommendation.target.memory_bytes


def test_workloads_are_separate_and_sorted() -> None:
    frame = pl.concat(
        [
            steady_trace(workload="web", minutes=120),
            steady_trace(workload="api", cpu_cores=1.0, minutes=120, containers=("app", "log")),
        ]
    )
    result = recommend_trace(frame)
    assert [(r.workload, r.container_name) for r in result] == [
        ("api", "app"),
        ("api", "log"),
        ("web", "app"),
    ]
    assert result[0].target.cpu_millicores > result[2].target.cpu_millicores


def test_file_order_does_not_matter() -> None:
    frame = mixed_trace(7, days=1)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=1)
    assert recommend_trace(shuffled) == recommend_trace(frame)


def test_strategy_and_params() -> None:
    frame = steady_trace(minutes=120)
    (default,) = recommend_trace(frame, "vpa")
    (wider,) = recommend_trace(frame, "vpa", {"safety_margin_fraction": 0.5})
    assert wider.target.cpu_millicores == 165  # 110m + 50%
    assert default.target.cpu_millicores == 126
    (plain,) = recommend_trace(frame, "percentile")
    assert plain.upper_bound.cpu_millicores == 126  # p100, no widening for short history


def test_invalid_measurements_are_skipped_and_counted() -> None:
    frame = steady_trace(minutes=100).with_row_index("i")
    frame = frame.with_columns(
        pl.when(pl.col("i") % 10 == 0).then(float("nan")).otherwise(pl.col("cpu")).alias("cpu"),
        pl.when(pl.col("i") == 5).then(-1.0).otherwise(pl.col("memory")).alias("memory"),
    ).drop("i")
    result = replay_trace(frame)
    assert result.skipped == {"cpu_nan": 10, "memory_negative": 1}
    assert result.recommendations[0].target.cpu_millicores == 126


def test_duplicate_samples_are_counted() -> None:
    frame = steady_trace(minutes=10)
    result = replay_trace(pl.concat([frame, frame]))
    assert result.skipped == {"cpu_not_newer": 10}


def test_oom_uses_the_request_else_the_row_memory() -> None:
    frame = steady_trace(memory_bytes=200 * MIB, minutes=60).with_columns(
        pl.Series("oom", [False] * 59 + [True]),
        pl.Series("memory_request", [None] * 59 + [1024.0 * MIB]),
    )
    (bumped,) = recommend_trace(frame)
    (no_request,) = recommend_trace(frame.drop("memory_request"))
    # 1Gi request x 1.2 lands in a bucket far above the 200Mi usage; without a request the
    # row's memory (200Mi + 100Mi) is used.
    assert bumped.target.memory_bytes > 1.2 * 1024 * MIB
    assert 300 * MIB < no_request.target.memory_bytes < 400 * MIB


def test_containers_without_usable_samples_get_no_recommendation() -> None:
    frame = pl.concat(
        [
            steady_trace(minutes=60),
            steady_trace(minutes=60, containers=("broken",)).with_columns(
                pl.lit(None, dtype=pl.Float64).alias("cpu"),
                pl.lit(float("nan")).alias("memory"),
            ),
        ]
    )
    result = replay_trace(frame)
    assert [r.container_name for r in result.recommendations] == ["app"]
    assert result.skipped["empty_history"] == 1
    # The broken container still counts as one of the pod's two containers.
    assert result.recommendations[0].target.memory_bytes == 628694953


def test_containers_silent_for_the_history_window_are_expired() -> None:
    old = steady_trace(minutes=60, containers=("gone",))
    recent = steady_trace(minutes=60).with_columns(
        (pl.col("timestamp") + dt.timedelta(days=9)).alias("timestamp")
    )
    result = replay_trace(pl.concat([old, recent]))
    assert [r.container_name for r in result.recommendations] == ["app"]
    assert result.skipped["expired"] == 1


def test_empty_frame() -> None:
    result = replay_trace(steady_trace(minutes=0))
    assert result.recommendations == []
    assert result.skipped == {}


def test_schema_errors_name_the_column() -> None:
    with pytest.raises(SampleError, match=r"missing column.*'memory'"):
        recommend_trace(steady_trace(minutes=5).drop("memory"))
    with pytest.raises(SampleError, match="column 'cpu': must be numeric"):
        recommend_trace(steady_trace(minutes=5).with_columns(pl.lit("x").alias("cpu")))
    frame = steady_trace(minutes=5).with_columns(
        pl.Series("pod", ["web-1", "web-1", None, "web-1", "web-1"])
    )
    with pytest.raises(SampleError, match="column 'pod', row 2: is null"):
        recommend_trace(frame)
    frame = steady_trace(minutes=3).with_columns(pl.Series("memory_request", [1.0, -5.0, 1.0]))
    with pytest.raises(SampleError, match=r"column 'memory_request', row 1: .*got -5\.0"):
        recommend_trace(frame)


def test_time_zones_are_respected() -> None:
    frame = steady_trace(minutes=120)
    aware = frame.with_columns(
        pl.col("timestamp").dt.replace_time_zone("UTC").dt.convert_time_zone("Europe/Paris")
    )
    assert recommend_trace(aware) == recommend_trace(frame)
    assert START.tzinfo is None
