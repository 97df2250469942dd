"""/healthz and /readyz of `vpa-fleet run`: the rules of `Health` on a fake clock, then the
real HTTP server beside /metrics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from recommender.observability.health import Health
from recommender.observability.metrics import (
    MetricsServer,
    RecommenderMetrics,
    start_metrics_server,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ready_once_started_and_live_while_the_loop_beats() -> None:
    clock = Clock()
    health = Health(60.0, clock=clock)
    assert health.live()[0]
    ready, why = health.ready()
    assert not ready and why.startswith("starting")

    clock.now += 30
    health.mark_started()
    assert health.ready() == (True, "last progress 0 s ago")
    clock.now += 59
    health.beat()
    clock.now += 59
    assert health.live()[0] and health.ready()[0]

    clock.now += 2  # 61 s without a beat
    live, why = health.live()
    assert not live
    assert why == "no progress for 61 s (more than 60 s): the loop is stuck"
    assert health.ready() == (False, why)


def test_a_start_that_hangs_fails_liveness() -> None:
    clock = Clock()
    health = Health(60.0, clock=clock)
    clock.now += 61
    assert not health.live()[0]


@pytest.fixture
def served() -> Iterator[tuple[MetricsServer, Health, Clock]]:
    clock = Clock()
    health = Health(60.0, clock=clock)
    server = start_metrics_server("127.0.0.1", 0, RecommenderMetrics(), health=health)
    try:
        yield server, health, clock
    finally:
        server.stop()


def test_probes_beside_metrics(served: tuple[MetricsServer, Health, Clock]) -> None:
    server, health, clock = served
    base = server.url.removesuffix("/metrics")
    answer = requests.get(f"{base}/readyz", timeout=5)
    assert answer.status_code == 503
    assert answer.text.startswith("not ok: starting")
    assert requests.get(f"{base}/healthz", timeout=5).status_code == 200

    health.mark_started()
    answer = requests.get(f"{base}/readyz", timeout=5)
    assert (answer.status_code, answer.text) == (200, "ok: last progress 0 s ago\n")

    clock.now += 120
    for probe in ("healthz", "readyz"):
        answer = requests.get(f"{base}/{probe}", timeout=5)
        assert answer.status_code == 503
        assert "the loop is stuck" in answer.text

    metrics = requests.get(server.url, timeout=5)
    assert metrics.status_code == 200
    assert "vpa_fleet_ticks_total" in metrics.text


def test_without_health_every_path_is_metrics() -> None:
    server = start_metrics_server("127.0.0.1", 0, RecommenderMetrics())
    try:
        base = server.url.removesuffix("/metrics")
        assert "vpa_fleet_ticks_total" in requests.get(f"{base}/healthz", timeout=5).text
    finally:
        server.stop()
