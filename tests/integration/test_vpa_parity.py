"""The `vpa` strategy against the stock recommender: the same seeded streams through our
engine and through upstream's own packages (the Go oracle of tests/oracle) give the same
status entries, string for string."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from analytics.trace import recommend_trace
from tests.integration.streams import RANDOM_STREAMS, STREAMS, Stream
from tests.oracle import case_from_frame, run_oracle

ALL: tuple[Stream, ...] = STREAMS + RANDOM_STREAMS


@pytest.fixture(scope="module")
def stock() -> dict[str, list[dict[str, Any]]]:
    """The oracle's recommendations for every stream (one run; a failed build fails the tests)."""
    results = run_oracle([case_from_frame(stream.name, stream.frame) for stream in ALL])
    return {result["name"]: result["recommendations"] for result in results}


@pytest.mark.parametrize("stream", ALL, ids=[stream.name for stream in ALL])
def test_vpa_strategy_matches_the_stock_recommender(
    stream: Stream, stock: dict[str, list[dict[str, Any]]]
) -> None:
    ours = [r.to_status_entry() for r in recommend_trace(stream.frame, strategy="vpa")]
    assert ours == stock[stream.name], stream.exercises


def test_streams_include_repeats_disorder_and_kills() -> None:
    def repeats(frame: pl.DataFrame) -> bool:
        return frame.select("timestamp", "pod", "container").is_duplicated().any()

    def disordered(frame: pl.DataFrame) -> bool:
        return not frame["timestamp"].is_sorted()

    def kills(frame: pl.DataFrame) -> bool:
        return "oom" in frame.columns and frame["oom"].any()

    named = {stream.name: stream.frame for stream in STREAMS}
    assert repeats(named["duplicates-out-of-order"])
    assert disordered(named["duplicates-out-of-order"])
    assert kills(named["ooms"])
    assert kills(named["replicas"])
    assert named["replicas"]["pod"].n_unique() == 3
    assert named["multi-container"]["container"].n_unique() == 2
    timestamp = pl.col("timestamp")
    days = named["long-history"].select((timestamp.max() - timestamp.min()).dt.total_days())
    assert days.item() >= 10
