"""`vpa-fleet simulate`: replay strategies over a usage trace and compare what they cost and
risked; `--generate` writes the synthetic trace families instead."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from analytics.simulate.families import FAMILIES, generate, parse_seeds
from analytics.simulate.plot import render_pages
from analytics.simulate.replay import (
    METRIC_KEYS,
    Metrics,
    SimulationResult,
    known_strategies,
    prepare_trace,
    simulate_many,
    strategy_named,
)
from analytics.sources.export import PrometheusExport, export_trace
from analytics.sources.files import read_trace
from analytics.sources.prometheus import PrometheusQueryError, load_config
from analytics.sources.promql import format_duration, parse_duration

_GROUPS = {
    "total": (),
    "namespace": ("cluster", "namespace"),
    "workload": ("cluster", "namespace", "workload"),
}


def _strategy_help() -> str:
    lines = ["strategies (default: all of them), parameters with --param [STRATEGY:]NAME=VALUE:"]
    for name in known_strategies():
        lines.append(f"  {name}: {strategy_named(name).description}")
    lines.append("families for --generate: " + ", ".join(FAMILIES))
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="replay strategies over a usage trace: slack, shortage, OOM kills, resizes",
        description="Replay each strategy over a usage trace (Parquet, one row per container "
        "sample, with cpu_request and memory_request to start from): recommendations are "
        "recomputed every interval from the samples seen so far and applied as the VPA updater "
        "does in InPlaceOrRecreate mode. Prints, per strategy, CPU and memory slack, CPU "
        "shortage, OOM kills and resizes. With --generate, writes the synthetic trace families "
        "instead. See docs/simulate.md.",
        epilog=_strategy_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("trace", nargs="?", metavar="TRACES.parquet", help="usage trace to replay")
    parser.add_argument(
        "--strategy",
        action="append",
        default=[],
        metavar="NAME",
        help="strategy to replay, repeatable or comma-separated (default: every known one)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="[STRATEGY:]NAME=VALUE",
        help="strategy parameter, for one strategy or (without STRATEGY:) for all; repeatable",
    )
    parser.add_argument(
        "-o", "--output", choices=("table", "json", "csv"), default="table", help="output format"
    )
    parser.add_argument(
        "--by",
        choices=tuple(_GROUPS),
        default="total",
        help="rows of the table and CSV: one per strategy, or per namespace or workload too",
    )
    parser.add_argument(
        "--against",
        metavar="NAME",
        help="also compare every other strategy's totals with this one's (for example vpa): "
        "slack and shortage change, OOM kills difference, resizes ratio; in JSON a `versus` "
        "object per strategy",
    )
    parser.add_argument(
        "--interval", default="1h", help="how often recommendations are recomputed (default 1h)"
    )
    parser.add_argument(
        "--oom-restart",
        default="5m",
        help="while memory stays above the limit, one OOM kill per this long (default 5m)",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="DIR",
        help="write one HTML page per namespace (request vs usage over time per strategy) "
        "and an index.html into DIR",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    generation = parser.add_argument_group("generating traces")
    generation.add_argument(
        "--generate", type=Path, metavar="OUT.parquet", help="write the trace families to a file"
    )
    generation.add_argument(
        "--families",
        action="append",
        default=[],
        metavar="NAME",
        help="families to generate, repeatable or comma-separated (default: all)",
    )
    generation.add_argument("--seeds", default="0-4", help="seeds, e.g. 0-4 or 0,3,100-104")
    generation.add_argument("--days", type=float, default=14.0, help="days of samples (14)")
    generation.add_argument(
        "--step", default="1m", help="time between samples (1m), generated or exported"
    )
    export = parser.add_argument_group(
        "exporting a live Prometheus to a trace (written to TRACES.parquet)"
    )
    export.add_argument(
        "--export-from-prometheus",
        metavar="URL",
        help="read cAdvisor usage and kube-state-metrics requests of --namespace from this "
        "Prometheus and write them as a trace",
    )
    export.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NAME",
        help="namespace to export, repeatable or comma-separated (required)",
    )
    export.add_argument("--since", default="8d", help="how far back to export (8d)")
    export.add_argument(
        "--until", metavar="TIME", help="end of the export, ISO 8601 (default: now, UTC)"
    )
    export.add_argument("--cluster", default="default", help="the trace's cluster column")
    export.add_argument(
        "--workload-label",
        metavar="LABEL",
        help="a pod's workload is this Kubernetes label (kube_pod_labels' label_LABEL); "
        "default: the pod name without its controller suffixes",
    )
    export.add_argument(
        "--cadvisor-selector",
        default='job="kubernetes-cadvisor"',
        help='matchers of the cAdvisor scrape job (default job="kubernetes-cadvisor")',
    )
    export.add_argument(
        "--kube-state-metrics-selector",
        default='job="kube-state-metrics"',
        help='matchers of the kube-state-metrics job (default job="kube-state-metrics")',
    )
    export.add_argument(
        "--bearer-token-file", type=Path, metavar="FILE", help="bearer token for Prometheus"
    )
    parser.set_defaults(func=_simulate)


class _UsageError(ValueError):
    """A problem with the command line."""


def _names(items: Sequence[str]) -> list[str]:
    names = [name.strip() for item in items for name in item.split(",")]
    return [name for name in dict.fromkeys(names) if name]


def _strategy_params(
    strategies: Sequence[str], items: Sequence[str]
) -> list[tuple[str, dict[str, object] | None]]:
    params: dict[str, dict[str, object]] = {name: {} for name in strategies}
    for item in items:
        assignment, separator, value = item.partition("=")
        if not separator or not assignment.strip():
            raise _UsageError(f"--param expects [STRATEGY:]NAME=VALUE, got {item!r}")
        strategy, colon, name = assignment.rpartition(":")
        targets = [strategy.strip()] if colon else list(strategies)
        for target in targets:
            if target not in params:
                raise _UsageError(
                    f"--param {item!r}: strategy {target!r} is not replayed "
                    f"(replayed: {', '.join(strategies)})"
                )
            params[target][name.strip()] = value.strip()
    return [(name, params[name] or None) for name in strategies]


def _simulate(args: argparse.Namespace) -> int:
    try:
        if args.export_from_prometheus is not None:
            if args.generate is not None:
                raise _UsageError("give either --export-from-prometheus or --generate, not both")
            if args.trace is None:
                raise _UsageError("--export-from-prometheus writes to TRACES.parquet: give it")
            return _export(args)
        if args.generate is not None:
            if args.trace is not None:
                raise _UsageError("give either TRACES.parquet or --generate, not both")
            return _generate(args)
        if args.trace is None:
            raise _UsageError("give TRACES.parquet to replay, or --generate OUT.parquet")
        return _replay(args)
    except (ValueError, OSError) as error:
        print(f"vpa-fleet simulate: error: {error}", file=sys.stderr)
        return 2


def _generate(args: argparse.Namespace) -> int:
    families = _names(args.families) or list(FAMILIES)
    seeds = parse_seeds(args.seeds)
    step_s = parse_duration(args.step)
    if not args.days > 0:
        raise _UsageError(f"--days must be positive, got {args.days:g}")
    frame = generate(families, seeds, args.days, step_s)
    path: Path = args.generate
    try:
        frame.write_parquet(path)
    except OSError as error:
        raise OSError(f"cannot write {path}: {error.strerror or error}") from None
    if not args.quiet:
        print(
            f"wrote {path}: {frame.height} samples, {len(families)} famil"
            f"{'y' if len(families) == 1 else 'ies'} x {len(seeds)} seed"
            f"{'' if len(seeds) == 1 else 's'}, {args.days:g} days every "
            f"{format_duration(step_s)}",
            file=sys.stderr,
        )
    return 0


def _until(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _UsageError(f"--until: not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _export(args: argparse.Namespace) -> int:
    namespaces = _names(args.namespace)
    if not namespaces:
        raise _UsageError("--export-from-prometheus needs at least one --namespace")
    since_s = parse_duration(args.since)
    if since_s <= 0:
        raise _UsageError(f"--since must be positive, got {args.since!r}")
    end = _until(args.until)
    start = end - timedelta(seconds=since_s)
    connection: dict[str, object] = {"url": args.export_from_prometheus}
    if args.bearer_token_file is not None:
        connection["bearer_token_file"] = args.bearer_token_file
    config = load_config(
        {
            "connection": connection,
            "cluster": args.cluster,
            "step_s": args.step,
            "history_s": max(since_s, parse_duration(args.step)),
            "cadvisor_selector": args.cadvisor_selector,
            "kube_state_metrics_selector": args.kube_state_metrics_selector,
        }
    )
    with PrometheusExport(config) as source:
        try:
            frame, report = export_trace(
                source, namespaces, start, end, workload_label=args.workload_label
            )
        except PrometheusQueryError as error:
            raise _UsageError(str(error)) from None
    path = Path(args.trace)
    try:
        frame.write_parquet(path)
    except OSError as error:
        raise OSError(f"cannot write {path}: {error.strerror or error}") from None
    if not args.quiet:
        for namespace in namespaces:
            print(
                f"{namespace}: {report.containers[namespace]} containers, "
                f"{report.rows[namespace]} samples",
                file=sys.stderr,
            )
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(report.dropped.items()))
        print(
            f"wrote {path}: {frame.height} samples from {start:%Y-%m-%dT%H:%M:%SZ} to "
            f"{end:%Y-%m-%dT%H:%M:%SZ} in {report.queries} queries"
            + (f"; dropped: {dropped}" if dropped else ""),
            file=sys.stderr,
        )
        if report.without_request:
            shown = ", ".join(report.without_request[:5])
            more = len(report.without_request) - 5
            print(
                f"no kube-state-metrics requests for {len(report.without_request)} containers "
                f"({shown}{f', and {more} more' if more > 0 else ''}): the simulator needs "
                "them, `vpa-fleet recommend` does not",
                file=sys.stderr,
            )
    return 0


class _Progress:
    """Prints on stderr when a strategy is done and, for long replays (100 intervals or more),
    at every tenth of its intervals."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.shown: dict[str, int] = {}

    def __call__(self, strategy: str, done: int, total: int) -> None:
        tenth = done * 10 // total
        if done == total or (total >= 100 and tenth > self.shown.get(strategy, 0)):
            self.shown[strategy] = tenth
            self.stream.write(
                f"simulate: {strategy}: {done * 100 // total}% ({done}/{total} intervals)\n"
            )
            self.stream.flush()


def _replay(args: argparse.Namespace) -> int:
    strategies = _names(args.strategy) or known_strategies()
    for name in strategies:
        strategy_named(name)
    if args.against is not None and args.against not in strategies:
        raise ValueError(
            f"--against {args.against}: not among the strategies replayed ({', '.join(strategies)})"
        )
    specs = _strategy_params(strategies, args.param)
    for name, params in specs:  # bad parameters fail before a long trace is read
        strategy_named(name).parse_params(params)
    interval_s = parse_duration(args.interval)
    restart_s = parse_duration(args.oom_restart)
    trace = prepare_trace(read_trace(args.trace))
    if not args.quiet:
        print(
            f"simulate: {len(trace.samples)} samples of {trace.workload_keys.height} workloads "
            f"({trace.n_containers} containers), every {trace.sample_s:g} s; recommending every "
            f"{format_duration(interval_s)}",
            file=sys.stderr,
        )
    progress = None if args.quiet else _Progress(sys.stderr)
    results = simulate_many(
        trace, specs, interval_s=interval_s, oom_restart_s=restart_s, progress=progress
    )
    reference = next((r.total for r in results if r.strategy == args.against), None)
    if args.output == "json":
        documents = [result.to_dict() for result in results]
        if reference is not None:
            for document, result in zip(documents, results, strict=True):
                document["versus"] = {
                    "strategy": args.against,
                    **result.total.versus(reference),
                }
        print(json.dumps(documents, indent=2))
    elif args.output == "csv":
        print(_csv(results, args.by), end="")
    else:
        print(_table(results, args.by))
        if reference is not None:
            print()
            print(_versus_table(results, args.against, reference))
    if args.plot is not None:
        _write_plots(args.plot, render_pages(trace, results, source=str(args.trace)), args.quiet)
    skipped = results[0].skipped if results else {}
    if skipped:
        counts = ", ".join(f"{reason}={count}" for reason, count in sorted(skipped.items()))
        print(f"skipped: {counts}", file=sys.stderr)
    return 0


def _write_plots(directory: Path, pages: dict[str, str], quiet: bool) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in pages.items():
            (directory / name).write_text(text, encoding="utf-8")
    except OSError as error:
        raise OSError(f"cannot write plots into {directory}: {error.strerror or error}") from None
    if not quiet:
        print(f"wrote {len(pages)} pages into {directory}", file=sys.stderr)


def _grouped(
    results: list[SimulationResult], by: str
) -> list[tuple[str, tuple[str, ...], Metrics]]:
    """(strategy, group key, metrics) rows; per group, strategies in the order given."""
    columns = _GROUPS[by]
    if not columns:
        return [(result.strategy, (), result.total) for result in results]
    rows: dict[tuple[str, ...], dict[str, list[Metrics]]] = {}
    for result in results:
        for workload in result.workloads:
            key = tuple(getattr(workload, column) for column in columns)
            rows.setdefault(key, {}).setdefault(result.strategy, []).append(workload.metrics)
    return [
        (strategy, key, Metrics.sum(parts))
        for key in sorted(rows)
        for strategy, parts in rows[key].items()
    ]


def _table(results: list[SimulationResult], by: str) -> str:
    columns = _GROUPS[by]
    header = (
        "STRATEGY",
        *(column.upper() for column in columns),
        "CPU_SLACK(core-h)",
        "MEM_SLACK(GiB-h)",
        "CPU_SHORT(core-h)",
        "OOM_KILLS",
        "RESIZES",
        "CPU_SLACK%",
        "MEM_SLACK%",
    )
    rows: list[tuple[str, ...]] = [header]
    for strategy, key, metrics in _grouped(results, by):
        rows.append(
            (
                strategy,
                *key,
                f"{metrics.cpu_slack_core_hours:.1f}",
                f"{metrics.memory_slack_gib_hours:.1f}",
                f"{metrics.cpu_shortage_core_hours:.1f}",
                str(metrics.oom_kills),
                str(metrics.resizes),
                f"{metrics.cpu_relative_slack * 100:.1f}",
                f"{metrics.memory_relative_slack * 100:.1f}",
            )
        )
    return _aligned(rows, text_columns=1 + len(columns))


def _aligned(rows: list[tuple[str, ...]], text_columns: int) -> str:
    """Rows as columns two spaces apart: the first `text_columns` left-aligned, the
    figures right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if index < text_columns else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    )


def _versus_table(results: list[SimulationResult], against: str, reference: Metrics) -> str:
    """Every other strategy's totals against `against`'s."""

    def percent(change: float | int | None) -> str:
        return "-" if change is None else f"{float(change) * 100:+.1f}%"

    rows: list[tuple[str, ...]] = [
        (f"AGAINST {against}", "CPU_SLACK", "MEM_SLACK", "CPU_SHORT", "OOM_KILLS", "RESIZES")
    ]
    for result in results:
        if result.strategy == against:
            continue
        change = result.total.versus(reference)
        ratio = change["resizes_ratio"]
        rows.append(
            (
                result.strategy,
                percent(change["cpu_slack_change"]),
                percent(change["memory_slack_change"]),
                percent(change["cpu_shortage_change"]),
                f"{change['oom_kills_difference']:+d}",
                "-" if ratio is None else f"{float(ratio):.2f}x",
            )
        )
    return _aligned(rows, text_columns=1)


def _csv(results: list[SimulationResult], by: str) -> str:
    columns = _GROUPS[by]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["strategy", *columns, *METRIC_KEYS])
    for strategy, key, metrics in _grouped(results, by):
        values = metrics.to_dict()
        writer.writerow([strategy, *key, *(values[name] for name in METRIC_KEYS)])
    return buffer.getvalue()
