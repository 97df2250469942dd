"""`vpa-fleet simulate`: generating traces, output formats, errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from analytics.simulate.replay import METRIC_KEYS
from recommender.cli import main

REQUIRED_KEYS = {
    "strategy",
    "cpu_slack_core_hours",
    "memory_slack_gib_hours",
    "cpu_shortage_core_hours",
    "oom_kills",
    "resizes",
    "workloads",
}


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three families, two seeds, six hours of samples."""
    path = tmp_path_factory.mktemp("simulate") / "traces.parquet"
    args = ["simulate", "--generate", str(path), "--families", "steady,leak", "--families"]
    assert main([*args, "step-up", "--seeds", "0-1", "--days", "0.25", "-q"]) == 0
    return path


def run_json(traces: Path, capsys: pytest.CaptureFixture[str], *args: str) -> list[Any]:
    assert main(["simulate", str(traces), "-o", "json", "-q", *args]) == 0
    result: list[Any] = json.loads(capsys.readouterr().out)
    return result


def test_generate_writes_the_families(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "out.parquet"
    args = ["simulate", "--generate", str(path), "--families", "jvm", "--seeds", "3,100-101"]
    assert main([*args, "--days", "0.5", "--step", "5m"]) == 0
    assert "wrote" in capsys.readouterr().err
    frame = pl.read_parquet(path)
    assert sorted(frame["workload"].unique().to_list()) == ["jvm-100", "jvm-101", "jvm-3"]
    assert frame.height == 3 * 144
    assert {"cpu_request", "memory_request", "memory_limit"} <= set(frame.columns)


def test_generate_defaults_to_every_family(tmp_path: Path) -> None:
    path = tmp_path / "all.parquet"
    assert main(["simulate", "--generate", str(path), "--days", "0.05", "-q"]) == 0
    frame = pl.read_parquet(path)
    assert frame["namespace"].n_unique() == 10
    assert frame["workload"].n_unique() == 50


def test_json_has_one_object_per_strategy(traces: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = run_json(traces, capsys, "--strategy", "vpa", "--strategy", "krr-simple,autopilot")
    assert [r["strategy"] for r in results] == ["vpa", "krr-simple", "autopilot"]
    for result in results:
        assert set(result) >= REQUIRED_KEYS
        assert list(result) == ["strategy", *METRIC_KEYS, "workloads"]
        workloads = result["workloads"]
        assert [w["workload"] for w in workloads] == [
            "leak-0",
            "leak-1",
            "steady-0",
            "steady-1",
            "step-up-0",
            "step-up-1",
        ]
        for workload in workloads:
            assert set(workload) >= REQUIRED_KEYS - {"strategy", "workloads"}
        assert result["resizes"] == sum(w["resizes"] for w in workloads)
        assert result["cpu_slack_core_hours"] == pytest.approx(
            sum(w["cpu_slack_core_hours"] for w in workloads)
        )


def test_every_known_strategy_by_default(traces: Path, capsys: pytest.CaptureFixture[str]) -> None:
    strategies = [r["strategy"] for r in run_json(traces, capsys)]
    assert {"vpa", "percentile", "krr-simple", "autopilot"} <= set(strategies)


def test_table_and_csv(traces: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", str(traces), "--strategy", "vpa,autopilot", "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["STRATEGY", "CPU_SLACK(core-h)", "MEM_SLACK(GiB-h)"]
    assert [line.split()[0] for line in lines[1:]] == ["vpa", "autopilot"]

    args = ["simulate", str(traces), "--strategy", "vpa,autopilot", "-q", "--by", "namespace"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["STRATEGY", "CLUSTER", "NAMESPACE"]
    assert [tuple(line.split()[:3:2]) for line in lines[1:]] == [
        ("vpa", "leak"),
        ("autopilot", "leak"),
        ("vpa", "steady"),
        ("autopilot", "steady"),
        ("vpa", "step-up"),
        ("autopilot", "step-up"),
    ]

    assert main([*args, "-o", "csv", "--by", "workload"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 12
    assert list(rows[0]) == ["strategy", "cluster", "namespace", "workload", *METRIC_KEYS]


def test_against_compares_totals(traces: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--against vpa`: the other strategies' totals as changes from vpa's, in the table
    and as a `versus` object in JSON, recomputed here from the totals."""
    documents = run_json(traces, capsys, "--strategy", "vpa,autopilot", "--against", "vpa")
    vpa, autopilot = documents
    versus = autopilot["versus"]
    assert versus["strategy"] == "vpa"
    assert versus["cpu_slack_change"] == pytest.approx(
        autopilot["cpu_slack_core_hours"] / vpa["cpu_slack_core_hours"] - 1, abs=1e-6
    )
    assert versus["memory_slack_change"] == pytest.approx(
        autopilot["memory_slack_gib_hours"] / vpa["memory_slack_gib_hours"] - 1, abs=1e-6
    )
    assert versus["oom_kills_difference"] == autopilot["oom_kills"] - vpa["oom_kills"]
    assert versus["resizes_ratio"] == pytest.approx(autopilot["resizes"] / vpa["resizes"])
    assert vpa["versus"]["cpu_slack_change"] == 0.0

    args = ["simulate", str(traces), "--strategy", "vpa,autopilot", "--against", "vpa", "-q"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines.index("") + 1
    assert lines[at].split() == [
        "AGAINST", "vpa", "CPU_SLACK", "MEM_SLACK", "CPU_SHORT", "OOM_KILLS", "RESIZES"
    ]  # fmt: skip
    cells = lines[at + 1].split()
    assert cells[0] == "autopilot" and len(lines) == at + 2
    assert cells[1] == f"{versus['cpu_slack_change'] * 100:+.1f}%"
    assert cells[5] == f"{versus['resizes_ratio']:.2f}x"


def test_per_strategy_parameters(traces: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain, wide = run_json(
        traces,
        capsys,
        "--strategy",
        "krr-simple",
        "--strategy",
        "autopilot",
        "--param",
        "autopilot:memory_margin_fraction=1.0",
        "--param",
        "bound_fraction=0.2",
    )
    baseline = run_json(traces, capsys, "--strategy", "autopilot", "--param", "bound_fraction=0.2")
    assert wide["memory_slack_gib_hours"] > baseline[0]["memory_slack_gib_hours"]
    assert plain["strategy"] == "krr-simple"


def test_progress_on_stderr(traces: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", str(traces), "--strategy", "vpa", "--interval", "30m"]) == 0
    err = capsys.readouterr().err
    assert "recommending every 30m" in err
    assert "simulate: vpa: 100% (12/12 intervals)" in err


def test_plots(traces: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "plots" / "here"
    assert main(["simulate", str(traces), "--strategy", "vpa", "--plot", str(directory)]) == 0
    assert f"wrote 4 pages into {directory}" in capsys.readouterr().err
    assert sorted(p.name for p in directory.iterdir()) == [
        "index.html",
        "leak.html",
        "steady.html",
        "step-up.html",
    ]
    assert (directory / "leak.html").read_text().count("<svg") == 4
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert main(["simulate", str(traces), "--strategy", "vpa", "--plot", str(blocked)]) == 2
    assert "cannot write plots into" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "magic"], "unknown strategy 'magic'; known: autopilot, default"),
        (["--param", "nonsense"], "--param expects [STRATEGY:]NAME=VALUE"),
        (["--param", "magic:x=1"], "strategy 'magic' is not replayed"),
        (["--strategy", "vpa", "--param", "bound_fraction=2"], "unknown parameter"),
        (["--strategy", "krr-simple", "--param", "bound_fraction=2"], "bound_fraction"),
        (["--interval", "soon"], "'soon' is not a duration"),
        (["--generate", "x.parquet"], "not both"),
        (
            ["--strategy", "vpa,default", "--against", "krr-simple"],
            "--against krr-simple: not among the strategies replayed (vpa, default)",
        ),
    ],
)
def test_bad_arguments_exit_2(
    traces: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["simulate", str(traces), *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_bad_generation_arguments_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "x.parquet")
    cases = [
        (["--families", "steady,nope"], "unknown family 'nope'"),
        (["--seeds", "4-1"], "bad seed range '4-1'"),
        (["--days", "0"], "--days must be positive"),
        (["--step", "0"], "must be positive"),
    ]
    for args, message in cases:
        assert main(["simulate", "--generate", out, *args]) == 2
        assert message in capsys.readouterr().err
    missing = str(tmp_path / "no" / "such" / "dir" / "x.parquet")
    assert main(["simulate", "--generate", missing, "--days", "0.01"]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert main(["simulate"]) == 2
    assert "give TRACES.parquet to replay, or --generate" in capsys.readouterr().err


def test_bad_trace_files(tmp_path: Path, traces: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", str(tmp_path / "missing.parquet")]) == 2
    assert "no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet")
    assert main(["simulate", str(junk)]) == 2
    assert "not a readable Parquet file" in capsys.readouterr().err
    no_requests = tmp_path / "no_requests.parquet"
    pl.read_parquet(traces).drop("cpu_request").write_parquet(no_requests)
    assert main(["simulate", str(no_requests)]) == 2
    assert "missing column 'cpu_request'" in capsys.readouterr().err
    bad_rows = tmp_path / "bad_rows.parquet"
    pl.read_parquet(traces).drop("memory").write_parquet(bad_rows)
    assert main(["simulate", str(bad_rows)]) == 2
    assert "missing column(s) 'memory'" in capsys.readouterr().err


def test_console_script_exits_2_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "recommender.cli", "simulate", str(tmp_path / "none.parquet")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "no such file" in result.stderr
    assert "Traceback" not in result.stderr
