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

    def ours(self, cluster: str) -> list[tuple[str, str]]:
        return sorted(
            (w.namespace, w.name)
            for w in self.demos[cluster].workloads
            if w.vpa is not None and w.vpa.recommender == "vpa-fleet"
        )


@pytest.fixture(scope="module")
def fleet(
    control_plane: ControlPlane, local_ray: LocalRay, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    work = tmp_path_factory.mktemp("fleet")
    second = start_control_plane(work / "two", nodes=2)
    demos: dict[str, Demo] = {}
    actors: dict[str, Any] = {}
    try:
        planes = {"one": control_plane, "two": second}
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
        settings = load_settings(overrides={"fleet": str(fleet_file)})
        config = load_fleet(fleet_file)
        actors, coordinator = start_actors(ray, config, settings)
        first = ray.get(coordinator.tick.remote())
        ray.get(coordinator.checkpoint.remote())
        yield Fleet(config, demos, clients, actors, coordinator, first, fleet_file)
    finally:
        for handle in actors.values():
            ray.kill(handle, no_restart=True)
        for demo in demos.values():
            demo.stop()
        second.stop()


def _reports(reports: list[ActorReport]) -> dict[str, list[Any]]:
    """Tick reports by cluster (a cluster's shards may sit on both actors)."""
    by_cluster: dict[str, list[Any]] = {}
    for actor in reports:
        for cluster, report in actor.reports.items():
            by_cluster.setdefault(cluster, []).append(report)
    return by_cluster


def test_every_cluster_is_served_and_equals_the_one_cluster_loop(fleet: Fleet) -> None:
    assert all(not a.errors for a in fleet.first)
    assert sum(a.shards for a in fleet.first) == 4  # two namespaces on each of two clusters
    for cluster, reports in _reports(fleet.first).items():
        written = {r.key for report in reports for r in report.results if r.outcome == "written"}
        assert written == {f"{ns}/{name}" for ns, name in fleet.ours(cluster)}
    # The one-cluster loop, on the same data, finds nothing to change.
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
    shards = sorted(s for held in shard_map.values() for s in held)
    expected = sorted(
        f"{cluster}/{ns}" for cluster in fleet.demos for ns in {n for n, _ in fleet.ours(cluster)}
    )
    assert shards == expected


def test_the_run_command_serves_the_fleet(fleet: Fleet) -> None:
    ray_temp = tempfile.mkdtemp(prefix="vffleet-", dir="/tmp")
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("vpa-fleet")),
            "run",
            "--fleet",
            str(fleet.file),
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
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fleet: 2 cluster(s) (one, two), 2 ShardActor(s)" in result.stdout
    assert "fleet tick 1: 4 shard(s) on 2 actor(s), 12 VPA(s), 0 status write(s), 0 error(s)" in (
        result.stdout
    )


NAMES = ("ticks_total", "status_writes_total", "shards", "containers", "tick_seconds")


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
