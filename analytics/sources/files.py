"""Recorded usage traces on disk: Parquet files with the schema of `analytics.usage`."""

from __future__ import annotations

from pathlib import Path

import polars as pl

__all__ = ["TraceFileError", "read_trace"]


class TraceFileError(ValueError):
    """A trace file that cannot be read; the message names the file."""


def read_trace(path: str | Path) -> pl.DataFrame:
    """Read a Parquet trace (one row per container sample); `prepare_samples` validates it."""
    path = Path(path)
    if not path.is_file():
        raise TraceFileError(f"{path}: no such file")
    try:
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise TraceFileError(f"{path}: not a readable Parquet file ({first_line})") from None
