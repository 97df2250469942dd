"""The loop's beats for /healthz: a tick, a wait for the Lease and the wait for the next tick
all count as progress, so a long tick interval is not taken for a stuck loop."""

from __future__ import annotations

import datetime as dt
import io
import threading
from dataclasses import dataclass

import pytest

from recommender.loop import service
from recommender.loop.cluster import TickReport
from recommender.loop.service import Leadership, _Ticker
from recommender.observability.health import Health
from recommender.observability.metrics import RecommenderMetrics
from recommender.settings import Settings


@dataclass
class Beats(Health):
    """Health that also counts its beats."""

    count: int = 0

    def beat(self) -> None:
        self.count += 1
        super().beat()


@dataclass
class Actor:
    """Stands in for the Ray actor: only the ticker's own bookkeeping is under test."""

    def tick(self) -> TickReport:
        return TickReport(started=dt.datetime.now(dt.UTC))

    def checkpoint(self) -> int:
        return 0


def ticker(settings: Settings, health: Health, leadership: Leadership | None = None) -> _Ticker:
    return _Ticker(
        settings,
        Actor(),  # type: ignore[arg-type]
        leadership,
        io.StringIO(),
        metrics=RecommenderMetrics(),
        health=health,
    )


def test_the_wait_for_the_next_tick_beats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "_BEAT_S", 0.01)
    health = Beats(60.0)
    assert ticker(Settings(tick_interval_s=0.3), health).step(threading.Event())
    assert health.count >= 10  # one before the tick, then every 10 ms of the 300 ms wait


def test_a_stop_ends_the_wait_at_once() -> None:
    stop = threading.Event()
    stop.set()
    health = Beats(60.0)
    assert not ticker(Settings(tick_interval_s=3600), health).step(stop)
    assert health.count == 1


def test_a_replica_waiting_for_the_lease_beats() -> None:
    health = Beats(60.0)
    waiting = ticker(Settings(), health, Leadership(None, 1.0))  # type: ignore[arg-type]
    assert waiting.step(threading.Event())  # no Lease: waits 1 s for it, then returns
    assert waiting.ticks == 0 and health.count == 1
