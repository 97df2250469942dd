"""`vpa-fleet recommend`: output formats and errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from recommender.cli import main
from tests.unit.analytics.traces import steady_trace


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    path = tmp_path / "trace.parquet"
    frame = pl.concat(
        [
            steady_trace(minutes=2 * 24 * 60),
            steady_trace(workload="api", containers=("app", "log"), minutes=120),
        ]
    )
    frame.write_parquet(path)
    return path


def test_json_output(trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", str(trace), "-o", "json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [(e["workload"], e["containerName"]) for e in entries] == [
        ("api", "app"),
        ("api", "log"),
        ("web", "app"),
    ]
    web = entries[2]
    assert set(web) == {
        "cluster",
        "namespace",
        "workload",
        "containerName",
        "target",
        "lowerBound",
        "upperBound",
        "uncappedTarget",
    }
    assert web["target"] == {"cpu": "126m", "memory": "628694953"}
    assert web["upperBound"] == {"cpu": "189m", "memory": "943151615"}


def test_table_output(trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", str(trace), "--strategy", "vpa"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "CLUSTER",
        "NAMESPACE",
        "WORKLOAD",
        "CONTAINER",
        "TARGET",
        "LOWER",
        "UPPER",
    ]
    assert lines[3].split()[:5] == ["prod", "shop", "web", "app", "126m/628694953"]


def test_params_change_the_result(trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["recommend", str(trace), "-o", "json", "--strategy", "percentile"]
    assert main([*args, "--param", "safety_margin_fraction=0.5"]) == 0
    web = json.loads(capsys.readouterr().out)[2]
    assert web["target"]["cpu"] == "165m"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--param", "target_cpu_percentile=7"], "target_cpu_percentile"),
        (["--param", "nonsense"], "--param expects NAME=VALUE"),
        (["--strategy", "magic"], "unknown strategy 'magic'"),
    ],
)
def test_bad_arguments_exit_2(
    trace: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["recommend", str(trace), *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_bad_file_names_the_column_and_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.parquet"
    frame = steady_trace(minutes=3).with_columns(pl.Series("memory_request", [1.0, 2.0, -1.0]))
    frame.write_parquet(path)
    assert main(["recommend", str(path)]) == 2
    assert "column 'memory_request', row 2" in capsys.readouterr().err
    steady_trace(minutes=3).drop("cpu").write_parquet(path)
    assert main(["recommend", str(path)]) == 2
    assert "missing column(s) 'cpu'" in capsys.readouterr().err
    path.write_bytes(b"not parquet at all")
    assert main(["recommend", str(path)]) == 2
    assert "not a readable Parquet file" in capsys.readouterr().err


def test_skipped_samples_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gaps.parquet"
    frame = steady_trace(minutes=60)
    frame.with_columns(pl.lit(float("nan")).alias("cpu")).head(3).vstack(frame).write_parquet(path)
    assert main(["recommend", str(path)]) == 0
    assert "skipped: cpu_nan=3" in capsys.readouterr().err


def test_console_script_exits_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    steady_trace(minutes=3).drop("memory").write_parquet(path)
    result = subprocess.run(
        [sys.executable, "-m", "recommender.cli", "recommend", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "missing column(s) 'memory'" in result.stderr
    assert "Traceback" not in result.stderr
