"""Reading trace files."""

from __future__ import annotations

from pathlib import Path

import pytest

from analytics.sources.files import TraceFileError, read_trace

from .traces import steady_trace


def test_reads_parquet(tmp_path: Path) -> None:
    path = tmp_path / "trace.parquet"
    frame = steady_trace(minutes=5)
    frame.write_parquet(path)
    assert read_trace(path).equals(frame)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TraceFileError, match=r"nope\.parquet: no such file"):
        read_trace(tmp_path / "nope.parquet")


def test_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "trace.parquet"
    path.write_text("timestamp,cpu\n")
    with pytest.raises(TraceFileError, match=r"trace\.parquet: not a readable Parquet file"):
        read_trace(path)
