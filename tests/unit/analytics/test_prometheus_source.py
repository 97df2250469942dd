"""The Prometheus history source's pure parts: configuration, query text, chunk arithmetic,
answers to frames, and every bad answer, with crafted `query_range` answers.

The HTTP path runs against a real Prometheus in tests/integration/test_prometheus_source.py;
here a requests transport adapter serves crafted answers to check what `fetch` makes of them.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import polars as pl
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from requests.adapters import BaseAdapter

from analytics.sources.prometheus import (
    KILL_COLUMNS,
    USAGE_COLUMNS,
    PrometheusConfigError,
    PrometheusHistory,
    PrometheusQueryError,
    PrometheusSourceConfig,
    load_config,
)
from analytics.sources.promql import (
    AnswerError,
    LabelMatcher,
    LabelNames,
    decode_matrix,
    evaluation_grid,
    format_duration,
    matrix_samples,
    merge_kills,
    oom_counter_kills,
    parse_duration,
    parse_matchers,
    plan_chunks,
    reason_kills,
    selector,
    usage_table,
)
from analytics.usage import prepare_samples

URL = "http://prometheus.example:9090"
T0 = 1_700_000_040  # a multiple of 60
LABELS = LabelNames()


def series(
    pod: str | None, container: str | None, values: list[Any], **extra: str
) -> dict[str, Any]:
    metric = {"job": "kubernetes-cadvisor", "namespace": "ns", **extra}
    if pod is not None:
        metric["pod"] = pod
    if container is not None:
        metric["container"] = container
    return {"metric": metric, "values": values}


def answer(result: list[dict[str, Any]]) -> bytes:
    return json.dumps(
        {"status": "success", "data": {"resultType": "matrix", "result": result}}
    ).encode()


def samples(
    result: list[dict[str, Any]], first: int = T0, last: int = T0 + 3600
) -> tuple[pl.DataFrame, Counter[str]]:
    return matrix_samples(result, LABELS, first * 1000, last * 1000, "cpu")


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5m", 300), ("1h30m", 5400), ("8d", 691_200), ("1w", 604_800), (90, 90), ("90", 90)],
)
def test_durations_parse_to_seconds(text: object, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["500ms", "0", 0, -60, "5 minutes", "", True, 1.5, None])
def test_bad_durations_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"), [(300, "5m"), (90, "90s"), (3600, "1h"), (691_200, "8d"), (7200, "2h")]
)
def test_durations_format_as_one_unit(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(1, 10**8))
def test_formatted_durations_parse_back(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


# --------------------------------------------------------------------------- matchers


def test_matchers_render_and_escape() -> None:
    matcher = LabelMatcher(name="path", op="!~", value='a"b\\c\nd')
    assert matcher.render() == 'path!~"a\\"b\\\\c\\nd"'
    assert selector("up", [matcher, LabelMatcher(name="job", value="x")]) == (
        'up{path!~"a\\"b\\\\c\\nd",job="x"}'
    )


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True),
            st.sampled_from(["=", "!=", "=~", "!~"]),
            st.text(max_size=12),
        ),
        max_size=4,
    )
)
def test_rendered_matchers_parse_back(triples: list[tuple[str, str, str]]) -> None:
    matchers = tuple(LabelMatcher(name=n, op=o, value=v) for n, o, v in triples)
    assert parse_matchers(", ".join(m.render() for m in matchers)) == matchers


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("job=kubelet", "at character 0"),
        ('job="a",', "end with a comma"),
        ('job="a" env="b"', "at character 0"),
        ('0job="a"', "at character 0"),
    ],
)
def test_bad_matchers_say_where(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_matchers(text)


def test_empty_matcher_text_is_no_matcher() -> None:
    assert parse_matchers("  ") == ()


def test_selector_refuses_a_bad_metric_name() -> None:
    with pytest.raises(ValueError, match="not a Prometheus metric name"):
        selector("cpu usage", [])


# --------------------------------------------------------------------------- time chunks


def test_grid_is_the_step_multiples_inside_a_half_open_window() -> None:
    us = 1_000_000
    assert evaluation_grid(T0 * us, (T0 + 180) * us, 60) == (T0, T0 + 120)
    assert evaluation_grid((T0 + 1) * us, (T0 + 181) * us, 60) == (T0 + 60, T0 + 180)
    assert evaluation_grid((T0 + 1) * us, (T0 + 59) * us, 60) is None
    assert evaluation_grid(T0 * us, T0 * us, 60) is None


@given(
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.sampled_from([15, 60, 3600]),
)
def test_consecutive_windows_give_every_point_once(a: int, b: int, c: int, step: int) -> None:
    a, b, c = sorted((a, b, c))
    us = 1_000_000

    def points(start: int, end: int) -> list[int]:
        grid = evaluation_grid((T0 + start) * us + 123, (T0 + end) * us + 123, step)
        return [] if grid is None else list(range(grid[0], grid[1] + 1, step))

    assert points(a, b) + points(b, c) == points(a, c)


@given(st.integers(0, 50_000), st.sampled_from([1, 60, 300]), st.integers(2, 12_000))
def test_chunks_tile_the_grid_under_the_point_limit(n: int, step: int, limit: int) -> None:
    first = T0
    last = first + n * step
    chunks = plan_chunks(first, last, step, limit)
    assert chunks[0].start_s == first
    assert chunks[-1].end_s == last
    assert all(c.points <= limit for c in chunks)
    assert all(b.start_s == a.end_s + step for a, b in itertools.pairwise(chunks))
    assert len(chunks) == math.ceil((n + 1) / limit)


def test_eight_days_at_one_minute_is_two_chunks() -> None:
    chunks = plan_chunks(T0, T0 + (8 * 1440 - 1) * 60, 60, 11_000)
    assert [c.points for c in chunks] == [11_000, 520]


# --------------------------------------------------------------------------- answers


def test_error_answers_name_the_prometheus_error() -> None:
    body = json.dumps(
        {"status": "error", "errorType": "bad_data", "error": "parse error at char 5"}
    ).encode()
    with pytest.raises(AnswerError) as error:
        decode_matrix(400, body)
    assert (error.value.kind, error.value.status, error.value.error_type) == (
        "http_error",
        400,
        "bad_data",
    )
    assert str(error.value) == "HTTP 400, bad_data: parse error at char 5"

    timeout = {"status": "error", "errorType": "timeout", "error": "query timed out"}
    with pytest.raises(AnswerError, match=r"HTTP 503, timeout: query timed out"):
        decode_matrix(503, json.dumps(timeout).encode())


@pytest.mark.parametrize(
    ("status", "body", "kind", "message"),
    [
        (502, b"<html>Bad Gateway</html>", "http_error", r"HTTP 502: '<html>Bad Gateway</html>'"),
        (200, b"<html>login</html>", "bad_answer", "not a JSON object"),
        (200, b"\xff\xfe", "bad_answer", "not a JSON object"),
        (200, b'{"status": "error", "error": "boom"}', "bad_answer", "status 'error': boom"),
        (
            200,
            b'{"status": "success", "data": {"resultType": "vector", "result": []}}',
            "bad_answer",
            "expected a matrix result, got 'vector'",
        ),
        (
            200,
            b'{"status": "success", "data": {"resultType": "matrix", "result": {}}}',
            "bad_answer",
            "not a list",
        ),
        (
            200,
            b'{"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}}]}}',
            "bad_answer",
            "series 0 has no",
        ),
    ],
)
def test_unusable_answers_say_why(status: int, body: bytes, kind: str, message: str) -> None:
    with pytest.raises(AnswerError, match=message) as error:
        decode_matrix(status, body)
    assert error.value.kind == kind


def test_a_matrix_becomes_one_sorted_row_per_sample() -> None:
    result = [
        series("web-1", "web", [[T0, "0.25"], [T0 + 60, "0.5"]]),
        series("api-1", "api", [[T0 + 60.0, "1e3"], [T0, "2"]]),
    ]
    frame, dropped = samples(decode_matrix(200, answer(result)))
    assert dropped == Counter()
    assert frame.to_dicts() == [
        {"pod": "api-1", "container": "api", "timestamp_ms": T0 * 1000, "value": 2.0},
        {"pod": "api-1", "container": "api", "timestamp_ms": (T0 + 60) * 1000, "value": 1000.0},
        {"pod": "web-1", "container": "web", "timestamp_ms": T0 * 1000, "value": 0.25},
        {"pod": "web-1", "container": "web", "timestamp_ms": (T0 + 60) * 1000, "value": 0.5},
    ]


def test_an_empty_matrix_is_an_empty_frame() -> None:
    frame, dropped = samples([])
    assert frame.height == 0
    assert frame.schema == pl.Schema(
        {"pod": pl.String, "container": pl.String, "timestamp_ms": pl.Int64, "value": pl.Float64}
    )
    assert dropped == Counter()


def test_bad_values_are_dropped_and_counted_by_reason() -> None:
    values = [[T0, "NaN"], [T0 + 60, "+Inf"], [T0 + 120, "-Inf"], [T0 + 180, "-0.5"]]
    values += [[T0 + 240, "0"], [T0 + 300, "1.5"], [T0 - 60, "1"], [T0 + 3660, "1"]]
    frame, dropped = samples([series("p", "c", values)])
    assert frame["value"].to_list() == [0.0, 1.5]
    assert dropped == Counter(cpu_nan=1, cpu_infinite=2, cpu_negative=1, cpu_outside_window=2)


def test_series_without_pod_or_container_are_dropped_and_counted() -> None:
    result = [
        series(None, "c", [[T0, "1"], [T0 + 60, "1"]]),
        series("", "c", [[T0, "1"]]),
        series("p", None, [[T0, "1"]]),
        series(None, None, [[T0, "1"]]),  # counted once, under the first reason
        series("p", "c", [[T0, "2"]]),
    ]
    frame, dropped = samples(result)
    assert frame.select("pod", "container", "value").rows() == [("p", "c", 2.0)]
    assert dropped == Counter(cpu_missing_pod=4, cpu_missing_container=1)


def test_label_names_are_configurable() -> None:
    result = [{"metric": {"pod_name": "p", "name": "c"}, "values": [[T0, "1"]]}]
    frame, _ = matrix_samples(result, LabelNames("pod_name", "name"), T0 * 1000, T0 * 1000, "m")
    assert frame.select("pod", "container").rows() == [("p", "c")]


@pytest.mark.parametrize("reverse", [False, True])
def test_duplicate_series_keep_the_first_label_set_whatever_the_order(reverse: bool) -> None:
    a = series("p", "c", [[T0, "1"], [T0 + 60, "NaN"], [T0 + 120, "1"]], instance="a")
    b = series("p", "c", [[T0, "2"], [T0 + 60, "2"], [T0 + 180, "2"]], instance="b")
    frame, dropped = samples([b, a] if reverse else [a, b])
    # instance="a" sorts first; where it has no valid sample, b's sample stays.
    assert frame["value"].to_list() == [1.0, 2.0, 1.0, 2.0]
    assert dropped == Counter(cpu_nan=1, cpu_duplicate=1)


@pytest.mark.parametrize(
    "values",
    [
        [[T0, "1", "extra"]],
        [[T0]],
        [[T0, "one"]],
        [[T0, None]],
        [["NaN", "1"]],
        [[T0 * 1000, "1"]],  # milliseconds, not seconds
    ],
)
def test_malformed_samples_fail_the_answer(values: list[Any]) -> None:
    with pytest.raises(AnswerError, match=r"pairs|timestamp") as error:
        samples([series("p", "c", values)])
    assert error.value.kind == "bad_answer"


def test_millisecond_timestamps_are_kept() -> None:
    frame, _ = samples([series("p", "c", [[T0 + 0.001, "1"]])])
    assert frame["timestamp_ms"].to_list() == [T0 * 1000 + 1]


# --------------------------------------------------------------------------- OOM kills


def kill_frame(rows: list[tuple[str, str, int, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "pod": pl.String,
            "container": pl.String,
            "timestamp_ms": pl.Int64,
            "value": pl.Float64,
        },
        orient="row",
    )


def kills(frame: pl.DataFrame) -> list[tuple[str, str, int]]:
    return [(p, c, t // 1000 - T0) for p, c, t in frame.rows()]


def test_counter_rises_are_kills_and_resets_are_counted() -> None:
    m = 1000
    frame = kill_frame(
        [
            ("a", "c", (T0 - 60) * m, 2.0),  # the point before the window: no kill by itself
            ("a", "c", T0 * m, 3.0),  # rise at the window's first point
            ("a", "c", (T0 + 60) * m, 3.0),
            ("a", "c", (T0 + 120) * m, 0.0),  # reset to 0: no kill
            ("a", "c", (T0 + 180) * m, 1.0),  # rise
            ("a", "c", (T0 + 240) * m, 0.0),  # reset
            ("a", "c", (T0 + 300) * m, 0.0),
            ("b", "c", T0 * m, 5.0),  # b's first point: unknown history, no kill
            ("b", "c", (T0 + 600) * m, 6.0),  # rise across a gap
            ("d", "c", (T0 + 60) * m, 1.0),  # reset to non-zero after b is not b's
        ]
    )
    found, dropped = oom_counter_kills(frame, T0 * m, "oom_events")
    assert kills(found) == [("a", "c", 0), ("a", "c", 180), ("b", "c", 600)]
    assert dropped == Counter(oom_events_reset=2)


def test_reset_to_a_non_zero_value_is_a_kill() -> None:
    frame = kill_frame([("a", "c", T0 * 1000, 4.0), ("a", "c", (T0 + 60) * 1000, 1.0)])
    found, dropped = oom_counter_kills(frame, T0 * 1000, "oom_events")
    assert kills(found) == [("a", "c", 60)]
    assert dropped == Counter(oom_events_reset=1)


def test_a_new_oomkilled_reason_is_a_kill() -> None:
    m, step = 1000, 60_000
    frame = kill_frame(
        [
            ("old", "c", (T0 - 60) * m, 1.0),  # OOMKilled before the window: not new
            ("old", "c", T0 * m, 1.0),
            ("new", "c", (T0 + 120) * m, 1.0),  # appears
            ("new", "c", (T0 + 180) * m, 1.0),
            ("new", "c", (T0 + 600) * m, 1.0),  # reappears after a gap
            ("zero", "c", (T0 - 60) * m, 0.0),  # 0 is "not this reason"
            ("zero", "c", T0 * m, 1.0),
        ]
    )
    assert kills(reason_kills(frame, T0 * m, step)) == [
        ("new", "c", 120),
        ("new", "c", 600),
        ("zero", "c", 0),
    ]


def test_a_reason_seen_at_the_first_point_of_the_range_is_not_a_kill() -> None:
    frame = kill_frame([("p", "c", (T0 - 60) * 1000, 1.0)])
    assert reason_kills(frame, T0 * 1000, 60_000).height == 0


def test_both_metrics_seeing_one_kill_give_one_kill() -> None:
    def frame(rows: list[tuple[str, int]]) -> pl.DataFrame:
        return pl.DataFrame(
            [(p, "c", (T0 + t) * 1000) for p, t in rows],
            schema={"pod": pl.String, "container": pl.String, "timestamp_ms": pl.Int64},
            orient="row",
        )

    events = frame([("a", 0), ("a", 3600)])
    reasons = frame([("a", 60), ("a", 1800), ("b", 0)])
    merged = merge_kills(events, reasons, 600_000)
    assert kills(merged.with_columns(pl.lit(0.0).alias("v")).drop("v")) == [
        ("a", "c", 0),
        ("b", "c", 0),
        ("a", "c", 1800),
        ("a", "c", 3600),
    ]


def test_usage_joins_cpu_and_memory_on_container_and_time() -> None:
    cpu = kill_frame([("p", "c", 1000, 0.5), ("p", "c", 2000, 0.6)])
    memory = kill_frame([("p", "c", 2000, 1e6), ("p", "c", 3000, 2e6)])
    assert usage_table(cpu, memory).rows() == [
        ("p", "c", 1000, 0.5, None),
        ("p", "c", 2000, 0.6, 1e6),
        ("p", "c", 3000, None, 2e6),
    ]


# --------------------------------------------------------------------------- configuration


def test_defaults() -> None:
    config = load_config({"connection": {"url": URL + "/"}})
    assert config.connection.url == URL
    assert (config.step_s, config.rate_window_s, config.history_s) == (60, 300, 8 * 86_400)
    assert config.metrics.cpu == "container_cpu_usage_seconds_total"
    assert config.max_points_per_series == 11_000


def test_durations_and_matchers_are_read_from_text() -> None:
    config = load_config(
        {
            "connection": {"url": URL},
            "step_s": "1h",
            "rate_window_s": "1h",
            "history_s": "14d",
            "cadvisor_selector": 'job="kubelet", metrics_path="/metrics/cadvisor"',
            "kube_state_metrics_selector": ['job="ksm"'],
            "extra_matchers": ['env="prod"', {"name": "team", "op": "=~", "value": "a|b"}],
        }
    )
    assert (config.step_s, config.rate_window_s, config.history_s) == (3600, 3600, 14 * 86_400)
    assert [m.render() for m in config.cadvisor_selector] == [
        'job="kubelet"',
        'metrics_path="/metrics/cadvisor"',
    ]
    assert [m.render() for m in config.extra_matchers] == ['env="prod"', 'team=~"a|b"']
    assert [m.render() for m in config.kube_state_metrics_selector] == ['job="ksm"']


@pytest.mark.parametrize(
    ("mapping", "field"),
    [
        ({"connection": {"url": "prometheus:9090"}}, "connection.url"),
        ({"connection": {"url": "http://u:p@host"}}, "connection.url"),
        ({"connection": {"url": URL, "timeout_s": 0}}, "connection.timeout_s"),
        ({"connection": {"url": URL, "username": "u"}}, "connection"),
        (
            {"connection": {"url": URL, "bearer_token": "t", "username": "u", "password": "p"}},
            "connection",
        ),
        ({"connection": {"url": URL}, "step_s": "30ms"}, "step_s"),
        ({"connection": {"url": URL}, "rate_window_s": 0}, "rate_window_s"),
        ({"connection": {"url": URL}, "metrics": {"cpu": "cpu usage"}}, "metrics.cpu"),
        ({"connection": {"url": URL}, "labels": {"pod": "pod-name"}}, "labels.pod"),
        ({"connection": {"url": URL}, "extra_matchers": ["env=prod"]}, "extra_matchers"),
        ({"connection": {"url": URL}, "cadvisor_selector": "job="}, "cadvisor_selector"),
        ({"connection": {"url": URL}, "max_points_per_series": 1}, "max_points_per_series"),
        ({"connection": {"url": URL}, "history_s": 30}, "(config)"),
        ({"connection": {"url": URL}, "cluster": ""}, "cluster"),
        ({"connection": {"url": URL}, "stepp": 60}, "stepp"),
        ({}, "connection"),
    ],
)
def test_config_errors_name_the_field(mapping: dict[str, Any], field: str) -> None:
    with pytest.raises(PrometheusConfigError) as error:
        load_config(mapping)
    assert f"{field}: " in str(error.value)


def test_secrets_are_not_printed() -> None:
    config = load_config({"connection": {"url": URL, "bearer_token": "s3cret"}})
    assert "s3cret" not in repr(config)
    assert "s3cret" not in config.model_dump_json()


def source(**overrides: Any) -> PrometheusHistory:
    return PrometheusHistory(load_config({"connection": {"url": URL}, **overrides}))


def test_default_queries_select_one_namespace_and_containers_only() -> None:
    queries = source().queries("shop")
    cadvisor = 'job="kubernetes-cadvisor",namespace="shop",container!="",container!="POD"'
    assert queries == {
        "cpu": f"rate(container_cpu_usage_seconds_total{{{cadvisor}}}[5m])",
        "memory": f"container_memory_working_set_bytes{{{cadvisor}}}",
        "oom_events": f"container_oom_events_total{{{cadvisor}}}",
        "oom_reason": (
            'kube_pod_container_status_last_terminated_reason{job="kube-state-metrics",'
            'namespace="shop",container!="",container!="POD",reason="OOMKilled"}'
        ),
    }


def test_queries_follow_label_mapping_cluster_scope_and_disabled_metrics() -> None:
    queries = source(
        cluster="eu-1",
        labels={"namespace": "ns", "container": "name", "cluster": "k8s_cluster"},
        cadvisor_selector="",
        extra_matchers=['env="prod"'],
        rate_window_s="2m",
        metrics={"oom_events": "", "last_terminated_reason": ""},
    ).queries('we"ird')
    assert queries == {
        "cpu": (
            'rate(container_cpu_usage_seconds_total{env="prod",k8s_cluster="eu-1",'
            'ns="we\\"ird",name!="",name!="POD"}[2m])'
        ),
        "memory": (
            'container_memory_working_set_bytes{env="prod",k8s_cluster="eu-1",'
            'ns="we\\"ird",name!="",name!="POD"}'
        ),
    }
    other = source(labels={"cluster": "cluster"}, cluster="a", cluster_label_value="b")
    assert 'cluster="b"' in other.queries("x")["cpu"]


def test_oom_metrics_are_planned_one_step_earlier() -> None:
    start = datetime.fromtimestamp(T0, UTC)
    plan = source().plan(start, start + timedelta(days=8))
    assert [(c.start_s - T0, c.points) for c in plan["cpu"]] == [(0, 11_000), (660_000, 520)]
    assert plan["memory"] == plan["cpu"]
    assert [(c.start_s - T0, c.points) for c in plan["oom_events"]] == [
        (-60, 11_000),
        (659_940, 521),
    ]
    assert plan["oom_reason"] == plan["oom_events"]
    assert source().plan(start + timedelta(seconds=1), start + timedelta(seconds=59)) == {}
    assert len(source().plan(start, start + timedelta(seconds=1))["cpu"]) == 1


def test_naive_datetimes_are_utc() -> None:
    aware = datetime.fromtimestamp(T0, UTC)
    naive = aware.replace(tzinfo=None)
    assert source().plan(naive, naive + timedelta(hours=1)) == source().plan(
        aware, aware + timedelta(hours=1)
    )


# --------------------------------------------------------------------------- fetch


Handler = Callable[[str, dict[str, str]], tuple[int, bytes]]


class CraftedAnswers(BaseAdapter):
    """Answers `query_range` calls from a handler (query, params) -> (status, body)."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.calls: list[dict[str, str]] = []

    def send(  # noqa: PLR0917 (the signature of requests' BaseAdapter.send)
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        params = {k: v[0] for k, v in parse_qs(urlparse(request.url or "").query).items()}
        self.calls.append(params)
        status, body = self.handler(params["query"], params)
        response = requests.Response()
        response.status_code = status
        response._content = body
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass


def crafted(handler: Handler, **overrides: Any) -> tuple[PrometheusHistory, CraftedAnswers]:
    session = requests.Session()
    adapter = CraftedAnswers(handler)
    session.mount("http://", adapter)
    config = load_config({"connection": {"url": URL}, **overrides})
    return PrometheusHistory(config, session=session), adapter


def grid_values(params: dict[str, str], value: Callable[[int], str]) -> list[list[Any]]:
    start, end, step = (int(params[k]) for k in ("start", "end", "step"))
    return [[t, value(t)] for t in range(start, end + 1, step)]


def healthy(query: str, params: dict[str, str]) -> tuple[int, bytes]:
    """Two containers; one CPU NaN; an OOM counter rising once; a duplicated memory series."""
    if query.startswith("rate("):
        web = series("web-1", "web", grid_values(params, lambda t: "NaN" if t == T0 else "0.5"))
        result = [web, series("api-1", "api", grid_values(params, lambda t: "0.25"))]
    elif query.startswith("container_memory"):
        result = [
            series("web-1", "web", grid_values(params, lambda t: "1e8"), instance="a"),
            series("web-1", "web", grid_values(params, lambda t: "2e8"), instance="b"),
            series("api-1", "api", grid_values(params, lambda t: "5e7")),
        ]
    elif query.startswith("container_oom"):
        ooms = series("web-1", "web", grid_values(params, lambda t: "1" if t >= T0 + 600 else "0"))
        result = [ooms]
    else:
        result = []
    return 200, answer(result)


def test_fetch_builds_the_usage_frame_and_counts_every_drop() -> None:
    history, adapter = crafted(healthy, cluster="eu-1")
    start = datetime.fromtimestamp(T0, UTC)
    got = history.fetch("ns", start, start + timedelta(hours=1))
    assert got.queries == 4 == history.query_count == len(adapter.calls)
    assert list(got.samples.columns) == list(USAGE_COLUMNS)
    assert got.samples.height == 120  # 60 points x 2 containers
    assert got.samples.schema["timestamp"] == pl.Datetime("ms", "UTC")
    assert got.samples["timestamp"].min() == start
    assert set(got.samples["cluster"]) == {"eu-1"}
    web = got.samples.filter(pod="web-1")
    assert web["memory"].unique().to_list() == [1e8]  # instance "a" sorts first
    assert web["cpu"].null_count() == 1
    assert got.dropped == Counter(cpu_nan=1, memory_duplicate=60)
    assert list(got.oom_kills.columns) == list(KILL_COLUMNS)
    assert got.oom_kills.select("pod", "container").rows() == [("web-1", "web")]
    assert got.oom_kills["timestamp"].to_list() == [start + timedelta(minutes=10)]


def test_fetched_frames_are_engine_input_once_workloads_are_mapped() -> None:
    history, _ = crafted(healthy)
    start = datetime.fromtimestamp(T0, UTC)
    got = history.fetch("ns", start, start + timedelta(hours=1))
    frame = got.samples.with_columns(pl.col("pod").str.extract(r"^(\w+)-").alias("workload"))
    prepared = prepare_samples(frame)
    assert len(prepared) == 120
    # The one CPU NaN was dropped at the source; the engine sees a missing value there.
    assert prepared.skipped == Counter(cpu_missing=1)
    assert np.count_nonzero(prepared.cpu_valid) == 119


def test_an_empty_window_makes_no_query() -> None:
    history, adapter = crafted(healthy)
    start = datetime.fromtimestamp(T0 + 1, UTC)
    got = history.fetch("ns", start, start + timedelta(seconds=58))
    assert (got.queries, len(adapter.calls), got.samples.height, got.oom_kills.height) == (
        0,
        0,
        0,
        0,
    )
    assert list(got.samples.columns) == list(USAGE_COLUMNS)


def test_an_error_names_url_namespace_and_query_and_the_next_namespace_goes_on() -> None:
    def handler(query: str, params: dict[str, str]) -> tuple[int, bytes]:
        if 'namespace="broken"' in query and query.startswith("container_memory"):
            error = {"status": "error", "errorType": "execution", "error": "too many samples"}
            return 422, json.dumps(error).encode()
        return healthy(query, params)

    history, _ = crafted(handler)
    start = datetime.fromtimestamp(T0, UTC)
    results: dict[str, object] = {}
    for namespace in ("broken", "ns"):  # the caller's loop: one failure per namespace
        try:
            results[namespace] = history.fetch(namespace, start, start + timedelta(hours=1))
        except PrometheusQueryError as error:
            results[namespace] = error
    failure = results["broken"]
    assert isinstance(failure, PrometheusQueryError)
    assert (failure.kind, failure.status, failure.error_type) == ("http_error", 422, "execution")
    message = str(failure)
    assert message.startswith(f"Prometheus at {URL}: query for namespace 'broken' failed")
    assert "too many samples" in message
    assert 'container_memory_working_set_bytes{job="kubernetes-cadvisor",namespace="broken"' in (
        message
    )
    assert "step 60s" in message
    assert not isinstance(results["ns"], Exception)
    assert history.errors == Counter(http_error=1)
    assert history.query_count == 2 + 4  # broken: cpu then memory (failed); ns: all four


def test_a_bad_answer_in_a_later_chunk_fails_the_whole_namespace() -> None:
    def handler(query: str, params: dict[str, str]) -> tuple[int, bytes]:
        if int(params["start"]) > T0 and query.startswith("rate("):
            return 200, b'{"status": "success", "data": {"resultType": "scalar"}}'
        return healthy(query, params)

    history, adapter = crafted(handler, max_points_per_series=30)
    start = datetime.fromtimestamp(T0, UTC)
    with pytest.raises(PrometheusQueryError, match="expected a matrix") as error:
        history.fetch("ns", start, start + timedelta(hours=1))
    assert error.value.kind == "bad_answer"
    assert error.value.chunk.start_s == T0 + 30 * 60
    assert len(adapter.calls) == 2


def test_bearer_token_and_headers_are_sent(tmp_path: Any) -> None:
    token = tmp_path / "token"
    token.write_text("from-file\n")
    seen: list[dict[str, str]] = []

    class Headers(CraftedAnswers):
        def send(
            self, request: requests.PreparedRequest, *args: Any, **kw: Any
        ) -> requests.Response:
            seen.append(dict(request.headers))
            return super().send(request)

    session = requests.Session()
    session.mount("http://", Headers(healthy))
    config = PrometheusSourceConfig.model_validate(
        {"connection": {"url": URL, "bearer_token_file": token, "headers": {"X-Scope-OrgID": "t1"}}}
    )
    start = datetime.fromtimestamp(T0, UTC)
    PrometheusHistory(config, session=session).fetch("ns", start, start + timedelta(minutes=1))
    assert {h["Authorization"] for h in seen} == {"Bearer from-file"}
    assert {h["X-Scope-OrgID"] for h in seen} == {"t1"}

    token.unlink()
    with pytest.raises(PrometheusQueryError, match="cannot read the bearer token file") as error:
        PrometheusHistory(config, session=session).fetch("ns", start, start + timedelta(minutes=1))
    assert error.value.kind == "auth"
