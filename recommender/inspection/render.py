"""How `inspect` and `explain` print: tables, JSON, YAML, CSV, and the explanation as text
with a terminal histogram. Pure: API messages in, text out."""

from __future__ import annotations

import csv
import io
import json
import textwrap
from collections.abc import Sequence
from typing import Any

import yaml
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from analytics.quantity import format_cpu_millicores, format_memory_bytes
from recommender.api.generated.vpafleet.v1 import inspection_pb2 as pb

FORMATS = ("table", "json", "yaml", "csv")
BAR_WIDTH = 40


def as_dict(message: Message) -> dict[str, Any]:
    """The message as plain data, field names as in the .proto, empty fields included."""
    return MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _pair(values: dict[str, str] | Any) -> str:
    return f"{values.get('cpu', '-')}/{values.get('memory', '-')}"


def _saved(savings: Any) -> str:
    if not savings:
        return "-"
    cpu = savings.get("cpu")
    memory = savings.get("memory")
    parts = []
    if cpu is not None:
        parts.append(("-" if cpu < 0 else "") + format_cpu_millicores(abs(int(cpu))))
    if memory is not None:
        parts.append(("-" if memory < 0 else "") + _value("bytes", abs(memory)))
    return "/".join(parts)


CSV_COLUMNS = (
    "cluster",
    "namespace",
    "vpa",
    "workload",
    "container",
    "pods",
    "request_cpu",
    "request_memory",
    "target_cpu",
    "target_memory",
    "lower_cpu",
    "lower_memory",
    "upper_cpu",
    "upper_memory",
    "savings_cpu_millicores",
    "savings_memory_bytes",
)


def _rows(recommendations: Sequence[pb.Recommendation]) -> list[dict[str, str]]:
    rows = []
    for r in recommendations:
        workload = f"{r.target_kind}/{r.target_name}" if r.target_kind else ""
        for c in r.containers or [pb.ContainerRecommendation()]:
            rows.append(
                {
                    "cluster": r.cluster,
                    "namespace": r.namespace,
                    "vpa": r.name,
                    "workload": workload,
                    "container": c.container,
                    "pods": str(r.pods),
                    "request_cpu": c.requests.get("cpu", ""),
                    "request_memory": c.requests.get("memory", ""),
                    "target_cpu": c.target.get("cpu", ""),
                    "target_memory": c.target.get("memory", ""),
                    "lower_cpu": c.lower_bound.get("cpu", ""),
                    "lower_memory": c.lower_bound.get("memory", ""),
                    "upper_cpu": c.upper_bound.get("cpu", ""),
                    "upper_memory": c.upper_bound.get("memory", ""),
                    "savings_cpu_millicores": _number(c.savings.get("cpu")),
                    "savings_memory_bytes": _number(c.savings.get("memory")),
                }
            )
    return rows


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def recommendations_text(recommendations: Sequence[pb.Recommendation], output: str) -> str:
    """The recommendations in one of FORMATS."""
    if output == "json":
        return json.dumps([as_dict(r) for r in recommendations], indent=2)
    if output == "yaml":
        return yaml.safe_dump([as_dict(r) for r in recommendations], sort_keys=False).rstrip()
    if output == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(_rows(recommendations))
        return buffer.getvalue().rstrip("\n")
    clusters = {r.cluster for r in recommendations}
    header: tuple[str, ...] = (
        "NAMESPACE",
        "VPA",
        "WORKLOAD",
        "CONTAINER",
        "PODS",
        "REQUESTS",
        "TARGET",
        "LOWER",
        "UPPER",
        "SAVINGS",
    )
    if len(clusters) > 1:
        header = ("CLUSTER", *header)
    table: list[tuple[str, ...]] = [header]
    for r in recommendations:
        workload = f"{r.target_kind}/{r.target_name}" if r.target_kind else "-"
        for c in r.containers or [pb.ContainerRecommendation(container="(none yet)")]:
            row = (
                r.namespace,
                r.name,
                workload,
                c.container,
                str(r.pods),
                _pair(c.requests) if c.requests else "-",
                _pair(c.target) if c.target else "-",
                _pair(c.lower_bound) if c.lower_bound else "-",
                _pair(c.upper_bound) if c.upper_bound else "-",
                _saved(c.savings),
            )
            table.append((r.cluster, *row) if len(clusters) > 1 else row)
    if len(table) == 1:
        return "no VPA of ours found"
    return _table(table)


# -- explain -----------------------------------------------------------------------------------


def _value(unit: str, value: float) -> str:
    """A histogram value for reading (the steps below it keep the exact amounts)."""
    if unit == "cores":
        return f"{value * 1000:.6g}m"
    if value >= 2**30:
        return f"{value / 2**30:.4g}Gi"
    return f"{value / 2**20:.4g}Mi" if value >= 2**20 else f"{value:.0f}"


def histogram_lines(resource: pb.ResourceExplanation, marks: dict[float, str]) -> list[str]:
    """One line per non-empty bucket: its range, weight, a bar; the buckets where the marked
    percentiles fall are flagged."""
    if not resource.buckets:
        return ["    (empty)"]
    top = max(b.weight for b in resource.buckets)
    lines = []
    cumulative = 0.0
    for bucket in resource.buckets:
        cumulative += bucket.weight
        bar = "#" * max(1, round(BAR_WIDTH * bucket.weight / top)) if bucket.weight > 0 else ""
        flags = [label for value, label in marks.items() if value == bucket.end]
        share = cumulative / resource.total_weight if resource.total_weight else 0.0
        start, end = _value(resource.unit, bucket.start), _value(resource.unit, bucket.end)
        lines.append(
            f"    {start:>10} .. {end:<10} {bucket.weight:12.4f} {share:7.2%} "
            f"{bar:<{BAR_WIDTH}} {' '.join(flags)}".rstrip()
        )
    return lines


def _estimate_lines(label: str, estimate: pb.Estimate) -> list[str]:
    lines = [f"  {label}:"]
    for step in estimate.steps:
        lines.append(f"    {step.kind:<12} {step.description}")
        lines.append(f"    {'':<12} = {step.formula}")
    lines.append(f"    {'uncapped':<12} {estimate.uncapped_quantity}")
    for cap in estimate.caps:
        source = f" ({cap.source})" if cap.source else ""
        lines.append(f"    {'cap':<12} {cap.field} {cap.quantity}{source}")
    written = estimate.capped_quantity or "(not controlled: left out of the status)"
    lines.append(f"    {'written':<12} {written}")
    return lines


def explanation_text(e: pb.Explanation) -> str:
    """The explanation for people: the history, each resource's histogram and percentiles, and
    each value from the percentile to what the status holds."""
    lines = [
        f"VPA {e.namespace}/{e.name} (cluster {e.cluster}), container {e.container}",
        *textwrap.wrap(
            f"strategy {e.strategy}: "
            + ", ".join(f"{k}={v}" for k, v in sorted(e.parameters.items())),
            width=100,
            subsequent_indent="  ",
        ),
        f"settings of RecommenderPolicy {e.policy}" if e.policy else "settings of the recommender",
        f"saved state as of {e.checkpoint_time}",
        f"samples: {e.sample_count} CPU samples, {e.first_sample_time or '-'} .. "
        f"{e.last_sample_time or '-'} ({e.history_days:.2f} days)",
        f"confidence: {e.confidence_days:.3f} day(s) of history; pod minimums split over "
        f"{e.containers_in_pod} container(s)",
    ]
    if e.oom_events:
        lines.append("OOM kills:")
        for k in e.oom_events:
            detail = [k.time or "time unknown"]
            if k.memory_request:
                detail.append(f"request {format_memory_bytes(int(k.memory_request))}")
            if k.peak_bytes:
                detail.append(f"peak taken {format_memory_bytes(k.peak_bytes)}")
            lines.append(f"  {k.pod}: {', '.join(detail)}")
    else:
        lines.append("OOM kills: none known")
    for r in e.resources:
        lines.append("")
        lines.append(
            f"{r.resource} ({'usage' if r.resource == 'cpu' else 'peaks'}, {r.unit}); "
            f"total weight {r.total_weight:.4f}"
        )
        lines.append(
            "  percentiles: "
            + ", ".join(f"p{p.percentile * 100:g}={_value(r.unit, p.value)}" for p in r.percentiles)
        )
        marks: dict[float, str] = {}
        for label, estimate in (
            ("lower", r.lower_bound),
            ("target", r.target),
            ("upper", r.upper_bound),
        ):
            if estimate.steps and estimate.steps[0].kind == "percentile":
                percent = estimate.steps[0].description.split(" ")[0]
                end = next(
                    (p.value for p in r.percentiles if f"p{p.percentile * 100:g}" == percent),
                    None,
                )
                if end is not None:
                    marks[end] = f"{marks.get(end, '')} <{label} {percent}".strip()
        lines.append("  histogram (bucket, weight, cumulative, bar):")
        lines.extend(histogram_lines(r, marks))
        lines.extend(_estimate_lines("target", r.target))
        lines.extend(_estimate_lines("lowerBound", r.lower_bound))
        lines.extend(_estimate_lines("upperBound", r.upper_bound))
    lines.append("")
    if e.matches_status:
        lines.append("the written target is exactly the VPA's status target")
    else:
        lines.append(f"note: {e.note}")
    return "\n".join(lines)


def explanation_output(e: pb.Explanation, output: str) -> str:
    if output == "json":
        return json.dumps(as_dict(e), indent=2)
    if output == "yaml":
        return yaml.safe_dump(as_dict(e), sort_keys=False).rstrip()
    return explanation_text(e)
