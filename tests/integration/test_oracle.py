"""The parity oracle itself (tests/oracle): upstream's documented values, its replay rules,
its build script and its benchmark."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.integration.streams import MIB, steady
from tests.oracle import OracleError, build_oracle, case_from_frame, run_oracle
from tests.oracle.runner import BUILD_SCRIPT

T0 = 1795215834.0
GIB = 1024 * MIB
_SUFFIXES = {"": 1, "k": 1000, "Ki": 1024, "Mi": MIB, "Gi": GIB}


def amount(quantity: str) -> float:
    """Value of a quantity as the recommender prints them ("126m", "628694953", "125Mi")."""
    if quantity.endswith("m"):
        return int(quantity[:-1]) / 1000
    number, suffix = re.fullmatch(r"(\d+)([a-zA-Z]*)", quantity).groups()  # type: ignore[union-attr]
    return int(number) * _SUFFIXES[suffix]


def samples(
    minutes: int, *, cpu: float = 0.1, memory: float = 200 * MIB, container: str = "app"
) -> list[dict[str, Any]]:
    return [
        {"pod": "p-0", "container": container, "t": T0 + 60 * i, "cpu": cpu, "memory": memory}
        for i in range(minutes)
    ]


def recommend(
    rows: list[dict[str, Any]],
    ooms: list[dict[str, Any]] | None = None,
    containers: tuple[str, ...] = ("app",),
) -> list[dict[str, Any]]:
    case = {"name": "c", "containers": list(containers), "samples": rows, "ooms": ooms or []}
    recommendations: list[dict[str, Any]] = run_oracle([case])[0]["recommendations"]
    return recommendations


def by_name(recommendations: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {entry["containerName"]: entry for entry in recommendations}


def test_steady_stream_gives_the_documented_values() -> None:
    # 100m lands in the bucket [0.0955, 0.11027) cores; its end x 1.15 margin = 126m. The
    # 500Mi peaks' bucket ends at 546691264 bytes; x 1.15 = 628694953. Two days of history:
    # upper bound x (1 + 1/2), lower bound x (1 + 0.001/2)^-2.
    target = {"cpu": "126m", "memory": "628694953"}
    assert run_oracle([case_from_frame("steady", steady().frame)]) == [
        {
            "name": "steady",
            "recommendations": [
                {
                    "containerName": "app",
                    "target": target,
                    "lowerBound": {"cpu": "125m", "memory": "628066511"},
                    "upperBound": {"cpu": "189m", "memory": "943151615"},
                    "uncappedTarget": target,
                }
            ],
        }
    ]


def test_cases_are_answered_in_order_and_independently() -> None:
    one = {"name": "one", "containers": ["app"], "samples": samples(60), "ooms": []}
    empty = {"name": "empty", "containers": ["app"], "samples": [], "ooms": []}
    results = run_oracle([one, empty, one])
    assert [r["name"] for r in results] == ["one", "empty", "one"]
    assert results[0] == results[2]
    assert results[1]["recommendations"] == []


def test_late_and_repeated_samples_are_dropped_as_upstream_drops_them() -> None:
    rows = samples(60)
    late = {**rows[30], "cpu": 5.0, "memory": 5e9}  # older than the samples before it
    repeated = {**rows[-1], "cpu": 5.0}  # same time as the last sample: not newer
    assert recommend([*rows, late, repeated]) == recommend(rows)
    # The same values in time order count.
    later = {**rows[-1], "t": rows[-1]["t"] + 60, "cpu": 5.0, "memory": 5e9}
    assert recommend([*rows, later]) != recommend(rows)


def test_an_oom_kill_bumps_the_request_or_the_usage_peak() -> None:
    rows = samples(60, memory=200 * MIB)
    last = rows[-1]["t"]
    (big_request,) = recommend(rows, [{"pod": "p-0", "container": "app", "t": last, "memory": GIB}])
    # max(1Gi + 100Mi, 1Gi x 1.2) replaces the 200Mi peak of the interval.
    assert amount(big_request["target"]["memory"]) >= 1.2 * GIB * 1.15
    (small_request,) = recommend(
        rows, [{"pod": "p-0", "container": "app", "t": last, "memory": 50 * MIB}]
    )
    # The usage peak (200Mi) beats the 50Mi request: 200Mi + 100Mi.
    assert 300 * MIB * 1.15 <= amount(small_request["target"]["memory"]) < 330 * MIB * 1.15


def test_pod_minimums_are_split_over_the_containers() -> None:
    rows = samples(120, cpu=0.001, memory=10 * MIB)
    sidecar = samples(120, cpu=0.001, memory=10 * MIB, container="sidecar")
    entries = by_name(recommend(rows + sidecar, containers=("app", "sidecar")))
    for entry in entries.values():
        # 25m and 250Mi per pod, halved (ScaleResource truncates 12.5m to 12m).
        assert entry["target"] == {"cpu": "12m", "memory": "125Mi"}


def test_a_container_without_samples_gets_the_pod_minimums() -> None:
    # Upstream has an (empty) aggregate for every container of the pod spec.
    entries = by_name(recommend(samples(60), containers=("app", "idle")))
    assert entries["idle"]["target"] == {"cpu": "12m", "memory": "125Mi"}
    assert entries["idle"]["upperBound"] == {"cpu": "12m", "memory": "125Mi"}


def test_aggregates_silent_for_eight_days_are_garbage_collected() -> None:
    app = samples(24 * 60) + [{**row, "t": row["t"] + 10 * 86400} for row in samples(24 * 60)]
    side_before = samples(24 * 60, cpu=0.2, container="side")
    side_after = [
        {**row, "t": row["t"] + 11 * 86400 - 3600} for row in samples(60, container="side")
    ]
    rows = sorted(app + side_before + side_after, key=lambda row: row["t"])
    side = by_name(recommend(rows, containers=("app", "side")))["side"]
    # The day of history before the silence was collected: one hour of history is left, so
    # the upper bound is widened x (1 + 24) rather than x 2.
    assert amount(side["upperBound"]["cpu"]) > 10 * amount(side["target"]["cpu"])


def test_bad_input_is_rejected_with_the_reason() -> None:
    with pytest.raises(OracleError, match=r'container "db" is not in containers \[app\]'):
        recommend(samples(3, container="db"))
    with pytest.raises(OracleError, match='unknown field "sample"'):
        run_oracle([{"name": "c", "containers": ["app"], "sample": []}])


def test_build_prints_only_the_cached_binary_path() -> None:
    binary = build_oracle()
    assert re.fullmatch(r"oracle-[0-9a-f]{16}", binary.parent.name)
    again = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=True, timeout=30
    )
    assert again.stdout == f"{binary}\n"


def test_build_without_go_says_what_to_install(tmp_path: Path) -> None:
    no_go = [d for d in os.environ["PATH"].split(os.pathsep) if d and not (Path(d) / "go").exists()]
    env = {**os.environ, "PATH": os.pathsep.join(no_go), "VPA_FLEET_CACHE": str(tmp_path)}
    built = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, env=env, check=False
    )
    assert built.returncode == 1
    assert built.stdout == ""
    assert "no 'go' command" in built.stderr
    assert "Go >= 1.26" in built.stderr
    assert "GOPROXY" in built.stderr


def test_bench_times_the_ingestion_of_every_triple(tmp_path: Path) -> None:
    n = 20_000
    rng = np.random.default_rng(0)
    triples = np.column_stack(
        [T0 + 60.0 * np.arange(n), rng.gamma(2.0, 0.1, n), rng.uniform(1e8, 1e9, n)]
    ).astype("<f8")
    path = tmp_path / "samples.f64"
    path.write_bytes(triples.tobytes())
    ran = subprocess.run(
        [str(build_oracle()), "bench", "--input", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(ran.stdout)
    assert result["samples"] == n
    assert result["seconds"] > 0
    assert result["samples_per_s"] == pytest.approx(n / result["seconds"])

    path.write_bytes(triples.tobytes()[:-8])
    broken = subprocess.run(
        [str(build_oracle()), "bench", "--input", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert broken.returncode == 1
    assert "not a whole number of float64 triples" in broken.stderr
