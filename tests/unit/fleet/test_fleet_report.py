"""The fleet tick's printed report: clusters, late reports, busy clusters and errors."""

from __future__ import annotations

import datetime as dt
import io

from recommender.fleet.actors import ActorReport, FleetTick
from recommender.fleet.service import print_fleet_report
from recommender.loop.cluster import TickReport, VpaResult

NOW = dt.datetime(2026, 11, 29, 8, 0, tzinfo=dt.UTC)


def test_the_report_counts_busy_clusters_and_prints_late_ones() -> None:
    written = TickReport(NOW, vpas=2, namespaces=1, results=[VpaResult("shop/web", "written")])
    late = TickReport(NOW, vpas=1, namespaces=1, results=[VpaResult("slow/db", "written")])
    tick = FleetTick(
        3,
        NOW,
        [
            ActorReport("shard-0", 2, reports={"one": written}),
            ActorReport(
                "shard-1",
                1,
                errors=["cluster slow: tick still running after the budget of 30 s"],
                busy=["slow"],
                late={"slow": late},
            ),
        ],
        errors=["cluster dead: listing VPAs still running after 30 s"],
    )
    out = io.StringIO()
    print_fleet_report(tick, out)
    lines = out.getvalue().splitlines()
    assert "  error: cluster dead: listing VPAs still running after 30 s" in lines
    assert any(line.startswith("tick 3 shard-0/one: 2 VPA(s)") for line in lines)
    assert any(line.startswith("tick 3 shard-1/slow (late): 1 VPA(s)") for line in lines)
    assert "  error: shard-1: cluster slow: tick still running after the budget of 30 s" in lines
    assert lines[-1] == (
        "fleet tick 3: 3 shard(s) on 2 actor(s), 2 VPA(s), 2 status write(s), 2 error(s), "
        "1 busy cluster(s)"
    )
