"""The fleet's state as the Coordinator sees it, as plain typed values: the shard map, when
each shard was last ticked and how far behind it is, each cluster's discovery, each actor's
last answer. Pure: built by `fleet_status` from what the Coordinator records, read by the CLI
and the gRPC API (`Coordinator.status()`).

A shard's `last_tick` is the start of the last cluster tick of its owner that went through the
shard's namespace without an error; `lag_s` is the time from then to `taken_at` (None when the
shard was never ticked). A shard whose cluster is busy (a tick still running past the budget)
or failing keeps its last good tick, so its lag grows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from recommender.fleet.plan import Shard

__all__ = [
    "ActorRecord",
    "ActorStatus",
    "ClusterRecord",
    "ClusterStatus",
    "FleetStatus",
    "ShardRecord",
    "ShardStatus",
    "fleet_status",
]


@dataclass(frozen=True)
class ShardStatus:
    cluster: str
    namespace: str
    actor: str
    last_tick: dt.datetime | None
    lag_s: float | None
    last_error: str | None


@dataclass(frozen=True)
class ClusterStatus:
    name: str
    shards: int
    last_discovery: dt.datetime | None
    discovery_error: str | None
    """Why the last discovery failed or is still running; None when it succeeded."""
    busy_on: tuple[str, ...]
    """ShardActors whose tick of this cluster is still running past the budget."""


@dataclass(frozen=True)
class ActorStatus:
    name: str
    shards: tuple[str, ...]
    last_answer: dt.datetime | None
    """When the actor last answered a tick (None: never, or dead since)."""
    errors: tuple[str, ...]
    """Errors of its last tick (its own and its clusters')."""


@dataclass(frozen=True)
class FleetStatus:
    taken_at: dt.datetime
    ticks: int
    last_tick: dt.datetime | None
    actors: tuple[ActorStatus, ...]
    clusters: tuple[ClusterStatus, ...]
    shards: tuple[ShardStatus, ...]

    def shard_map(self) -> dict[str, list[str]]:
        """Which actor holds which shards (`cluster/namespace`)."""
        return {actor.name: list(actor.shards) for actor in self.actors}

    @property
    def max_lag_s(self) -> float | None:
        lags = [s.lag_s for s in self.shards if s.lag_s is not None]
        return max(lags) if lags else None


@dataclass
class ShardRecord:
    """What the Coordinator remembers of one shard between ticks."""

    last_tick: dt.datetime | None = None
    last_error: str | None = None


@dataclass
class ClusterRecord:
    last_discovery: dt.datetime | None = None
    discovery_error: str | None = None


@dataclass
class ActorRecord:
    last_answer: dt.datetime | None = None
    errors: tuple[str, ...] = ()
    busy: tuple[str, ...] = ()


def fleet_status(
    *,
    now: dt.datetime,
    ticks: int,
    last_tick: dt.datetime | None,
    plan: Mapping[Shard, str],
    actors: Mapping[str, ActorRecord],
    clusters: Mapping[str, ClusterRecord],
    shards: Mapping[Shard, ShardRecord],
) -> FleetStatus:
    """The status at `now` from the Coordinator's records."""
    held: dict[str, list[str]] = {name: [] for name in actors}
    for shard, owner in sorted(plan.items()):
        held.setdefault(owner, []).append(str(shard))
    shard_rows = []
    for shard, owner in sorted(plan.items()):
        record = shards.get(shard, ShardRecord())
        lag = None if record.last_tick is None else (now - record.last_tick).total_seconds()
        shard_rows.append(
            ShardStatus(
                shard.cluster, shard.namespace, owner, record.last_tick, lag, record.last_error
            )
        )
    counts: dict[str, int] = {}
    for shard in plan:
        counts[shard.cluster] = counts.get(shard.cluster, 0) + 1
    return FleetStatus(
        taken_at=now,
        ticks=ticks,
        last_tick=last_tick,
        actors=tuple(
            ActorStatus(name, tuple(held.get(name, [])), record.last_answer, record.errors)
            for name, record in sorted(actors.items())
        ),
        clusters=tuple(
            ClusterStatus(
                name,
                counts.get(name, 0),
                record.last_discovery,
                record.discovery_error,
                tuple(sorted(a for a, r in actors.items() if name in r.busy)),
            )
            for name, record in sorted(clusters.items())
        ),
        shards=tuple(shard_rows),
    )
