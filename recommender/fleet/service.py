"""`vpa-fleet run --fleet FILE`: the ShardActors and the Coordinator on Ray, ticked from the
driver, with the same printing, checkpointing and clean stop as the one-cluster mode."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, TextIO

from recommender.fleet.actors import ActorReport, Coordinator, ShardActor
from recommender.fleet.config import FleetConfig, FleetConfigError, load_fleet
from recommender.loop.service import ServiceError, loop_options, print_report
from recommender.settings import Settings

SHARD_ACTOR_PREFIX = "shard-"


def print_fleet_report(number: int, reports: list[ActorReport], out: TextIO) -> None:
    """Each actor's clusters' reports, then a line for the whole fleet."""
    vpas = writes = errors = 0
    for actor in reports:
        for cluster, report in sorted(actor.reports.items()):
            print_report(number, report, out, where=f" {actor.actor}/{cluster}")
            vpas, writes = vpas + report.vpas, writes + report.writes
            errors += len(report.errors)
        for error in actor.errors:
            print(f"  error: {error}", file=out)
        errors += len(actor.errors)
    shards = sum(a.shards for a in reports)
    print(
        f"fleet tick {number}: {shards} shard(s) on {len(reports)} actor(s), {vpas} VPA(s), "
        f"{writes} status write(s), {errors} error(s)",
        file=out,
        flush=True,
    )


def start_actors(ray: Any, fleet: FleetConfig, settings: Settings) -> tuple[dict[str, Any], Any]:
    """The ShardActors (restartable, named after their place) and the Coordinator."""
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    per_actor = min(1.0, cpus / fleet.actors)
    remote = ray.remote(max_restarts=-1)(ShardActor)
    template = loop_options(settings)
    actors = {
        f"{SHARD_ACTOR_PREFIX}{i}": remote.options(
            name=f"{SHARD_ACTOR_PREFIX}{i}", num_cpus=per_actor
        ).remote(f"{SHARD_ACTOR_PREFIX}{i}", fleet, template)
        for i in range(fleet.actors)
    }
    coordinator = (
        ray.remote(Coordinator)
        .options(name="coordinator", num_cpus=0)
        .remote(fleet, settings.recommender_name, actors)
    )
    return actors, coordinator


def run_fleet(settings: Settings, path: Path, stop: threading.Event, out: TextIO) -> int:
    """Run the fleet until `stop` (or one tick with `settings.once`); the exit code."""
    import ray  # noqa: PLC0415 - importing Ray takes a second

    from recommender.ray_runtime import start_ray, stop_ray  # noqa: PLC0415

    try:
        fleet = load_fleet(path)
    except FleetConfigError as error:
        raise ServiceError(f"invalid fleet file:\n{error}") from None
    runtime = start_ray(settings.ray)
    print(f"Ray:            {runtime.address}", file=out)
    print(f"Ray dashboard:  {runtime.dashboard_url or '(off)'}", file=out, flush=True)
    actors: dict[str, Any] = {}
    try:
        actors, coordinator = start_actors(ray, fleet, settings)
        names = ", ".join(c.name for c in fleet.clusters)
        print(f"fleet: {len(fleet.clusters)} cluster(s) ({names}), {len(actors)} ShardActor(s)")
        number, last_checkpoint = 0, 0.0
        while not stop.is_set():
            began = time.monotonic()
            number += 1
            print_fleet_report(number, ray.get(coordinator.tick.remote()), out)
            if number == 1 or time.monotonic() - last_checkpoint >= settings.checkpoint_interval_s:
                saved = ray.get(coordinator.checkpoint.remote())
                last_checkpoint = time.monotonic()
                print(f"checkpointed {saved} VPA(s)", file=out, flush=True)
            if settings.once:
                break
            stop.wait(max(0.0, began + settings.tick_interval_s - time.monotonic()))
        else:
            saved = ray.get(coordinator.checkpoint.remote())
            print(f"checkpointed {saved} VPA(s) on the way out", file=out, flush=True)
        return 0
    finally:
        try:
            for handle in actors.values():
                ray.kill(handle, no_restart=True)
        finally:
            stop_ray(runtime)
