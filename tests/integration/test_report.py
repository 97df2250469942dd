"""`vpa-fleet report` on the testbed: VPA statuses written by a real `vpa-fleet run --once`,
pods on a real API server, usage in a real Prometheus. The CSV's numbers are recomputed here
independently (pods listed by label, PromQL sent by hand, targets read from the VPAs), and the
HTML page is rendered by headless Chromium and its charts found in the screenshot's pixels."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import uuid
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import requests
import yaml

from analytics.quantity import parse_cpu_cores, parse_memory_bytes
from recommender.kube.rest import KubeClient, load_api_client
from recommender.kube.status_writer import vpa_path
from testbed.cluster import ControlPlane
from testbed.demo import DEMO, Demo, start_demo
from testbed.process import free_port

VPA_FLEET = Path(sys.executable).with_name("vpa-fleet")
STEP_S = 300
WINDOW_S = 3 * 86_400
GIB = 1024.0**3


@dataclass
class Setup:
    kube: KubeClient
    kubeconfig: Path
    demo: Demo
    namespaces: list[str]
    end: dt.datetime

    def argv(self, *extra: str) -> list[str]:
        return [
            str(VPA_FLEET),
            "report",
            "--kubeconfig",
            str(self.kubeconfig),
            "--prometheus-url",
            self.demo.prometheus.url,
            "--cluster",
            "testbed",
            *[arg for ns in self.namespaces for arg in ("-n", ns)],
            "--window",
            f"{WINDOW_S // 86_400}d",
            "--step",
            f"{STEP_S // 60}m",
            "--end",
            self.end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            *extra,
        ]

    def ours(self) -> list[tuple[str, str]]:
        return sorted(
            (w.namespace, w.name)
            for w in self.demo.workloads
            if w.vpa is not None and w.vpa.recommender == "vpa-fleet"
        )


@pytest.fixture(scope="module")
def setup(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    kube = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    history_end = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    demo = start_demo(
        tmp_path_factory.mktemp("report"),
        kube,
        DEMO,
        days=4,
        namespace_prefix=f"p{uuid.uuid4().hex[:4]}-",
        end=history_end,
    )
    try:
        namespaces = sorted({w.namespace for w in demo.workloads})
        ray_temp = Path(tempfile.mkdtemp(prefix="vfrep-", dir="/tmp"))  # short: Ray's sockets
        run = subprocess.run(
            [
                str(VPA_FLEET),
                "run",
                "--once",
                "--kubeconfig",
                str(control_plane.kubeconfig),
                "--prometheus-url",
                demo.prometheus.url,
                "--cluster",
                "testbed",
                *[arg for ns in namespaces for arg in ("-n", ns)],
                "--history-days",
                "3",
                "--set",
                "metrics.enabled=false",
                "--set",
                f"ray.dashboard_port={free_port()}",
                "--set",
                "ray.num_cpus=1",
                "--set",
                f"ray.temp_dir={ray_temp}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
        end_s = int(history_end.timestamp()) // STEP_S * STEP_S
        end = dt.datetime.fromtimestamp(end_s, dt.UTC)
        yield Setup(kube, control_plane.kubeconfig, demo, namespaces, end)
    finally:
        demo.stop()


def _report(setup: Setup, *extra: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        setup.argv(*extra), capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


# -- the numbers, recomputed without the report's code ---------------------------------------


def _range(url: str, query: str, start_s: int, end_s: int) -> dict[tuple[str, str], list[float]]:
    """Values by (pod, container) of a range query at STEP_S over [start_s, end_s)."""
    answer = requests.get(
        f"{url}/api/v1/query_range",
        params={"query": query, "start": start_s, "end": end_s - STEP_S, "step": STEP_S},
        timeout=60,
    )
    answer.raise_for_status()
    values: dict[tuple[str, str], list[float]] = {}
    for series in answer.json()["data"]["result"]:
        key = (series["metric"]["pod"], series["metric"]["container"])
        values[key] = [float(v) for _, v in series["values"]]
    return values


def _expected(setup: Setup) -> dict[tuple[str, str, str], dict[str, float]]:
    end_s = int(setup.end.timestamp())
    start_s = end_s - WINDOW_S
    hours = STEP_S / 3600
    kills = setup.demo.history.oom_kills()
    expected: dict[tuple[str, str, str], dict[str, float]] = {}
    for namespace in setup.namespaces:
        where = f'namespace="{namespace}",container!="",container!="POD"'
        cpu = _range(
            setup.demo.prometheus.url,
            f"rate(container_cpu_usage_seconds_total{{{where}}}[5m])",
            start_s,
            end_s,
        )
        memory = _range(
            setup.demo.prometheus.url,
            f"container_memory_working_set_bytes{{{where}}}",
            start_s,
            end_s,
        )
        pods, _ = setup.kube.list_all(f"/api/v1/namespaces/{namespace}/pods")
        for ns, name in setup.ours():
            if ns != namespace:
                continue
            vpa = setup.kube.get(vpa_path(ns, name))
            targets = {
                entry["containerName"]: entry["target"]
                for entry in vpa["status"]["recommendation"]["containerRecommendations"]
            }
            mine = [p for p in pods if p["metadata"]["labels"].get("app") == name]
            per_container: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
            usage: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
            for pod in mine:
                pod_name = pod["metadata"]["name"]
                for container in pod["spec"]["containers"]:
                    c = container["name"]
                    cpu_request = parse_cpu_cores(container["resources"]["requests"]["cpu"])
                    memory_request = parse_memory_bytes(
                        container["resources"]["requests"]["memory"]
                    )
                    row = per_container[c]
                    row["pods"] += 1
                    row["cpu_request"] += cpu_request
                    row["memory_request"] += memory_request
                    cpu_values = cpu.get((pod_name, c), [])
                    memory_values = memory.get((pod_name, c), [])
                    usage[c]["cpu"] += cpu_values
                    usage[c]["memory"] += memory_values
                    row["cpu_slack_core_hours"] += sum(cpu_request - v for v in cpu_values) * hours
                    row["memory_slack_gib_hours"] += (
                        sum(memory_request - v for v in memory_values) * hours / GIB
                    )
                    row["oom_kills"] += kills.filter(
                        (pl.col("pod") == pod_name)
                        & (pl.col("container") == c)
                        & (pl.col("timestamp_s") > start_s)
                        & (pl.col("timestamp_s") < end_s)
                    ).height
            for c, row in per_container.items():
                row["cpu_target"] = parse_cpu_cores(targets[c]["cpu"]) * row["pods"]
                row["memory_target"] = parse_memory_bytes(targets[c]["memory"]) * row["pods"]
                row["cpu_savings"] = row["cpu_request"] - row["cpu_target"]
                row["memory_savings"] = row["memory_request"] - row["memory_target"]
                row["samples"] = len(usage[c]["cpu"])
                row["cpu_usage_mean"] = float(np.mean(usage[c]["cpu"]))
                row["cpu_usage_max"] = max(usage[c]["cpu"])
                row["memory_usage_max"] = max(usage[c]["memory"])
                expected[(namespace, name, c)] = dict(row)
    return expected


def test_the_csv_equals_what_the_vpas_and_prometheus_say(setup: Setup) -> None:
    done = _report(setup, "--by", "container", "-o", "csv")
    report = pl.read_csv(io.StringIO(done.stdout))
    expected = _expected(setup)
    got = {
        (row["namespace"], row["workload"], row["container"]): row
        for row in report.iter_rows(named=True)
    }
    assert set(got) == set(expected)
    assert len(expected) >= 6
    for key, values in expected.items():
        row = got[key]
        assert row["cluster"] == "testbed"
        for column, value in values.items():
            assert row[column] == pytest.approx(value, rel=1e-9, abs=1e-9), (key, column)
    # The demo's OOM kills fall into the window (else this test checks no kill at all).
    assert sum(v["oom_kills"] for v in expected.values()) >= 1
    # Progress on stderr: one line per namespace, with its queries.
    for number, namespace in enumerate(setup.namespaces, 1):
        assert f"report: testbed: [{number}/{len(setup.namespaces)}] {namespace}: " in done.stderr


def test_rollups_and_parquet_agree_with_the_containers(setup: Setup, tmp_path: Path) -> None:
    containers = pl.read_csv(io.StringIO(_report(setup, "--by", "container", "-o", "csv").stdout))
    path = tmp_path / "namespaces.parquet"
    _report(setup, "--by", "namespace", "-o", "parquet", "--output-file", str(path))
    namespaces = pl.read_parquet(path)
    assert sorted(namespaces["namespace"].to_list()) == setup.namespaces
    for row in namespaces.iter_rows(named=True):
        mine = containers.filter(pl.col("namespace") == row["namespace"])
        assert row["containers"] == mine.height
        for column in ("cpu_request", "memory_savings", "cpu_slack_core_hours", "oom_kills"):
            assert row[column] == pytest.approx(mine[column].sum(), rel=1e-9), column
        # A workload's containers share its pods.
        assert row["pods"] == mine.group_by("workload").agg(pl.col("pods").max())["pods"].sum()
        assert row["containers_at_risk"] == mine["at_risk"].sum()
    table = _report(setup, "--by", "workload").stdout
    assert table.splitlines()[0].split()[:4] == ["CLUSTER", "NAMESPACE", "WORKLOAD", "PODS"]
    for namespace, name in setup.ours():
        assert any(line.split()[1:3] == [namespace, name] for line in table.splitlines())


# -- the page in Chromium --------------------------------------------------------------------


def _png_rgb(data: bytes) -> np.ndarray:
    """An 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes) as an (h, w, 3) array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, chunks, header = 8, [], b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        position += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
    channels = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    image = np.zeros((height, stride), dtype=np.int64)
    previous = np.zeros(stride, dtype=np.int64)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=y * (stride + 1) + 1)
        line = line.astype(np.int64)
        if kind == 0:
            out = line
        elif kind == 2:
            out = (line + previous) % 256
        else:  # Sub, Average, Paeth depend on the pixel to the left: byte by byte
            out = np.zeros(stride, dtype=np.int64)
            for x in range(stride):
                left = out[x - channels] if x >= channels else 0
                up = previous[x]
                up_left = previous[x - channels] if x >= channels else 0
                if kind == 1:
                    predictor = left
                elif kind == 3:
                    predictor = (left + up) // 2
                else:
                    p = left + up - up_left
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                    predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else up_left)
                out[x] = (line[x] + predictor) % 256
        image[y] = out
        previous = out
    return image.reshape(height, width, channels)[:, :, :3]


def _near(image: np.ndarray, color: str, tolerance: int) -> int:
    rgb = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(image - rgb).max(axis=2) <= tolerance).sum())


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(
            "chromium is not installed: `make testbed` installs it (testbed/install-chromium.sh)"
        )
    return found


def _screenshot(page: Path, out: Path, profile: Path, height: int) -> np.ndarray:
    done = subprocess.run(
        [
            _chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size=1000,{height}",
            f"--screenshot={out}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0 and out.exists(), done.stderr[-3000:]
    return _png_rgb(out.read_bytes())


def test_the_html_page_renders_its_charts_in_chromium(setup: Setup, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    _report(setup, "--html", str(page), "-q")
    text = page.read_text()
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org", "")
    containers = sum(
        len(w.containers)
        for w in setup.demo.workloads
        if w.vpa is not None and w.vpa.recommender == "vpa-fleet"
    )
    assert text.count("<svg") == 2 * containers  # CPU and memory of each container of ours

    shot = _screenshot(page, tmp_path / "page.png", tmp_path / "profile", 6000)
    # Charts drawn: the usage area (#d9d9d9), the request (#1f77b4) and target (#d62728) lines
    # cover many pixels; the legend's swatches alone are a few dozen.
    area = _near(shot, "#d9d9d9", 2)
    request = _near(shot, "#1f77b4", 40)
    target = _near(shot, "#d62728", 40)
    assert area > 20_000, area
    assert request > 3_000, request
    assert target > 3_000, target

    # The same page with its charts removed: those pixels are gone, so they were the charts.
    blank = tmp_path / "blank.html"
    blank.write_text(re.sub(r"<svg.*?</svg>", "", text, flags=re.DOTALL))
    control = _screenshot(blank, tmp_path / "blank.png", tmp_path / "profile2", 6000)
    assert _near(control, "#d9d9d9", 2) < area / 10
    assert _near(control, "#1f77b4", 40) < 200
    assert not math.isnan(float(shot.mean()))


# -- a fleet file, and a Prometheus that does not answer -------------------------------------


def test_a_fleet_file_reports_its_clusters_namespaces(setup: Setup, tmp_path: Path) -> None:
    shop = next(ns for ns in setup.namespaces if ns.endswith("shop"))
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        "clusters:\n"
        f"  - name: eu-1\n    kubeconfig: {setup.kubeconfig}\n"
        f"    prometheus: {{connection: {{url: {setup.demo.prometheus.url}}}}}\n"
        f"    include: [{shop}]\n"
    )
    argv = [str(VPA_FLEET), "report", "--fleet", str(fleet), "--by", "namespace", "-o", "csv"]
    argv += ["--window", "1d", "--end", setup.end.strftime("%Y-%m-%dT%H:%M:%SZ")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = pl.read_csv(io.StringIO(done.stdout))
    assert rows.select("cluster", "namespace").rows() == [("eu-1", shop)]
    assert rows["containers"].to_list() == [
        sum(
            len(w.containers)
            for w in setup.demo.workloads
            if w.namespace == shop and w.vpa and w.vpa.recommender == "vpa-fleet"
        )
    ]


def test_a_prometheus_that_does_not_answer_fails_its_namespaces_by_name(setup: Setup) -> None:
    argv = setup.argv("--by", "namespace", "-o", "csv")
    argv[argv.index(setup.demo.prometheus.url)] = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1, done.stderr[-3000:]
    for namespace in setup.namespaces:
        assert (
            f"vpa-fleet report: testbed/{namespace}: Prometheus at http://127.0.0.1:" in done.stderr
        )
    assert "failed (unreachable)" in done.stderr
    assert done.stdout.splitlines()[0].startswith("cluster,")  # the report is still written


def test_bad_flags_are_refused_before_anything_is_read(setup: Setup, tmp_path: Path) -> None:
    for extra, message in (
        (("--step", "4d"), "--step (4d) is longer than --window (3d)"),
        (("-o", "parquet"), "-o parquet needs --output-file PATH"),
        (("--end", "yesterday"), "--end: not an RFC 3339 time (got 'yesterday')"),
    ):
        done = subprocess.run(
            setup.argv(*extra), capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 2, done.stderr
        assert message in done.stderr
    done = subprocess.run(
        [str(VPA_FLEET), "report", "--fleet", str(tmp_path / "f.yaml"), "--context", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--fleet gives each cluster's connection; drop --context" in done.stderr


def test_context_picks_the_cluster_as_kubectl_does(setup: Setup, tmp_path: Path) -> None:
    """A kubeconfig whose current context points nowhere: --context names the real one."""
    config = yaml.safe_load(setup.kubeconfig.read_text())
    real = config["current-context"]
    config["clusters"].append({"name": "nowhere", "cluster": {"server": "https://127.0.0.1:9"}})
    user = config["contexts"][0]["context"]["user"]
    config["contexts"].append({"name": "other", "context": {"cluster": "nowhere", "user": user}})
    config["current-context"] = "other"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    argv = setup.argv("--by", "cluster", "-o", "json", "-q")
    argv[argv.index(str(setup.kubeconfig))] = str(kubeconfig)
    done = subprocess.run(
        [*argv, "--context", real], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)[0]["containers"] >= 6
    failed = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert failed.returncode == 1
    assert "testbed: cannot list VPAs:" in failed.stderr
