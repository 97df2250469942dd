"""`vpa-fleet run --fleet FILE`: the ShardActors and the Coordinator on Ray, ticked from the
driver, with the same printing, checkpointing, leader election and clean stop as the
one-cluster mode.

With leader election (`--leader-elect`), a driver starts the actors only once it holds the
Lease (in the home cluster: `--kubeconfig`/`--context`, in-cluster by default), and kills them
when it loses it: the actors' names are fixed, so only one driver's actors can exist in a Ray
namespace, and a driver that does not lead starts nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from recommender.api.serve import ApiStartError, start_fleet_api
from recommender.api.server import RunningServer
from recommender.fleet.access import HomeCluster
from recommender.fleet.actors import Coordinator, FleetTick, ShardActor
from recommender.fleet.config import FleetConfig, FleetConfigError, load_fleet
from recommender.fleet.limits import LIMITER_NAME, PassLimiter
from recommender.fleet.status import FleetStatus
from recommender.kube.lease import LeaseElector
from recommender.loop.service import Leadership, ServiceError, print_report
from recommender.settings import Settings

log = logging.getLogger(__name__)

SHARD_ACTOR_PREFIX = "shard-"
COORDINATOR_NAME = "coordinator"


def print_fleet_report(tick: FleetTick, out: TextIO) -> None:
    """Each actor's clusters' reports, then a line for the whole fleet."""
    number = tick.number
    vpas = writes = errors = busy = 0
    for error in tick.errors:
        print(f"  error: {error}", file=out)
    errors += len(tick.errors)
    for actor in tick.actors:
        for cluster, report in sorted(actor.late.items()):
            print_report(number, report, out, where=f" {actor.actor}/{cluster} (late)")
            writes += report.writes
        for cluster, report in sorted(actor.reports.items()):
            print_report(number, report, out, where=f" {actor.actor}/{cluster}")
            vpas, writes = vpas + report.vpas, writes + report.writes
            errors += len(report.errors)
        for error in actor.errors:
            print(f"  error: {actor.actor}: {error}", file=out)
        errors += len(actor.errors)
        busy += len(actor.busy)
    shards = sum(a.shards for a in tick.actors)
    print(
        f"fleet tick {number}: {shards} shard(s) on {len(tick.actors)} actor(s), {vpas} VPA(s), "
        f"{writes} status write(s), {errors} error(s), {busy} busy cluster(s)",
        file=out,
        flush=True,
    )


@dataclass
class FleetActors:
    """Handles of one driver's actors."""

    shards: dict[str, Any]
    coordinator: Any
    limiter: Any = None
    names: list[str] = field(default_factory=list)

    def kill(self, ray: Any) -> None:
        for handle in [*self.shards.values(), self.coordinator, self.limiter]:
            if handle is not None:
                ray.kill(handle, no_restart=True)


def home_cluster(settings: Settings) -> HomeCluster:
    """The cluster the recommender runs in: kubeconfig Secrets and the Lease live there."""
    kubeconfig = str(settings.kubeconfig) if settings.kubeconfig else None
    return HomeCluster(kubeconfig, settings.context)


def fleet_leadership(settings: Settings) -> Leadership | None:
    """The single-cluster Leadership on the home cluster's Lease (settings.leader_election)."""
    election = settings.leader_election
    if not election.enabled:
        return None
    assert election.lease_namespace is not None and election.identity is not None  # validated
    elector = LeaseElector(
        home_cluster(settings).client(),
        election.lease_namespace,
        election.lease_name,
        election.identity,
        election.lease_duration_s,
    )
    return Leadership(elector, election.renew_interval_s)


def start_actors(
    ray: Any, fleet: FleetConfig, settings: Settings, *, prefix: str = ""
) -> FleetActors:
    """The ShardActors (restartable, named `shard-<i>`), the Coordinator and, when a cluster
    has `max_concurrent_passes`, the PassLimiter. `prefix` goes before every name."""
    from recommender.loop.service import loop_options  # noqa: PLC0415

    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    per_actor = min(1.0, cpus / fleet.actors)
    home = home_cluster(settings)
    limits = {c.name: c.max_concurrent_passes for c in fleet.clusters if c.max_concurrent_passes}
    limiter = None
    if limits:
        limiter = (
            ray.remote(PassLimiter)
            .options(name=f"{prefix}{LIMITER_NAME}", num_cpus=0, max_restarts=-1)
            .remote(limits)
        )
    remote = ray.remote(max_restarts=-1)(ShardActor)
    template = loop_options(settings)
    shards = {}
    for i in range(fleet.actors):
        name = f"{prefix}{SHARD_ACTOR_PREFIX}{i}"
        shards[name] = remote.options(name=name, num_cpus=per_actor).remote(
            name, fleet, template, home=home, limiter=limiter, of=fleet.actors
        )
    # A second thread lets status() answer while a tick runs. Restarted when it dies: it holds
    # no state the ShardActors do not (its plan is computed again at its first tick).
    coordinator = (
        ray.remote(Coordinator)
        .options(name=f"{prefix}{COORDINATOR_NAME}", num_cpus=0, max_concurrency=2, max_restarts=-1)
        .remote(fleet, settings.recommender_name, shards, home)
    )
    return FleetActors(shards, coordinator, limiter, sorted(shards))


@dataclass
class _FleetDriver:
    """Ticks the fleet while leading; starts the actors on taking the Lease, kills them on
    losing it."""

    ray: Any
    fleet: FleetConfig
    settings: Settings
    leadership: Leadership | None
    out: TextIO
    actors: FleetActors | None = None
    ticks: int = 0
    waiting_said: bool = False
    last_checkpoint: float = 0.0

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _start(self) -> bool:
        try:
            self.actors = start_actors(self.ray, self.fleet, self.settings)
            # Fails here when a name is taken (the actors of a driver that just lost the Lease).
            self.ray.get(self.actors.coordinator.shard_map.remote())
        except (ValueError, self.ray.exceptions.RayError) as error:
            self._say(f"the fleet's actors did not start ({error}); trying again")
            self._drop()
            return False
        clusters = ", ".join(c.name for c in self.fleet.clusters)
        self._say(
            f"fleet: {len(self.fleet.clusters)} cluster(s) ({clusters}), "
            f"{len(self.actors.shards)} ShardActor(s)"
        )
        return True

    def _drop(self) -> None:
        if self.actors is not None:
            self.actors.kill(self.ray)
            self.actors = None

    def step(self, stop: threading.Event) -> bool:
        """One tick (or a wait for the Lease); False when the loop should end."""
        began = time.monotonic()
        leading = self.leadership is None or self.leadership.leading.wait(1.0)
        if not leading:
            if self.actors is not None:
                self._say("lost the lease: the fleet's actors stop; another replica takes over")
                self._drop()
            elif not self.waiting_said:
                self._say("waiting for the lease: another replica runs the fleet")
            self.waiting_said = True
            return not stop.is_set()
        self.waiting_said = False
        if self.actors is None and not self._start():
            stop.wait(min(5.0, self.settings.tick_interval_s))
            return not stop.is_set()
        assert self.actors is not None
        self.ticks += 1
        try:
            tick: FleetTick = self.ray.get(self.actors.coordinator.tick.remote())
        except self.ray.exceptions.RayActorError as error:
            self._say(f"tick {self.ticks}: the Coordinator failed ({error}); Ray restarts it")
            stop.wait(min(5.0, self.settings.tick_interval_s))
            return not stop.is_set()
        tick.number = self.ticks
        print_fleet_report(tick, self.out)
        interval = self.settings.checkpoint_interval_s
        if self.ticks == 1 or time.monotonic() - self.last_checkpoint >= interval:
            saved = self.ray.get(self.actors.coordinator.checkpoint.remote())
            self.last_checkpoint = time.monotonic()
            self._say(f"checkpointed {saved} VPA(s)")
        if self.settings.once:
            return False
        stop.wait(max(0.0, began + self.settings.tick_interval_s - time.monotonic()))
        return not stop.is_set()

    def fleet_status(self) -> FleetStatus | None:
        """The Coordinator's status, for the gRPC API (None while the actors are not up)."""
        actors = self.actors
        if actors is None:
            return None
        try:
            status: FleetStatus = self.ray.get(actors.coordinator.status.remote(), timeout=30)
        except self.ray.exceptions.RayError as error:  # busy or restarting: say nothing
            log.warning("fleet status for the API not read: %s", error)
            return None
        return status

    def close(self) -> None:
        """Checkpoint on the way out (when leading and not --once), then end the actors."""
        if self.actors is None:
            return
        leading = self.leadership is None or self.leadership.leading.is_set()
        try:
            if leading and self.ticks and not self.settings.once:
                saved = self.ray.get(self.actors.coordinator.checkpoint.remote())
                self._say(f"checkpointed {saved} VPA(s) on the way out")
        finally:
            self._drop()


def run_fleet(settings: Settings, path: Path, stop: threading.Event, out: TextIO) -> int:
    """Run the fleet until `stop` (or one tick with `settings.once`); the exit code."""
    from recommender.ray_runtime import start_ray, stop_ray  # noqa: PLC0415

    try:
        fleet = load_fleet(path)
    except FleetConfigError as error:
        raise ServiceError(f"invalid fleet file:\n{error}") from None
    lead = fleet_leadership(settings)
    runtime = start_ray(settings.ray)
    # Only now: start_ray sets the environment Ray reads when first imported (token auth).
    import ray  # noqa: PLC0415

    print(f"Ray:            {runtime.address}", file=out)
    print(f"Ray dashboard:  {runtime.dashboard_url or '(off)'}", file=out, flush=True)
    driver = _FleetDriver(ray, fleet, settings, lead, out)
    api_server: RunningServer | None = None
    try:
        if settings.api.enabled:
            try:
                api_server = start_fleet_api(
                    settings, fleet, home_cluster(settings), driver.fleet_status
                )
            except ApiStartError as error:
                raise ServiceError(str(error)) from None
            print(f"gRPC API:       {settings.api.listen} (port {api_server.port})", file=out)
        if lead is not None:
            lead.start()
        while driver.step(stop):
            pass
        return 0
    finally:
        try:
            driver.close()
        finally:
            try:
                if lead is not None:
                    lead.stop()
            finally:
                if api_server is not None:
                    api_server.stop()
                stop_ray(runtime)
