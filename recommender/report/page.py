"""The report as one self-contained HTML page (inline SVG and CSS, no script, nothing fetched):
tables per cluster, namespace and workload, then for each workload's containers a CPU and a
memory chart of usage over the window (mean and maximum per interval, per pod) against the
pod's current request and the VPA's target. Charts come from `analytics.simulate.plot`."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
import polars as pl

from analytics.simulate.plot import html_document, usage_chart
from recommender.report.compute import CONTAINER_KEY, LEVELS
from recommender.report.output import display_rows

MAX_CHARTED: Final = 200
"""Containers charted at most (the first by key); the tables list all of them."""

REQUEST_COLOR: Final = "#1f77b4"
TARGET_COLOR: Final = "#d62728"
MAX_INTERVALS: Final = 240

_EXTRA_STYLE: Final = """
table { font-size: 12px; }
td.risk { color: #b00020; text-align: left; }
h3 { font-size: 14px; margin: 18px 0 4px; }
section.workload { border-top: 1px solid #ccc; margin-top: 24px; }
"""


def interval_s(window_s: float, step_s: float) -> int:
    """Chart interval: a whole number of steps, at most `MAX_INTERVALS` per window."""
    steps = max(1, int(np.ceil(window_s / step_s / MAX_INTERVALS)))
    return int(steps * step_s)


def usage_series(rows: pl.DataFrame, start: dt.datetime, interval: int) -> pl.DataFrame:
    """Per (VPA, container, interval index): mean and maximum of CPU and memory per pod,
    from `compute.usage_rows`."""
    start_ms = int(start.timestamp() * 1000)
    index = ((pl.col("timestamp").dt.epoch("ms") - start_ms) // (interval * 1000)).alias("interval")
    return rows.group_by([*CONTAINER_KEY, index]).agg(
        pl.col("cpu").mean().alias("cpu_mean"),
        pl.col("cpu").max().alias("cpu_max"),
        pl.col("memory").mean().alias("memory_mean"),
        pl.col("memory").max().alias("memory_max"),
    )


def _table(frame: pl.DataFrame, level: str) -> str:
    headers, rows = display_rows(frame, level)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for cells in rows:
        tds = [f"<td>{html.escape(c)}</td>" for c in cells[:-1]]
        tds.append(f'<td class="risk">{html.escape(cells[-1])}</td>')
        body.append(f"<tr>{''.join(tds)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _per_pod(total: object, pods: object) -> float | None:
    if not isinstance(total, int | float) or not isinstance(pods, int) or pods <= 0:
        return None
    return float(total) / pods


def _charts(
    row: Mapping[str, object],
    series: pl.DataFrame,
    edges_ns: np.ndarray,
) -> str:
    n = edges_ns.shape[0] - 1
    parts = []
    for resource, unit, title in (("cpu", "cores", "CPU (cores)"), ("memory", "bytes", "memory")):
        mean = np.full(n, np.nan)
        peak = np.full(n, np.nan)
        if series.height:
            index = series["interval"].to_numpy()
            inside = (index >= 0) & (index < n)
            mean[index[inside]] = series[f"{resource}_mean"].to_numpy()[inside]
            peak[index[inside]] = series[f"{resource}_max"].to_numpy()[inside]
        lines = []
        for name, color, total in (
            ("request", REQUEST_COLOR, row.get(f"{resource}_request")),
            ("target", TARGET_COLOR, row.get(f"{resource}_target")),
        ):
            value = _per_pod(total, row.get("pods"))
            if value is not None:
                lines.append((name, color, np.full(n, value)))
        parts.append(usage_chart(title, unit, edges_ns, mean=mean, peak=peak, requests=lines))
    return "".join(parts)


def _legend() -> str:
    return (
        '<p class="legend">'
        '<span><i class="swatch" style="background:#d9d9d9;height:10px"></i>usage per pod, '
        "mean per interval</span>"
        '<span><i class="swatch" style="background:#888"></i>usage per pod, max per interval'
        "</span>"
        f'<span><i class="swatch" style="background:{REQUEST_COLOR}"></i>current request per '
        "pod</span>"
        f'<span><i class="swatch" style="background:{TARGET_COLOR}"></i>VPA target per pod'
        "</span></p>"
    )


def render_page(
    containers: pl.DataFrame,
    rollups: Mapping[str, pl.DataFrame],
    series: pl.DataFrame,
    *,
    start: dt.datetime,
    end: dt.datetime,
    interval: int,
    notes: Sequence[str] = (),
) -> str:
    """The whole page. `rollups` holds the cluster, namespace and workload frames."""
    start_ns = int(start.timestamp()) * 10**9
    n = max(1, int(np.ceil((end - start).total_seconds() / interval)))
    edges_ns = start_ns + np.arange(n + 1, dtype=np.int64) * interval * 10**9
    window = f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
    body = [
        f'<p class="note">usage from {html.escape(window)}; charts per {interval // 60} min. '
        "Savings: current requests minus VPA target (summed over pods); slack: requested "
        "minus used over the window. docs/report.md explains every column.</p>"
    ]
    body += [f'<p class="note">{html.escape(note)}</p>' for note in notes]
    for level, title in (("cluster", "clusters"), ("namespace", "namespaces")):
        body.append(f"<h2>{title}</h2>{_table(rollups[level], level)}")
    body.append(f"<h2>workloads (VPAs)</h2>{_table(rollups['workload'], 'workload')}")
    body.append(_legend())
    if containers.height > MAX_CHARTED:
        body.append(
            f'<p class="note">charts of the first {MAX_CHARTED} of {containers.height} '
            "containers</p>"
        )
    by_key = series.partition_by(list(CONTAINER_KEY), as_dict=True) if series.height else {}
    empty = series.clear()
    charted = containers.head(MAX_CHARTED)
    workload_key = list(LEVELS["workload"])
    for (cluster, namespace, workload), group in charted.group_by(
        workload_key, maintain_order=True
    ):
        first = group.row(0, named=True)
        target = f"{first['target_kind'] or '?'} {first['target_name'] or '?'}"
        body.append(
            f'<section class="workload"><h2>{html.escape(f"{cluster}/{namespace}/{workload}")}'
            f" ({html.escape(target)})</h2>{_table(group, 'container')}"
        )
        for row in group.iter_rows(named=True):
            key = tuple(row[name] for name in CONTAINER_KEY)
            body.append(f"<h3>container {html.escape(str(row['container']))}</h3>")
            body.append(_charts(row, by_key.get(key, empty), edges_ns))
        body.append("</section>")
    clusters = ", ".join(rollups["cluster"]["cluster"].to_list()) or "no cluster"
    page = html_document(f"vpa-fleet report: {clusters}", "".join(body))
    return page.replace("</style>", f"{_EXTRA_STYLE}</style>", 1)
