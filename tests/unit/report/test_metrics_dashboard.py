"""The recommender's /metrics: what a tick counts, the actuator's counter, the HTTP endpoint,
and the Grafana dashboard querying only metrics the registry exposes."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry

from recommender.loop.cluster import TickReport, VpaResult
from recommender.observability.metrics import (
    METRIC_NAMES,
    RecommenderMetrics,
    start_metrics_server,
)

DASHBOARD = Path(__file__).parents[3] / "helm" / "vpa-fleet" / "dashboards" / "vpa-fleet.json"

# What may appear in a dashboard expression besides metric names.
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "rate", "irate", "increase",
    "histogram_quantile", "time", "label_values", "le", "cluster", "outcome", "action",
}  # fmt: skip


def _report() -> TickReport:
    report = TickReport(started=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    report.duration_s = 1.5
    report.vpas, report.namespaces, report.queries, report.samples = 5, 2, 8, 1234
    report.results = [
        VpaResult("a/x", "written"),
        VpaResult("a/y", "written"),
        VpaResult("a/z", "unchanged"),
        VpaResult("b/x", "error", message="policy"),
        VpaResult("b/y", "skipped", message="history"),
    ]
    report.errors = ["namespace b: Prometheus down"]
    return report


def test_a_tick_is_counted_as_the_report_says() -> None:
    metrics = RecommenderMetrics(CollectorRegistry())
    metrics.record_tick("eu-1", _report())
    metrics.record_tick("eu-1", _report())
    value = metrics.registry.get_sample_value
    labels = {"cluster": "eu-1"}
    assert value("vpa_fleet_ticks_total", labels) == 2
    assert value("vpa_fleet_status_writes_total", labels) == 4
    assert value("vpa_fleet_status_unchanged_total", labels) == 2
    assert value("vpa_fleet_errors_total", labels) == 4  # a namespace and a VPA, twice
    assert value("vpa_fleet_prometheus_queries_total", labels) == 16
    assert value("vpa_fleet_samples_ingested_total", labels) == 2468
    assert value("vpa_fleet_vpa_results_total", {**labels, "outcome": "skipped"}) == 2
    assert value("vpa_fleet_tick_seconds_count", labels) == 2
    assert value("vpa_fleet_tick_seconds_sum", labels) == 3.0
    assert value("vpa_fleet_tick_seconds_bucket", {**labels, "le": "1.0"}) == 0
    assert value("vpa_fleet_tick_seconds_bucket", {**labels, "le": "2.0"}) == 2
    assert value("vpa_fleet_vpas", labels) == 5
    assert value("vpa_fleet_namespaces", labels) == 2
    assert value("vpa_fleet_ticks_total", {"cluster": "other"}) is None


def test_the_actuator_counts_its_actions_by_action_and_outcome() -> None:
    metrics = RecommenderMetrics(CollectorRegistry())
    metrics.record_actuator_action("eu-1", "rollout", "done")
    metrics.record_actuator_action("eu-1", "rollout", "done")
    metrics.record_actuator_action("eu-1", "rollout", "rate_limited")
    labels = {"cluster": "eu-1", "action": "rollout"}
    value = metrics.registry.get_sample_value
    assert value("vpa_fleet_actuator_actions_total", {**labels, "outcome": "done"}) == 2
    assert value("vpa_fleet_actuator_actions_total", {**labels, "outcome": "rate_limited"}) == 1
    with pytest.raises(ValueError, match="outcome must not be empty"):
        metrics.record_actuator_action("eu-1", "rollout", "")


def test_the_endpoint_serves_the_registry() -> None:
    metrics = RecommenderMetrics(CollectorRegistry())
    metrics.record_tick("eu-1", _report())
    server = start_metrics_server("127.0.0.1", 0, metrics)
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", server.url)
        text = requests.get(server.url, timeout=10).text
    finally:
        server.stop()
    assert 'vpa_fleet_status_writes_total{cluster="eu-1"} 2.0' in text
    assert "# TYPE vpa_fleet_tick_seconds histogram" in text


def test_a_taken_port_is_an_error_naming_it() -> None:
    metrics = RecommenderMetrics(CollectorRegistry())
    server = start_metrics_server("127.0.0.1", 0, metrics)
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    try:
        with pytest.raises(OSError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            start_metrics_server("127.0.0.1", port, metrics)
    finally:
        server.stop()


def _expressions(dashboard: dict[str, object]) -> list[str]:
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "definition") and isinstance(value, str):
                    found.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(dashboard)
    return found


def _metric_names(expression: str) -> set[str]:
    """Identifiers of an expression that are not functions, keywords or label names."""
    text = re.sub(r"\{[^}]*\}", "", expression)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\"[^\"]*\"", "", text)  # strings (legends, quantiles are numbers)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return words - PROMQL_WORDS


def test_the_dashboard_queries_only_metrics_the_registry_exposes() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = _expressions(dashboard)
    assert len(expressions) >= 12
    used = set().union(*(_metric_names(e) for e in expressions))
    assert used, expressions
    assert used <= METRIC_NAMES, sorted(used - METRIC_NAMES)
    families = {name.removesuffix("_total") for name in METRIC_NAMES if "_bucket" not in name}
    shown = {name.removesuffix("_total").removesuffix("_bucket") for name in used}
    missing = {f for f in families if not any(s.startswith(f) for s in shown)}
    missing -= {"vpa_fleet_tick_seconds_count", "vpa_fleet_tick_seconds_sum"}
    assert not missing, f"metrics no panel shows: {sorted(missing)}"


def test_dashboard_panels_have_titles_ids_and_the_cluster_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(set(ids)) == len(ids)
    assert all(panel["title"] for panel in panels)
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "cluster"}
    for expression in _expressions(dashboard):
        if "vpa_fleet_" in expression and "label_values" not in expression:
            assert 'cluster=~"$cluster"' in expression, expression
