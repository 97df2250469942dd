"""The fleet on a real local Ray over three real API servers, each with its own Prometheus (one
reached through a kubeconfig held in a Secret): the ShardActors write what the one-cluster loop
writes, a killed ShardActor comes back and restores its shards from checkpoints instead of
refetching their history, only the Lease holder runs the fleet, and a hung API server or
Prometheus delays no other cluster and piles no ticks up."""

from __future__ import annotations

import base64
import datetime as dt
import signal
import socket
import subprocess
import sys
import tempfile
import threading
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
from recommender.fleet.actors import ActorReport, FleetTick, tick_task_name
from recommender.fleet.config import FleetConfig, load_fleet
from recommender.fleet.plan import Shard, assign
from recommender.fleet.service import FleetActors, start_actors
from recommender.fleet.status import FleetStatus
from recommender.kube.rest import JSON_PATCH, KubeApiError, KubeClient, load_api_client
from recommender.kube.status_writer import vpa_path
from recommender.loop.cluster import ClusterRecommender, LoopOptions
from recommender.ray_runtime import dashboard_headers
from recommender.settings import load_settings
from testbed.cluster import ControlPlane, start_control_plane
from testbed.demo import DEMO, Demo, start_demo, vpa_manifest, workload_manifest
from testbed.process import free_port
from testbed.ray_local import LocalRay, ray_pids, start_ray_head, stop_ray_head
from tests.integration.kube_helpers import (
    eventually,
    inline_kubeconfig,
    pod_template,
    running_pods,
)


@dataclass
class Fleet:
    config: FleetConfig
    demos: dict[str, Demo]
    clients: dict[str, KubeClient]
    handles: FleetActors
    first: list[ActorReport]
    file: Path
    run: subprocess.CompletedProcess[str]
    planes: dict[str, ControlPlane]
    home: Path
    """The kubeconfig of the home cluster (plane one), where the kubeconfig Secret lives."""

    @property
    def actors(self) -> dict[str, Any]:
        return self.handles.shards

    @property
    def coordinator(self) -> Any:
        return self.handles.coordinator

    def ours(self, cluster: str) -> list[tuple[str, str]]:
        return sorted(
            (w.namespace, w.name)
            for w in self.demos[cluster].workloads
            if w.vpa is not None and w.vpa.recommender == "vpa-fleet"
        )


def _run_argv(fleet_file: Path, home: Path, *extra: str) -> list[str]:
    """`vpa-fleet run --fleet FILE` as a user runs it, on its own embedded Ray."""
    ray_temp = tempfile.mkdtemp(prefix="vffleet-", dir="/tmp")
    return [
        str(Path(sys.executable).with_name("vpa-fleet")),
        "run",
        "--fleet",
        str(fleet_file),
        "--kubeconfig",
        str(home),
        "--set",
        f"ray.dashboard_port={free_port()}",
        "--set",
        f"ray.temp_dir={ray_temp}",
        *extra,
    ]


def _run_once(fleet_file: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _run_argv(fleet_file, home, "--once"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _kubeconfig_secret(home: ControlPlane, plane: ControlPlane) -> dict[str, str]:
    """A Secret in the home cluster holding the plane's kubeconfig; its reference."""
    namespace = f"fleet-home-{uuid.uuid4().hex[:4]}"
    home.kubectl("create", "namespace", namespace)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "fleet-kubeconfigs", "namespace": namespace},
        "stringData": {"three": inline_kubeconfig(plane)},
    }
    home.kubectl("apply", "-f", "-", input_text=yaml.safe_dump(secret))
    return {"namespace": namespace, "name": "fleet-kubeconfigs", "key": "three"}


def _spread_prefix(planes: dict[str, ControlPlane]) -> str:
    """A random namespace prefix whose six shards the rendezvous plan spreads over both
    actors (about 3 % of prefixes put all six on one), so that tests see both at work."""
    namespaces = {
        w.namespace for w in DEMO if w.vpa is not None and w.vpa.recommender == "vpa-fleet"
    }
    while True:
        prefix = f"f{uuid.uuid4().hex[:4]}-"
        shards = [Shard(c, f"{prefix}{ns}") for c in planes for ns in namespaces]
        if len(set(assign(shards, ["shard-0", "shard-1"]).values())) == 2:
            return prefix


@pytest.fixture(scope="module")
def fleet(
    control_plane: ControlPlane, local_ray: LocalRay, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    work = tmp_path_factory.mktemp("fleet")
    extra: list[ControlPlane] = []
    demos: dict[str, Demo] = {}
    handles: FleetActors | None = None
    try:
        for name in ("two", "three"):
            extra.append(start_control_plane(work / name, nodes=2))
        planes = {"one": control_plane, "two": extra[0], "three": extra[1]}
        prefix = _spread_prefix(planes)
        clients = {n: KubeClient(load_api_client(str(p.kubeconfig))) for n, p in planes.items()}
        end = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
        for name in planes:
            # 7 days of history inside an 8-day window: every tick sees all of it.
            demos[name] = start_demo(
                work / f"prom-{name}", clients[name], DEMO, days=7, namespace_prefix=prefix, end=end
            )
        # Cluster three is reached through a kubeconfig held in a Secret of cluster one.
        access: dict[str, dict[str, Any]] = {
            "one": {"kubeconfig": str(control_plane.kubeconfig)},
            "two": {"kubeconfig": str(extra[0].kubeconfig)},
            "three": {
                "kubeconfig_secret": _kubeconfig_secret(control_plane, extra[1]),
                "context": "admin@c",
            },
        }
        fleet_file = work / "fleet.yaml"
        fleet_file.write_text(
            yaml.safe_dump(
                {
                    "actors": 2,
                    # Generous: the first tick restores and reads on a busy 2-core machine.
                    "tick_budget_s": 120,
                    "clusters": [
                        {
                            "name": name,
                            **access[name],
                            "prometheus": {"connection": {"url": demos[name].prometheus.url}},
                            "include": [f"{prefix}*"],
                        }
                        for name in planes
                    ],
                }
            )
        )
        # The first writes come from the command itself ...
        run = _run_once(fleet_file, control_plane.kubeconfig)
        assert run.returncode == 0, run.stderr[-3000:]
        # ... then actors in this process take over, from its checkpoints.
        settings = load_settings(
            overrides={"fleet": str(fleet_file), "kubeconfig": str(control_plane.kubeconfig)}
        )
        config = load_fleet(fleet_file)
        handles = start_actors(ray, config, settings)
        first: FleetTick = ray.get(handles.coordinator.tick.remote())
        ray.get(handles.coordinator.checkpoint.remote())
        yield Fleet(
            config,
            demos,
            clients,
            handles,
            first.actors,
            fleet_file,
            run,
            planes,
            control_plane.kubeconfig,
        )
    finally:
        if handles is not None:
            handles.kill(ray)
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
    assert (
        "fleet tick 1: 6 shard(s) on 2 actor(s), 18 VPA(s), 18 status write(s), 0 error(s), "
        "0 busy cluster(s)"
    ) in out
    # Cluster three's credentials came from the Secret and show nowhere in the output.
    key = fleet.planes["three"].pki.admin_key.read_bytes()
    secret_bits = [base64.b64encode(key).decode()[:40], key.decode().splitlines()[1]]
    assert not [bit for bit in secret_bits if bit in out or bit in fleet.run.stderr]
    for cluster in fleet.demos:
        for namespace, name in fleet.ours(cluster):
            assert f"{namespace}/{name} written: " in out
        # its shards, restored from the command's checkpoints, hold nothing new to write
        reports = _reports(fleet.first).get(cluster)
        assert reports, fleet.first
        assert {r.outcome for report in reports for r in report.results} == {"unchanged"}
        # No 8-day bootstrap: at most the gap since the command's checkpoint (one chunk per
        # metric and namespace).
        assert sum(r.queries for r in reports) <= 4 * sum(r.namespaces for r in reports)


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
        tick: FleetTick = ray.get(fleet.coordinator.tick.remote())
        return None if any(a.errors for a in tick.actors) or tick.errors else tick.actors

    reports = eventually(recovered, 120, "the killed ShardActor to come back")
    restarted = next(a for a in reports if a.actor == victim)
    assert restarted.shards > 0
    for report in restarted.reports.values():
        # Restored from checkpoints: no 8-day bootstrap (two chunks per metric), at most the
        # gap since the checkpoint (one chunk per metric and namespace), and nothing to write.
        assert report.queries <= 4 * report.namespaces
        assert {r.outcome for r in report.results} == {"unchanged"}


def test_a_killed_coordinator_comes_back_with_the_same_plan_and_nothing_refetched(
    fleet: Fleet,
) -> None:
    before = ray.get(fleet.coordinator.shard_map.remote())
    ray.kill(fleet.coordinator, no_restart=False)

    def recovered() -> list[ActorReport] | None:
        try:
            tick: FleetTick = ray.get(fleet.coordinator.tick.remote())
        except ray.exceptions.RayActorError:
            return None  # still restarting
        return None if any(a.errors for a in tick.actors) or tick.errors else tick.actors

    reports = eventually(recovered, 120, "the killed Coordinator to come back")
    assert ray.get(fleet.coordinator.shard_map.remote()) == before
    for actor in reports:
        for report in actor.reports.values():
            # The ShardActors kept their state: only the minutes since the last tick are read.
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
    shard_map = ray.get(fleet.coordinator.shard_map.remote())
    # Every (actor, cluster) the plan gives shards to has its gauge of shards owned.
    pairs = {(actor, shard.split("/")[0]) for actor, held in shard_map.items() for shard in held}

    def exported() -> str | None:
        ray.get(fleet.coordinator.tick.remote())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        missing = [n for n in NAMES if f"ray_vpa_fleet_{n}" not in text]
        tagged = [line for line in text.splitlines() if line.startswith("ray_vpa_fleet_shards{")]
        unseen = [
            pair
            for pair in pairs
            if not any(f'actor="{pair[0]}"' in t and f'cluster="{pair[1]}"' in t for t in tagged)
        ]
        return None if missing or unseen else text

    eventually(exported, 90, f"the ShardActors' metrics {NAMES}, shards tagged {sorted(pairs)}")


def test_the_dashboard_lists_the_actors_and_their_shards_with_the_token(
    fleet: Fleet, local_ray: LocalRay
) -> None:
    base = f"{local_ray.dashboard_url}/api/v0"
    refused = requests.get(f"{base}/actors?detail=true", timeout=10)
    assert refused.status_code == 401  # token authentication is on
    answer = requests.get(f"{base}/actors?detail=true", headers=dashboard_headers(), timeout=10)
    assert answer.status_code == 200, answer.text[:500]
    actors = answer.json()["data"]["result"]["result"]
    alive = {a["name"]: a for a in actors if a["state"] == "ALIVE"}
    assert {"shard-0", "shard-1", "coordinator"} <= set(alive)
    assert alive["shard-0"]["repr_name"].startswith("ShardActor(shard-0, 2 actors")
    # Each actor's tick task is named after the shards it holds now.
    shard_map = ray.get(fleet.coordinator.shard_map.remote())
    ray.get(fleet.coordinator.tick.remote())
    expected = {
        tick_task_name(actor, [Shard(*shard.split("/", 1)) for shard in held])
        for actor, held in shard_map.items()
    }

    def named() -> set[str] | None:
        tasks = requests.get(
            f"{base}/tasks?detail=true&limit=10000&filter_keys=type&filter_predicates=%3D"
            "&filter_values=ACTOR_TASK",
            headers=dashboard_headers(),
            timeout=30,
        ).json()["data"]["result"]["result"]
        names = {t["name"] for t in tasks}
        return names if expected <= names else None

    eventually(named, 60, f"tick tasks named {expected} on the dashboard")


def test_the_coordinator_status_has_every_shard_with_its_last_tick(fleet: Fleet) -> None:
    ray.get(fleet.coordinator.tick.remote())
    status: FleetStatus = ray.get(fleet.coordinator.status.remote())
    assert status.shard_map() == ray.get(fleet.coordinator.shard_map.remote())
    assert len(status.shards) == 6
    assert all(s.last_tick is not None and s.last_error is None for s in status.shards)
    assert all(s.lag_s is not None and s.lag_s >= 0 for s in status.shards)
    assert status.last_tick is not None and status.ticks >= 2
    assert {c.name: c.shards for c in status.clusters} == {"one": 2, "two": 2, "three": 2}
    assert all(c.discovery_error is None and not c.busy_on for c in status.clusters)


@pytest.fixture
def ray_head() -> Iterator[tuple[str, str]]:
    """A separate Ray head (`ray start --head`) serving Ray Client on a port of its own, as
    the chart's RayCluster does: (client address, GCS address)."""
    head = start_ray_head(object_store_bytes=128 * 1024**2, dashboard=False, ray_client=True)
    pids = ray_pids(head.temp_dir, head.address)
    try:
        yield head.client_address, head.address
    finally:
        stop_ray_head(head.temp_dir, head.address, [*pids, *ray_pids(head.temp_dir, head.address)])


def test_the_driver_runs_the_fleet_on_a_ray_cluster_through_ray_client(
    fleet: Fleet, ray_head: tuple[str, str]
) -> None:
    """What the chart's driver does: `--ray-address ray://...`, the actors on the cluster."""
    client_address, _ = ray_head
    argv = [
        str(Path(sys.executable).with_name("vpa-fleet")),
        "run",
        "--fleet",
        str(fleet.file),
        "--kubeconfig",
        str(fleet.home),
        "--once",
        "--ray-address",
        client_address,
    ]
    run = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "fleet: 3 cluster(s) (one, two, three), 2 ShardActor(s)" in run.stdout
    summary = next(line for line in run.stdout.splitlines() if line.startswith("fleet tick 1:"))
    assert summary.startswith("fleet tick 1: 6 shard(s) on 2 actor(s), 18 VPA(s), ")
    assert summary.endswith(" 0 error(s), 0 busy cluster(s)")


def _lease(kube: KubeClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return kube.get(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}")
    except KubeApiError as error:
        if error.not_found:
            return None
        raise


class _Lines:
    """A process's stdout, read line by line in a thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        stream = process.stdout
        threading.Thread(target=lambda: self.lines.extend(stream), daemon=True).start()

    def find(self, text: str) -> str | None:
        return next((line for line in list(self.lines) if text in line), None)


def test_only_the_lease_holder_runs_the_fleet(fleet: Fleet) -> None:
    home = fleet.clients["one"]
    namespace = f"fleet-lease-{uuid.uuid4().hex[:4]}"
    fleet.planes["one"].kubectl("create", "namespace", namespace)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    leases = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    home.request(
        "POST",
        leases,
        body={
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "fleet", "namespace": namespace},
            "spec": {
                "holderIdentity": "another-driver",
                "leaseDurationSeconds": 3600,
                "acquireTime": now,
                "renewTime": now,
            },
        },
    )
    argv = _run_argv(
        fleet.file,
        fleet.home,
        "--leader-elect",
        "--set",
        f"leader_election.lease_namespace={namespace}",
        "--set",
        "leader_election.lease_name=fleet",
        "--set",
        "leader_election.identity=this-driver",
        "--set",
        "leader_election.renew_interval_s=1",
        "--set",
        "tick_interval_s=5",
    )
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = _Lines(process)
    try:
        eventually(lambda: out.find("waiting for the lease"), 120, "the driver to wait")
        # Held by another driver: no actors, no tick.
        assert out.find("cluster(s) (one, two, three)") is None and out.find("fleet tick") is None
        home.request("DELETE", f"{leases}/fleet")  # the other driver is gone
        eventually(lambda: out.find("fleet tick 1:"), 180, "the first tick once leading")
        assert out.find("fleet: 3 cluster(s) (one, two, three), 2 ShardActor(s)")
        lease = _lease(home, namespace, "fleet")
        assert lease is not None and lease["spec"]["holderIdentity"] == "this-driver"
        process.send_signal(signal.SIGINT)
        assert process.wait(120) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
    assert out.find("on the way out")  # checkpointed before stopping
    lease = _lease(home, namespace, "fleet")
    assert lease is not None and not lease["spec"].get("holderIdentity")  # released


class _Hung:
    """A TCP server that accepts connections and never answers; counts them."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self.server.close()
        for connection in self.accepted:
            connection.close()


def _clear_recommendations(kube: KubeClient, vpas: list[tuple[str, str]]) -> None:
    for namespace, name in vpas:
        kube.request(
            "PATCH",
            vpa_path(namespace, name) + "/status",
            body=[{"op": "remove", "path": "/status/recommendation"}],
            content_type=JSON_PATCH,
        )


def _slow_and_dead(fleet: Fleet, tmp_path: Path, prometheus: _Hung, api: _Hung) -> tuple[Path, str]:
    """A fleet file of one and two as before (one limited to one namespace pass at a time
    fleet-wide), `slow` (a namespace of cluster one with a VPA and a running pod) whose
    Prometheus accepts connections and never answers, and `dead` whose API server does the
    same."""
    plane = fleet.planes["one"]
    namespace = f"slow-{uuid.uuid4().hex[:4]}"
    plane.kubectl("create", "namespace", namespace)
    objects = [
        workload_manifest(
            "Deployment", "web", pod_template("web"), replicas=1, namespace=namespace
        ),
        vpa_manifest(namespace, "web", "Deployment"),
    ]
    plane.kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(objects))
    eventually(lambda: running_pods(fleet.clients["one"].api, namespace, "web"), 60, "web")
    dead_kubeconfig = yaml.safe_load(plane.kubeconfig.read_text())
    dead_kubeconfig["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{api.port}"
    (tmp_path / "dead").write_text(yaml.safe_dump(dead_kubeconfig))
    base = yaml.safe_load(fleet.file.read_text())
    clusters = [c for c in base["clusters"] if c["name"] in ("one", "two")]
    clusters[0]["max_concurrent_passes"] = 1
    hung = f"http://127.0.0.1:{prometheus.port}"
    clusters += [
        {
            "name": "slow",
            "kubeconfig": str(plane.kubeconfig),
            "include": [namespace],
            "prometheus": {"connection": {"url": hung, "timeout_s": 900}},
        },
        {
            "name": "dead",
            "kubeconfig": str(tmp_path / "dead"),
            "prometheus": {"connection": {"url": hung}},
        },
    ]
    file = tmp_path / "fleet.yaml"
    file.write_text(yaml.safe_dump({"actors": 2, "tick_budget_s": 20, "clusters": clusters}))
    return file, namespace


def test_a_hung_cluster_delays_no_other_and_piles_no_ticks_up(fleet: Fleet, tmp_path: Path) -> None:
    """Last in the module: the fixture's actors make way for a fleet with a hung Prometheus
    (`slow`) and a hung API server (`dead`) next to clusters one and two."""
    fleet.handles.kill(ray)
    hung_prometheus, hung_api = _Hung(), _Hung()
    file, namespace = _slow_and_dead(fleet, tmp_path, hung_prometheus, hung_api)
    settings = load_settings(overrides={"fleet": str(file), "kubeconfig": str(fleet.home)})
    handles = start_actors(ray, load_fleet(file), settings, prefix="iso-")
    good = {c: fleet.ours(c) for c in ("one", "two")}
    for cluster, vpas in good.items():
        _clear_recommendations(fleet.clients[cluster], vpas)
    try:
        ticks: list[FleetTick] = [ray.get(handles.coordinator.tick.remote()) for _ in range(3)]
        # The good clusters: every VPA written again in the first tick, reported every tick.
        first = _reports(ticks[0].actors)
        for cluster, vpas in good.items():
            results = {r.key: r.outcome for report in first[cluster] for r in report.results}
            assert results == {f"{ns}/{name}": "written" for ns, name in vpas}, cluster
            assert not [e for report in first[cluster] for e in report.errors]
            for tick in ticks[1:]:
                reports = _reports(tick.actors)[cluster]
                assert sum(len(r.results) for r in reports) == len(vpas)
            status = fleet.clients[cluster].get(vpa_path(*vpas[0]))["status"]
            assert status["recommendation"]["containerRecommendations"]
        # The slow cluster: busy past the budget, then not started again; one query only.
        for number, tick in enumerate(ticks):
            assert all("slow" not in a.reports for a in tick.actors)
            busy = [e for a in tick.actors for e in a.errors if e.startswith("cluster slow:")]
            expected = "tick still running after the budget" if number == 0 else "not started"
            assert len(busy) == 1 and expected in busy[0], busy
        assert len(hung_prometheus.accepted) == 1
        # The dead API server: reported by the Coordinator every tick, owns no shard.
        for tick in ticks:
            assert [e for e in tick.errors if e.startswith("cluster dead:")], tick.errors
        status: FleetStatus = ray.get(handles.coordinator.status.remote())
        clusters_status = {c.name: c for c in status.clusters}
        assert clusters_status["dead"].shards == 0 and clusters_status["dead"].discovery_error
        assert clusters_status["slow"].busy_on
        slow = [s for s in status.shards if s.cluster == "slow"]
        assert len(slow) == 1 and slow[0].last_tick is None and slow[0].last_error
        assert all(s.last_tick is not None for s in status.shards if s.cluster in good)
        # Cluster one's passes each held the single permit of its fleet-wide limit.
        counts = ray.get(handles.limiter.counts.remote())["one"]
        passes = sum(r.namespaces for t in ticks for r in _reports(t.actors)["one"])
        assert counts["limit"] == 1 and counts["peak"] == 1
        assert counts["granted"] == passes and counts["in_use"] == 0
        # The busy ticks are counted on Ray's metrics export, tagged with the cluster.
        port = ray._private.worker.global_worker.node.metrics_export_port

        def busy_exported() -> list[str] | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
                lines = answer.read().decode().splitlines()
            found = [
                line
                for line in lines
                if line.startswith("ray_vpa_fleet_busy_total{") and 'cluster="slow"' in line
            ]
            return found or None

        eventually(busy_exported, 60, "ray_vpa_fleet_busy_total of cluster slow")
    finally:
        handles.kill(ray)
        hung_prometheus.close()
        hung_api.close()
        fleet.planes["one"].kubectl("delete", "namespace", namespace, "--wait=false")
