"""The Prometheus history source against a real Prometheus with 8 days of backfilled history:
every generated container comes back with the generated values, in one query per (namespace,
metric, chunk), with the generated OOM kills; failures are clear errors.

History is at 60 s and the source's step is 60 s, so every evaluation time is a sample time.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import polars as pl
import pytest
import requests

from analytics.sources.prometheus import (
    NamespaceHistory,
    PrometheusHistory,
    PrometheusQueryError,
    load_config,
)
from analytics.usage import prepare_samples
from testbed.process import LOOPBACK, free_port
from testbed.prometheus import PrometheusInstance, start_prometheus_with_history
from testbed.series import DEFAULT_SPEC, SyntheticHistory

pytestmark = pytest.mark.integration

DAYS = 8
STEP_S = 60
NAMESPACES = sorted({w.namespace for w in DEFAULT_SPEC})


@dataclass
class Fetched:
    """The testbed, the source, and each namespace's 8 days with the HTTP calls it made."""

    instance: PrometheusInstance
    history: SyntheticHistory
    source: PrometheusHistory
    calls: list[dict[str, str]]
    start: datetime
    end: datetime
    results: dict[str, NamespaceHistory] = field(default_factory=dict)
    calls_by_namespace: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def truth(self, namespace: str) -> pl.DataFrame:
        return self.history.usage().filter(namespace=namespace)


def recording_session(calls: list[dict[str, str]]) -> requests.Session:
    """A session that records the parameters of every HTTP call it really sends."""
    session = requests.Session()

    def record(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        query = parse_qs(urlparse(response.request.url or "").query)
        calls.append({k: v[0] for k, v in query.items()})

    session.hooks["response"].append(record)
    return session


def source_for(
    url: str,
    session: requests.Session | None = None,
    connection: dict[str, Any] | None = None,
    **overrides: Any,
) -> PrometheusHistory:
    config = load_config({"connection": {"url": url, **(connection or {})}, **overrides})
    return PrometheusHistory(config, session=session)


@pytest.fixture(scope="module")
def fetched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fetched]:
    instance, history = start_prometheus_with_history(
        tmp_path_factory.mktemp("prometheus-source"), DEFAULT_SPEC, days=DAYS, step_s=STEP_S
    )
    try:
        calls: list[dict[str, str]] = []
        source = source_for(instance.url, recording_session(calls))
        time_range = history.time_range
        # The whole generated history: [first sample, last sample + one step).
        start = datetime.fromtimestamp(time_range.start_s, UTC)
        end = datetime.fromtimestamp(time_range.end_s + STEP_S, UTC)
        state = Fetched(instance, history, source, calls, start, end)
        for namespace in NAMESPACES:
            before = len(calls)
            started = time.perf_counter()
            state.results[namespace] = source.fetch(namespace, start, end)
            elapsed = time.perf_counter() - started
            state.calls_by_namespace[namespace] = calls[before:]
            rows = state.results[namespace].samples.height
            print(f"\n{namespace}: {DAYS} days, {rows} rows in {elapsed:.2f} s")
        yield state
    finally:
        instance.stop()


def closed_range_windows(url: str) -> bool:
    """Prometheus 2.x range selectors include a sample exactly `window` before the
    evaluation time; 3.x excludes it (left-open)."""
    info = requests.get(f"{url}/api/v1/status/buildinfo", timeout=10).json()
    return int(info["data"]["version"].split(".")[0]) < 3


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_every_container_comes_back_with_the_generated_usage(
    fetched: Fetched, namespace: str
) -> None:
    got = fetched.results[namespace]
    truth = fetched.truth(namespace)
    time_range = fetched.history.time_range
    samples = got.samples
    assert got.dropped == Counter()
    assert set(samples.select("pod", "container").unique().rows()) == (
        fetched.history.container_keys(namespace)
    )
    assert set(samples["cluster"]) == {"default"}
    assert set(samples["namespace"]) == {namespace}

    # Memory: the working set at every sample time, exactly.
    both = samples.with_columns((pl.col("timestamp").dt.epoch("s")).alias("timestamp_s")).join(
        truth, on=["pod", "container", "timestamp_s"], how="full", coalesce=True
    )
    assert both["memory"].null_count() == 0, "a generated sample is missing"
    np.testing.assert_array_equal(both["memory"].to_numpy(), both["memory_bytes"].to_numpy())

    # CPU: the 5-minute rate is the mean generated usage of the steps inside the window.
    steps = 5 if closed_range_windows(fetched.instance.url) else 4
    for (pod, container), rows in both.sort("timestamp_s").group_by(
        ["pod", "container"], maintain_order=True
    ):
        t = rows["timestamp_s"].to_numpy()
        cpu = rows["cpu"].to_numpy()
        usage = rows["cpu_cores"].to_numpy()
        full = t - 300 >= time_range.start_s
        expected = np.convolve(usage, np.ones(steps) / steps, mode="full")[: usage.size]
        np.testing.assert_allclose(
            cpu[full], expected[full], rtol=1e-9, err_msg=f"{pod}/{container}"
        )
        # Before the first full window only extrapolated estimates exist; the first time has
        # a single counter sample, hence no rate at all.
        assert np.isnan(cpu[0])
        assert np.isfinite(cpu[1:]).all()
        assert (~full).sum() == 300 // STEP_S


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_one_query_per_metric_and_chunk(fetched: Fetched, namespace: str) -> None:
    calls = fetched.calls_by_namespace[namespace]
    plan = fetched.source.plan(fetched.start, fetched.end)
    queries = fetched.source.queries(namespace)
    expected = sorted(
        (queries[key], str(c.start_s), str(c.end_s), str(c.step_s))
        for key, chunks in plan.items()
        for c in chunks
    )
    got = sorted((c["query"], c["start"], c["end"], c["step"]) for c in calls)
    assert got == expected
    # 8 days at one minute: 11,520 points, two chunks under 11,000 points; four metrics.
    assert {key: len(chunks) for key, chunks in plan.items()} == dict.fromkeys(queries, 2)
    assert fetched.results[namespace].queries == len(calls) == 8
    assert all(f'namespace="{namespace}"' in c["query"] for c in calls)


def test_queries_grow_with_namespaces_not_pods(fetched: Fetched) -> None:
    pods = {
        ns: len({c.pod for c in fetched.history.containers if c.namespace == ns})
        for ns in NAMESPACES
    }
    assert pods["shop"] != pods["batch"]
    assert {ns: fetched.results[ns].queries for ns in NAMESPACES} == dict.fromkeys(NAMESPACES, 8)
    assert fetched.source.query_count == len(fetched.calls) >= 8 * len(NAMESPACES)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_oom_kills_match_the_generated_kills(fetched: Fetched, namespace: str) -> None:
    kills = fetched.results[namespace].oom_kills
    expected = fetched.history.oom_kills().filter(namespace=namespace)
    got = kills.select("pod", "container", pl.col("timestamp").dt.epoch("s").alias("t")).rows()
    assert sorted(got) == sorted(expected.select("pod", "container", "timestamp_s").rows())
    assert len(got) > 0


def test_incremental_windows_add_up_to_the_whole(fetched: Fetched) -> None:
    namespace = "shop"
    whole = fetched.results[namespace]
    # Bootstrap up to an arbitrary instant, then a tick that fetches only the new interval.
    middle = fetched.start + timedelta(days=5, hours=3, seconds=17)
    first = fetched.source.fetch(namespace, fetched.start, middle)
    tick = fetched.source.fetch(namespace, middle, fetched.end)
    assert pl.concat([first.samples, tick.samples]).equals(whole.samples)
    assert pl.concat([first.oom_kills, tick.oom_kills]).equals(whole.oom_kills)
    assert tick.samples["timestamp"].to_list()[0] == middle.replace(second=0) + timedelta(minutes=1)
    assert first.samples["timestamp"].to_list()[-1] == middle.replace(second=0)


def test_fetched_samples_feed_the_engine(fetched: Fetched) -> None:
    pods = {c.pod: c.workload for c in fetched.history.containers}
    frame = fetched.results["shop"].samples.with_columns(
        pl.col("pod").replace_strict(pods).alias("workload")
    )
    prepared = prepare_samples(frame)
    assert len(prepared) == fetched.truth("shop").height
    # Only the first time of each container lacks CPU (a rate needs two samples).
    assert prepared.skipped == Counter(cpu_missing=len(fetched.history.container_keys("shop")))


def test_extra_matchers_and_cluster_scope_reach_prometheus(fetched: Fetched) -> None:
    end = fetched.end
    start = end - timedelta(hours=1)
    web_only = source_for(
        fetched.instance.url,
        connection={"timeout_s": 30.5},  # a fractional evaluation timeout is accepted too
        extra_matchers=['pod=~"web-.*"'],
    )
    got = web_only.fetch("shop", start, end).samples
    assert set(got.select("pod", "container").unique().rows()) == {
        key for key in fetched.history.container_keys("shop") if key[0].startswith("web-")
    }
    other_cluster = source_for(
        fetched.instance.url, labels={"cluster": "cluster"}, cluster="elsewhere"
    )
    scoped = other_cluster.fetch("shop", start, end)
    assert (scoped.samples.height, scoped.oom_kills.height, scoped.queries) == (0, 0, 4)


def test_unreachable_prometheus_is_a_clear_error() -> None:
    url = f"http://{LOOPBACK}:{free_port()}"  # nothing listens there
    source = source_for(url, connection={"timeout_s": 5})
    now = datetime.now(UTC)
    with pytest.raises(PrometheusQueryError) as error:
        source.fetch("shop", now - timedelta(hours=1), now)
    message = str(error.value)
    assert message.startswith(f"Prometheus at {url}: query for namespace 'shop' failed")
    assert "(unreachable): cannot connect" in message
    assert "Connection refused" in message
    assert "query: rate(container_cpu_usage_seconds_total{" in message
    assert (error.value.kind, error.value.url, error.value.namespace) == (
        "unreachable",
        url,
        "shop",
    )
    assert source.query_count == 1
    assert source.errors == Counter(unreachable=1)


def test_a_silent_prometheus_times_out_with_a_clear_error() -> None:
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen()  # accepts connections in the kernel, never answers
        url = f"http://{LOOPBACK}:{listener.getsockname()[1]}"
        source = source_for(url, connection={"timeout_s": 0.5})
        now = datetime.now(UTC)
        with pytest.raises(PrometheusQueryError, match=r"\(timeout\): no answer within 0\.5 s"):
            source.fetch("batch", now - timedelta(hours=1), now)
    assert source.errors == Counter(timeout=1)


def test_prometheus_refusing_a_query_is_a_clear_error(fetched: Fetched) -> None:
    # 20,000 points per series is more than Prometheus accepts in one query.
    source = source_for(fetched.instance.url, max_points_per_series=20_000)
    with pytest.raises(PrometheusQueryError) as error:
        source.fetch("batch", fetched.start, fetched.end)
    assert (error.value.kind, error.value.status, error.value.error_type) == (
        "http_error",
        400,
        "bad_data",
    )
    assert "exceeded maximum resolution of 11,000 points per timeseries" in str(error.value)
    assert 'namespace="batch"' in str(error.value)
