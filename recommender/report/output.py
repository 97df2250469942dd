"""A report as text: an aligned table, CSV, JSON or Parquet. CSV, JSON and Parquet carry every
column in base units (cores, bytes, core-hours, GiB-hours, percent); the table shows a
readable subset."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import polars as pl

from recommender.report.compute import LEVELS

FORMATS: Final = ("table", "csv", "json", "parquet")

_MI: Final = 1024.0**2
_GI: Final = 1024.0**3


def cores(value: object) -> str:
    """Cores to 3 decimals ("-" for none)."""
    if not isinstance(value, int | float) or math.isnan(value):
        return "-"
    return f"{value:.3f}"


def memory(value: object) -> str:
    """Bytes in Mi, or Gi from 10 Gi on ("-" for none)."""
    if not isinstance(value, int | float) or math.isnan(value):
        return "-"
    if abs(value) >= 10 * _GI:
        return f"{value / _GI:.1f}Gi"
    return f"{value / _MI:.0f}Mi"


def percent(value: object) -> str:
    if not isinstance(value, int | float) or math.isnan(value):
        return "-"
    return f"{value:.1f}"


def plain(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


DISPLAY: Final[Sequence[tuple[str, str, Callable[[object], str]]]] = (
    ("pods", "PODS", plain),
    ("cpu_request", "CPU_REQ", cores),
    ("cpu_target", "CPU_TARGET", cores),
    ("cpu_savings", "CPU_SAVING", cores),
    ("memory_request", "MEM_REQ", memory),
    ("memory_target", "MEM_TARGET", memory),
    ("memory_savings", "MEM_SAVING", memory),
    ("cpu_slack_pct", "CPU_SLACK%", percent),
    ("memory_slack_pct", "MEM_SLACK%", percent),
    ("oom_kills", "OOM", plain),
    ("risk", "RISK", plain),
)
"""Columns of the table and the HTML page: (column, header, formatter)."""


def display_rows(report: pl.DataFrame, level: str) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells of the readable subset."""
    key = list(LEVELS[level])
    headers = [name.upper() for name in key] + [header for _, header, _ in DISPLAY]
    rows = []
    for row in report.iter_rows(named=True):
        cells = [plain(row[name]) for name in key]
        cells += [fmt(row.get(name)) for name, _, fmt in DISPLAY]
        rows.append(cells)
    return headers, rows


def table(report: pl.DataFrame, level: str) -> str:
    headers, rows = display_rows(report, level)
    every = [headers, *rows]
    widths = [max(len(row[i]) for row in every) for i in range(len(headers))]
    text_columns = len(LEVELS[level])
    lines = []
    for row in every:
        cells = [
            cell.ljust(width)
            if index < text_columns or index == len(row) - 1
            else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def render(report: pl.DataFrame, level: str, fmt: str) -> str:
    """The report as text in `fmt` (not parquet)."""
    if fmt == "table":
        return table(report, level)
    if fmt == "csv":
        buffer = io.StringIO()
        report.write_csv(buffer)
        return buffer.getvalue()
    if fmt == "json":
        rows = [{k: _json_value(v) for k, v in row.items()} for row in report.iter_rows(named=True)]
        return json.dumps(rows, indent=2) + "\n"
    raise ValueError(f"no text form for output format {fmt!r}")


def write(report: pl.DataFrame, level: str, fmt: str, path: Path | None) -> str | None:
    """Write to `path` (parquet needs one); without a path, return the text to print."""
    if fmt == "parquet":
        if path is None:
            raise ValueError("-o parquet needs --output-file PATH (Parquet is binary)")
        report.write_parquet(path)
        return None
    text = render(report, level, fmt)
    if path is None:
        return text
    path.write_text(text, encoding="utf-8")
    return None
