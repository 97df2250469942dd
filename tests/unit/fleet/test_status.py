"""The Coordinator's status: shard map, last tick and lag per shard, clusters, actors."""

from __future__ import annotations

import datetime as dt

from recommender.fleet.actors import tick_task_name
from recommender.fleet.plan import Shard
from recommender.fleet.status import ActorRecord, ClusterRecord, ShardRecord, fleet_status

NOW = dt.datetime(2026, 11, 29, 8, 0, tzinfo=dt.UTC)


def test_status_of_a_fleet() -> None:
    a, b, c = Shard("one", "a"), Shard("one", "b"), Shard("two", "c")
    status = fleet_status(
        now=NOW,
        ticks=3,
        last_tick=NOW - dt.timedelta(seconds=5),
        plan={a: "shard-0", b: "shard-1", c: "shard-0"},
        actors={
            "shard-0": ActorRecord(NOW, (), ("two",)),
            "shard-1": ActorRecord(None, ("actor shard-1: ActorDiedError: gone",)),
        },
        clusters={
            "one": ClusterRecord(NOW - dt.timedelta(seconds=5)),
            "two": ClusterRecord(None, "listing VPAs still running after 30 s"),
        },
        shards={
            a: ShardRecord(NOW - dt.timedelta(seconds=65)),
            c: ShardRecord(None, "cluster two: tick still running"),
        },
    )
    assert status.shard_map() == {"shard-0": ["one/a", "two/c"], "shard-1": ["one/b"]}
    by_shard = {(s.cluster, s.namespace): s for s in status.shards}
    assert by_shard["one", "a"].lag_s == 65
    assert by_shard["one", "b"].last_tick is None and by_shard["one", "b"].lag_s is None
    assert by_shard["two", "c"].last_error == "cluster two: tick still running"
    assert by_shard["two", "c"].actor == "shard-0"
    assert status.max_lag_s == 65
    clusters = {c.name: c for c in status.clusters}
    assert (clusters["one"].shards, clusters["two"].shards) == (2, 1)
    assert clusters["two"].busy_on == ("shard-0",) and clusters["one"].busy_on == ()
    assert clusters["two"].discovery_error == "listing VPAs still running after 30 s"
    assert [a.last_answer for a in status.actors] == [NOW, None]


def test_tick_task_names_list_the_shards_within_a_limit() -> None:
    assert tick_task_name("shard-0", []) == "tick shard-0: (no shards)"
    shards = [Shard("one", "b"), Shard("one", "a")]
    assert tick_task_name("shard-0", shards) == "tick shard-0: one/a, one/b"
    many = [Shard("cluster", f"namespace-{i:03}") for i in range(50)]
    name = tick_task_name("shard-1", many)
    assert len(name) <= 200
    assert name.startswith("tick shard-1: cluster/namespace-000, cluster/namespace-001")
    shown = name.count("cluster/")
    assert name.endswith(f" +{50 - shown} more")
