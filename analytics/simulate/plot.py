"""Self-contained HTML pages (inline SVG, no scripts, nothing fetched) of simulation results.

One page per namespace (for the generated traces: one per family): for each of its
containers a CPU and a memory chart of usage over time (mean and maximum per interval) and
each strategy's request, with the container's metrics per strategy below. An index page
links them with the totals. Pages are returned as strings; writing them is the caller's job.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from analytics.arrays import FloatArray, Int64Array
from analytics.simulate.replay import Metrics, PreparedTrace, SimulationResult

__all__ = [
    "MAX_CONTAINERS_PER_PAGE",
    "UsageSummary",
    "html_document",
    "page_name",
    "render_pages",
    "summarize",
    "usage_chart",
]

MAX_CONTAINERS_PER_PAGE: Final = 40
"""Charts per page are capped: a namespace with more containers shows the first ones."""

_COLORS: Final = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2")
_WIDTH: Final = 860
_HEIGHT: Final = 200
_LEFT: Final = 64
_RIGHT: Final = 12
_TOP: Final = 10
_BOTTOM: Final = 24
_GIB: Final = 1024.0**3
_MIB: Final = 1024.0**2

_STYLE: Final = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.legend span { display: inline-block; margin-right: 14px; font-size: 13px; }
.swatch { display: inline-block; width: 14px; height: 3px; vertical-align: middle;
          margin-right: 4px; }
svg { display: block; margin: 4px 0; }
svg text { font-size: 11px; fill: #555; }
.note { color: #666; font-size: 13px; }
"""


@dataclass(frozen=True)
class UsageSummary:
    """Usage per interval and container: shape (intervals, containers); NaN without samples.

    CPU in cores, memory in bytes (demand, as recorded in the trace).
    """

    cpu_mean: FloatArray
    cpu_max: FloatArray
    memory_mean: FloatArray
    memory_max: FloatArray


def summarize(trace: PreparedTrace, start_ns: Int64Array, interval_ns: int) -> UsageSummary:
    """Mean and maximum usage of each container in each interval starting at start_ns."""
    samples = trace.samples
    n_intervals = start_ns.shape[0]
    n = trace.n_containers
    interval = np.clip((samples.t_ns - int(start_ns[0])) // interval_ns, 0, max(n_intervals - 1, 0))
    cell = interval * n + samples.container

    def mean_and_max(values: FloatArray, valid: np.ndarray) -> tuple[FloatArray, FloatArray]:
        size = n_intervals * n
        cells = cell[valid]
        chosen = values[valid]
        total = np.bincount(cells, weights=chosen, minlength=size)
        count = np.bincount(cells, minlength=size)
        peak = np.full(size, -np.inf)
        np.maximum.at(peak, cells, chosen)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, total / count, np.nan)
        high = np.where(count > 0, peak, np.nan)
        return mean.reshape(n_intervals, n), high.reshape(n_intervals, n)

    cpu = samples.cpu_millicores.astype(np.float64) / 1000.0
    memory = samples.memory_bytes.astype(np.float64)
    cpu_mean, cpu_max = mean_and_max(cpu, samples.cpu_valid)
    memory_mean, memory_max = mean_and_max(memory, samples.memory_valid)
    return UsageSummary(cpu_mean, cpu_max, memory_mean, memory_max)


def page_name(cluster: str, namespace: str, clusters: int) -> str:
    """File name of a namespace's page: `<namespace>.html` (with the cluster if several)."""
    stem = namespace if clusters <= 1 else f"{cluster}.{namespace}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", stem) + ".html"


# -- charts ----------------------------------------------------------------------------------------


def _nice_step(span: float) -> float:
    """A round tick step giving about four ticks over span."""
    raw = span / 4
    magnitude = 10 ** np.floor(np.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return float(factor * magnitude)
    return float(10 * magnitude)


def _tick_unit(top: float, unit: str) -> tuple[float, str]:
    """(scale, suffix) that tick labels are written in: m or cores, Mi or Gi."""
    if unit == "cores":
        return (1.0, "") if top >= 2 else (0.001, "m")
    return (_GIB, "Gi") if top >= 2 * _GIB else (_MIB, "Mi")


@dataclass(frozen=True)
class _Axes:
    t0_ns: int
    t1_ns: int
    top: float

    def x(self, t_ns: FloatArray) -> FloatArray:
        span = max(self.t1_ns - self.t0_ns, 1)
        result: FloatArray = _LEFT + (t_ns - self.t0_ns) / span * (_WIDTH - _LEFT - _RIGHT)
        return result

    def y(self, value: FloatArray) -> FloatArray:
        height = _HEIGHT - _TOP - _BOTTOM
        result: FloatArray = _TOP + height * (1 - value / self.top)
        return result


def _line(x: FloatArray, y: FloatArray) -> str:
    """Polyline segments over the finite points (gaps where there are none)."""
    parts = []
    current: list[str] = []
    for xi, yi in zip(x.tolist(), y.tolist(), strict=True):
        if np.isfinite(yi):
            current.append(f"{xi:.1f},{yi:.1f}")
        elif current:
            parts.append(current)
            current = []
    if current:
        parts.append(current)
    return " ".join("M" + " L".join(points) for points in parts)


def _steps(x: FloatArray, y: FloatArray) -> str:
    """A step line: value y[k] from x[k] to x[k + 1] (x has one more entry than y)."""
    commands = [f"M{x[0]:.1f},{y[0]:.1f}"]
    for k in range(y.shape[0]):
        if k > 0:
            commands.append(f"V{y[k]:.1f}")
        commands.append(f"H{x[k + 1]:.1f}")
    return " ".join(commands)


def _time_ticks(axes: _Axes) -> list[tuple[float, str]]:
    day_ns = 86_400 * 10**9
    days = (axes.t1_ns - axes.t0_ns) / day_ns
    hour_ns = 3600 * 10**9
    if days <= 0.5:
        step_ns, fmt = hour_ns, "%H:%M"
    elif days < 2:
        step_ns, fmt = 6 * hour_ns, "%a %H:%M"
    else:
        step_ns = day_ns * max(1, int(np.ceil(days / 14)))
        fmt = "%a %d"
    first = -(-axes.t0_ns // step_ns) * step_ns
    ticks = []
    for t_ns in range(first, axes.t1_ns + 1, step_ns):
        when = dt.datetime.fromtimestamp(t_ns / 1e9, tz=dt.UTC)
        x = float(axes.x(np.array([float(t_ns)]))[0])
        if x <= _WIDTH - _RIGHT - 24:  # a label at the right edge would be cut
            ticks.append((x, when.strftime(fmt)))
    return ticks


def usage_chart(
    title: str,
    unit: str,
    edges_ns: Int64Array,
    *,
    mean: FloatArray,
    peak: FloatArray,
    requests: Sequence[tuple[str, str, FloatArray]],
) -> str:
    """One SVG chart: usage mean (area) and max (line), requests per strategy (steps).

    `edges_ns` has one more entry than `mean`, `peak` and each request series (NaN: no
    sample in that interval). Also used by `vpa-fleet report`'s page.
    """
    highest = [float(np.nanmax(peak)) if np.isfinite(peak).any() else 0.0]
    highest += [float(values.max()) for _, _, values in requests if values.size]
    top = max(highest) * 1.08 or 1.0
    axes = _Axes(int(edges_ns[0]), int(edges_ns[-1]), top)
    starts = edges_ns[:-1].astype(np.float64)
    middles = starts + (edges_ns[1:] - edges_ns[:-1]) / 2
    x_mid = axes.x(middles)
    x_edges = axes.x(edges_ns.astype(np.float64))
    bottom = _HEIGHT - _BOTTOM
    parts = [
        f'<svg width="{_WIDTH}" height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{html.escape(title)}">',
        f'<rect x="{_LEFT}" y="{_TOP}" width="{_WIDTH - _LEFT - _RIGHT}" '
        f'height="{bottom - _TOP}" fill="#fafafa" stroke="#ccc"/>',
    ]
    scale, suffix = _tick_unit(top, unit)
    step = _nice_step(top / scale)
    tick = 0.0
    while tick * scale <= top:
        y = float(axes.y(np.array([tick * scale]))[0])
        parts.append(
            f'<line x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#eee"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:g}{suffix}</text>'
        )
        tick += step
    for x, label in _time_ticks(axes):
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP}" y2="{bottom}" stroke="#eee"/>'
            f'<text x="{x:.1f}" y="{_HEIGHT - 8}" text-anchor="middle">{label}</text>'
        )
    finite = np.isfinite(mean)
    if finite.any():
        y_mean = axes.y(np.where(finite, mean, 0.0))
        area = (
            f"M{x_mid[0]:.1f},{bottom} "
            + " ".join(f"L{x:.1f},{y:.1f}" for x, y in zip(x_mid, y_mean, strict=True))
            + f" L{x_mid[-1]:.1f},{bottom} Z"
        )
        parts.append(f'<path d="{area}" fill="#d9d9d9" stroke="none"/>')
        parts.append(
            f'<path d="{_line(x_mid, axes.y(peak))}" fill="none" stroke="#888" stroke-width="1"/>'
        )
    for _, color, values in requests:
        parts.append(
            f'<path d="{_steps(x_edges, axes.y(values))}" fill="none" stroke="{color}" '
            'stroke-width="1.6"/>'
        )
    parts.append(f'<text x="{_LEFT + 6}" y="{_TOP + 14}">{html.escape(title)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# -- pages -----------------------------------------------------------------------------------------


def _metrics_table(rows: Sequence[tuple[str, Metrics]], first: str) -> str:
    header = (
        f"<tr><th>{html.escape(first)}</th><th>CPU slack (core-h)</th>"
        "<th>memory slack (GiB-h)</th><th>CPU shortage (core-h)</th><th>OOM kills</th>"
        "<th>resizes</th><th>CPU slack %</th><th>memory slack %</th></tr>"
    )
    body = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{m.cpu_slack_core_hours:.1f}</td>"
        f"<td>{m.memory_slack_gib_hours:.1f}</td><td>{m.cpu_shortage_core_hours:.1f}</td>"
        f"<td>{m.oom_kills}</td><td>{m.resizes}</td>"
        f"<td>{m.cpu_relative_slack * 100:.1f}</td><td>{m.memory_relative_slack * 100:.1f}</td>"
        "</tr>"
        for name, m in rows
    )
    return f"<table>{header}{body}</table>"


def _legend(strategies: Sequence[tuple[str, str]]) -> str:
    items = [
        '<span><i class="swatch" style="background:#d9d9d9;height:10px"></i>usage, mean per '
        "interval</span>",
        '<span><i class="swatch" style="background:#888"></i>usage, max per interval</span>',
    ]
    items += [
        f'<span><i class="swatch" style="background:{color}"></i>{html.escape(name)} request</span>'
        for name, color in strategies
    ]
    return f'<p class="legend">{"".join(items)}</p>'


def html_document(title: str, body: str) -> str:
    """A whole self-contained page: the charts' style inline, nothing fetched."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def render_pages(
    trace: PreparedTrace, results: Sequence[SimulationResult], source: str = ""
) -> dict[str, str]:
    """HTML pages by file name: one per (cluster, namespace), and `index.html`."""
    if not results:
        return {}
    timeline = results[0].timeline
    edges = np.append(timeline.start_ns, timeline.start_ns[-1] + timeline.interval_ns)
    usage = summarize(trace, timeline.start_ns, timeline.interval_ns)
    colors = [(r.strategy, _COLORS[i % len(_COLORS)]) for i, r in enumerate(results)]
    keys = trace.container_keys
    namespaces = sorted(
        set(zip(keys["cluster"].to_list(), keys["namespace"].to_list(), strict=True))
    )
    clusters = len({cluster for cluster, _ in namespaces})
    workload_metrics = {
        (r.strategy, w.cluster, w.namespace, w.workload): w.metrics
        for r in results
        for w in r.workloads
    }
    pages: dict[str, str] = {}
    index_rows = []
    for cluster, namespace in namespaces:
        name = page_name(cluster, namespace, clusters)
        rows = np.flatnonzero(
            (keys["cluster"] == cluster).to_numpy() & (keys["namespace"] == namespace).to_numpy()
        )
        shown = rows[:MAX_CONTAINERS_PER_PAGE]
        body = [_legend(colors)]
        if source:
            body.append(f'<p class="note">trace: {html.escape(source)}</p>')
        if rows.shape[0] > shown.shape[0]:
            body.append(
                f'<p class="note">the first {shown.shape[0]} of {rows.shape[0]} containers</p>'
            )
        per_strategy = [
            (
                result.strategy,
                Metrics.sum(
                    [
                        w.metrics
                        for w in result.workloads
                        if (w.cluster, w.namespace) == (cluster, namespace)
                    ]
                ),
            )
            for result in results
        ]
        body.append("<h2>all workloads of the namespace</h2>")
        body.append(_metrics_table(per_strategy, "strategy"))
        index_rows.append((name, f"{cluster}/{namespace}", per_strategy))
        for row in shown.tolist():
            _, _, workload, pod, container = keys.row(row)
            label = f"{workload} / {pod} / {container}"
            cpu_requests = [
                (r.strategy, color, r.timeline.cpu_request_millicores[:, row] / 1000.0)
                for r, (_, color) in zip(results, colors, strict=True)
            ]
            memory_requests = [
                (r.strategy, color, r.timeline.memory_request_bytes[:, row].astype(np.float64))
                for r, (_, color) in zip(results, colors, strict=True)
            ]
            body.append(f"<h2>{html.escape(label)}</h2>")
            body.append(
                usage_chart(
                    "CPU (cores)",
                    "cores",
                    edges,
                    mean=usage.cpu_mean[:, row],
                    peak=usage.cpu_max[:, row],
                    requests=cpu_requests,
                )
            )
            body.append(
                usage_chart(
                    "memory",
                    "bytes",
                    edges,
                    mean=usage.memory_mean[:, row],
                    peak=usage.memory_max[:, row],
                    requests=memory_requests,
                )
            )
            body.append(
                _metrics_table(
                    [
                        (r.strategy, workload_metrics[(r.strategy, cluster, namespace, workload)])
                        for r in results
                    ],
                    f"workload {workload}",
                )
            )
        pages[name] = html_document(f"{cluster}/{namespace}: request vs usage", "".join(body))
    pages["index.html"] = _index(index_rows, results)
    return pages


def _index(
    rows: Sequence[tuple[str, str, Sequence[tuple[str, Metrics]]]],
    results: Sequence[SimulationResult],
) -> str:
    body = ["<h2>totals</h2>", _metrics_table([(r.strategy, r.total) for r in results], "strategy")]
    for name, label, per_strategy in rows:
        link = f'<a href="{html.escape(name)}">{html.escape(label)}</a>'
        body.append(f"<h2>{link}</h2>")
        body.append(_metrics_table(per_strategy, "strategy"))
    return html_document("simulation", "".join(body))
