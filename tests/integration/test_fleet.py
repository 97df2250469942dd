"""The fleet on a real local Ray over two real API servers, each with its own Prometheus: the
ShardActors write what the one-cluster loop writes, and a killed ShardActor comes back and
restores its shards from checkpoints instead of refetching their history."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import ray
import requests
import yaml

from analytics.sources.prometheus import PrometheusHistory
from recommender.fleet.actors import ActorReport
from recommender.fleet.config import FleetConfig, load_fleet
from recommender.fleet.service import start_actors
from recommender.kube.rest import KubeClient, load_api_client
from recommender.loop.cluster import ClusterRecommender, LoopOptions
from recommender.ray_runtime import dashboard_headers
from recommender.settings import load_settings
from testbed.cluster import ControlPlane, start_control_plane
from testbed.demo import DEMO, Demo, start_demo
from testbed.process import free_port
from testbed.ray_local import LocalRay
from tests.integration.kube_helpers import eventually


@dataclass
class Fleet:
    config: FleetConfig
    demos: dict[str, Demo]
    clients: dict[str, KubeClient]
    actors: dict[str, Any]
    coordinator: Any
    first: list[ActorReport]
    file: Path
    run: subprocess.CompletedProcess[str]

    def ours(self, cluster: str) -> list[tuple[str, str]]:
        return sorted(
            (w.namespace, w.name)
            for w in self.demos[cluster].workloads
            if w.vpa is not None and w.vpa.recommender == "vpa-fleet"
        )


def _run_once(fleet_file: Path) -> subprocess.CompletedProcess[str]:
    """`vpa-fleet run --fleet FILE --once` as a user runs it, on its own embedded Ray."""
    ray_temp = tempfile.mkdtemp(prefix="vffleet-", dir="/tmp")
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("vpa-fleet")),
            "run",
            "--fleet",
            str(fleet_file),
            "--once",
            "--set",
            f"ray.dashboard_port={free_port()}",
            "--set",
            f"ray.temp_dir={ray_temp}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def fleet(
    control_plane: ControlPlane, local_ray: LocalRay, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    work = tmp_path_factory.mktemp("fleet")
    extra: list[ControlPlane] = []
    demos: dict[str, Demo] = {}
    actors: dict[str, Any] = {}
    try:
        for name in ("two", "three"):
            extra.append(start_control_plane(work / name, nodes=2))
        planes = {"one": control_plane, "two": extra[0], "three": extra[1]}
        prefix = f"f{uuid.uuid4().hex[:4]}-"
        clients = {n: KubeClient(load_api_client(str(p.kubeconfig))) for n, p in planes.items()}
        end = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
        for name in planes:
            # 7 days of history inside an 8-day window: every tick sees all of it.
            demos[name] = start_demo(
                work / f"prom-{name}", clients[name], DEMO, days=7, namespace_prefix=prefix, end=end
            )
        fleet_file = work / "fleet.yaml"
        fleet_file.write_text(
            yaml.safe_dump(
                {
                    "actors": 2,
                    "clusters": [
                        {
                            "name": name,
                            "kubeconfig": str(plane.kubeconfig),
                            "prometheus": {"connection": {"url": demos[name].prometheus.url}},
                            "include": [f"{prefix}*"],
                        }
                        for name, plane in planes.items()
                    ],
                }
            )
        )
        # The first writes come from the command itself ...
        run = _run_once(fleet_file)
        assert run.returncode == 0, run.stderr[-3000:]
        # ... then actors in this process take over, from its checkpoints.
        settings = load_settings(overrides={"fleet": str(fleet_file)})
        config = load_fleet(fleet_file)
        actors, coordinator = start_actors(ray, config, settings)
        first = ray.get(coordinator.tick.remote())
        ray.get(coordinator.checkpoint.remote())
        yield Fleet(config, demos, clients, actors, coordinator, first, fleet_file, run)
    finally:
        for handle in actors.values():
            ray.kill(handle, no_restart=True)
        for demo in demos.values():
            demo.stop()
        for plane in extra:
            plane.stop()


def _reports(reports: list[ActorReport]) -> dict[str, list[Any]]:
    """Tick reports by cluster (a cluster's shards may sit on both actors)."""
    by_cluster: dict[str, list[Any]] = {}
    for actor in reports:
        for cluster, report in actor.reports.items():
            by_cluster.setdefault(cluster, []).append(report)
    return by_cluster


def test_the_run_command_serves_every_cluster(fleet: Fleet) -> None:
    out = fleet.run.stdout
    assert "fleet: 3 cluster(s) (one, two, three), 2 ShardActor(s)" in out
    assert "fleet tick 1: 6 shard(s) on 2 actor(s), 18 VPA(s), 18 status write(s), 0 error(s)" in (
        out
    )
    for cluster in fleet.demos:
        for namespace, name in fleet.ours(cluster):
            assert f"{namespace}/{name} written: " in out
        # its shards, restored from the command's checkpoints, hold nothing new to write
        reports = _reports(fleet.first)[cluster]
        assert {r.outcome for report in reports for r in report.results} == {"unchanged"}
        assert sum(report.queries for report in reports) == 0


def test_what_the_fleet_wrote_equals_the_one_cluster_loop(fleet: Fleet) -> None:
    assert all(not a.errors for a in fleet.first)
    for cluster, demo in fleet.demos.items():
        namespaces = tuple(sorted({ns for ns, _ in fleet.ours(cluster)}))
        options = LoopOptions(cluster=cluster, namespaces=namespaces)
        prometheus = PrometheusHistory(fleet.config.cluster(cluster).prometheus)
        single = ClusterRecommender(fleet.clients[cluster], prometheus, options, checkpoints=False)
        single.start()
        try:
            report = single.tick()
        finally:
            single.stop()
        assert {r.outcome for r in report.results} == {"unchanged"}, (cluster, report.results)
        assert len(report.results) == len(fleet.ours(cluster)) == len(demo.pods) - 2


def test_a_killed_shard_actor_restores_its_shards(fleet: Fleet) -> None:
    victim = "shard-0"
    ray.kill(fleet.actors[victim], no_restart=False)

    def recovered() -> list[ActorReport] | None:
        reports: list[ActorReport] = ray.get(fleet.coordinator.tick.remote())
        return None if any(a.errors for a in reports) else reports

    reports = eventually(recovered, 120, "the killed ShardActor to come back")
    restarted = next(a for a in reports if a.actor == victim)
    assert restarted.shards > 0
    for report in restarted.reports.values():
        # Restored from checkpoints: no 8-day bootstrap (two chunks per metric), at most the
        # gap since the checkpoint (one chunk per metric and namespace), and nothing to write.
        assert report.queries <= 4 * report.namespaces
        assert {r.outcome for r in report.results} == {"unchanged"}


def test_shard_map_names_every_shard(fleet: Fleet) -> None:
    shard_map = ray.get(fleet.coordinator.shard_map.remote())
    assert set(shard_map) == {"shard-0", "shard-1"}
    assert all(shard_map.values())  # six shards: both actors hold some
    shards = sorted(s for held in shard_map.values() for s in held)
    expected = sorted(
        f"{cluster}/{ns}" for cluster in fleet.demos for ns in {n for n, _ in fleet.ours(cluster)}
    )
    assert shards == expected


NAMES = ("ticks_total", "shards", "containers", "tick_seconds")  # counters of 0 stay unseen


def test_actor_metrics_reach_rays_metrics_export(fleet: Fleet) -> None:
    port = ray._private.worker.global_worker.node.metrics_export_port

    def exported() -> str | None:
        ray.get(fleet.coordinator.tick.remote())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        missing = [n for n in NAMES if f"ray_vpa_fleet_{n}" not in text]
        return None if missing else text

    text = eventually(exported, 90, f"the ShardActors' metrics {NAMES} on the export port")
    tagged = [line for line in text.splitlines() if line.startswith("ray_vpa_fleet_shards{")]
    assert any('actor="shard-0"' in line and 'cluster="one"' in line for line in tagged) or any(
        'actor="shard-1"' in line and 'cluster="one"' in line for line in tagged
    ), tagged


def test_the_dashboard_lists_the_actors_by_name_with_the_token(
    fleet: Fleet, local_ray: LocalRay
) -> None:
    url = f"{local_ray.dashboard_url}/api/v0/actors?detail=true"
    refused = requests.get(url, timeout=10)
    assert refused.status_code == 401  # token authentication is on
    answer = requests.get(url, headers=dashboard_headers(), timeout=10)
    assert answer.status_code == 200, answer.text[:500]
    actors = answer.json()["data"]["result"]["result"]
    alive = {a["name"] for a in actors if a["state"] == "ALIVE"}
    assert {"shard-0", "shard-1", "coordinator"} <= alive
