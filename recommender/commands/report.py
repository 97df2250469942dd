"""`vpa-fleet report`: savings and risk of the VPAs of a cluster (or of a fleet file's
clusters) per cluster, namespace, workload or container: current requests against the VPA's
target, and slack and risk from Prometheus usage over a window. Table, CSV, JSON or Parquet,
and a self-contained HTML page with usage-vs-request charts (see docs/report.md)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import TextIO

from analytics.sources.promql import format_duration, parse_duration

_LEVELS = ("cluster", "namespace", "workload", "container")
_FORMATS = ("table", "csv", "json", "parquet")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "report",
        help="savings and risk per cluster, namespace, workload or container (table, CSV, "
        "Parquet, HTML with plots)",
        description="Compare each VPA's recommendation with the current requests of the pods "
        "it matches (savings) and with their usage in Prometheus over a window (slack, "
        "samples above request or target, OOM kills). Reads the cluster through the "
        "kubeconfig like kubectl and Prometheus with one batch of queries per namespace. "
        "Progress goes to stderr. See docs/report.md.",
    )
    parser.add_argument("--config", type=Path, help="YAML settings file of vpa-fleet run")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, $KUBECONFIG)")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument("--prometheus-url", help="Prometheus base URL, e.g. http://prom:9090")
    parser.add_argument("--cluster", help="the cluster's name in the report (default)")
    parser.add_argument(
        "--fleet",
        type=Path,
        help="fleet file: report every cluster of it (each its own "
        "kubeconfig, context and Prometheus)",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        dest="namespaces",
        action="append",
        help="only this namespace (repeatable)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace (the default)"
    )
    parser.add_argument("--recommender-name", help="report the VPAs naming this (vpa-fleet)")
    parser.add_argument(
        "--all-recommenders",
        action="store_true",
        help="report every VPA, whichever recommender it names",
    )
    parser.add_argument("--window", default="7d", help="usage window before --end (7d)")
    parser.add_argument("--step", default="5m", help="time between usage samples (5m)")
    parser.add_argument(
        "--end", help="end of the window, RFC 3339 (e.g. 2026-01-31T00:00:00Z; default: now)"
    )
    parser.add_argument(
        "--by", choices=_LEVELS, default="workload", help="rows per ... (workload: per VPA)"
    )
    parser.add_argument("-o", "--output", choices=_FORMATS, default="table", help="format")
    parser.add_argument(
        "--output-file", type=Path, metavar="PATH", help="write there instead of stdout"
    )
    parser.add_argument(
        "--html", type=Path, metavar="FILE", help="also write a self-contained HTML page"
    )
    parser.add_argument(
        "--cpu-risk-pct",
        type=float,
        default=5.0,
        help="CPU is a risk when more than this share of samples is above request or target",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    parser.set_defaults(func=_report)


class _UsageError(ValueError):
    """A problem with the command line."""


def _end(text: str | None) -> dt.datetime:
    if text is None:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _UsageError(f"--end: not an RFC 3339 time (got {text!r})") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _report(args: argparse.Namespace) -> int:
    try:
        return _run(args, sys.stdout, sys.stderr)
    except (ValueError, OSError) as error:
        print(f"vpa-fleet report: error: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    # Imported here: polars, the Kubernetes client and the settings are slow to import.
    from recommender.report.run import ReportRequest, make_report  # noqa: PLC0415

    window_s = parse_duration(args.window)
    step_s = parse_duration(args.step)
    if step_s > window_s:
        raise _UsageError(f"--step ({args.step}) is longer than --window ({args.window})")
    if not args.cpu_risk_pct >= 0:
        raise _UsageError(f"--cpu-risk-pct must not be negative, got {args.cpu_risk_pct:g}")
    if args.output == "parquet" and args.output_file is None:
        raise _UsageError("-o parquet needs --output-file PATH (Parquet is binary)")
    if args.fleet is not None:
        given = [
            f for f in ("kubeconfig", "context", "prometheus_url", "cluster") if getattr(args, f)
        ]
        if given:
            flags = ", ".join("--" + f.replace("_", "-") for f in given)
            raise _UsageError(f"--fleet gives each cluster's connection; drop {flags}")
    end = _end(args.end)
    request = ReportRequest(
        config=args.config,
        overrides={
            "kubeconfig": args.kubeconfig,
            "context": args.context,
            "prometheus_url": args.prometheus_url,
            "cluster": args.cluster,
            "recommender_name": args.recommender_name,
            "namespaces": args.namespaces,
        },
        fleet=args.fleet,
        start=end - dt.timedelta(seconds=window_s),
        end=end,
        step_s=step_s,
        all_recommenders=args.all_recommenders,
        cpu_risk_pct=args.cpu_risk_pct,
    )

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"report: {message}", file=err, flush=True)

    progress(
        f"usage of the last {format_duration(window_s)} to {end:%Y-%m-%dT%H:%M:%SZ} every "
        f"{format_duration(step_s)}"
    )
    result = make_report(request, progress)
    from recommender.report.output import write  # noqa: PLC0415

    text = write(result.level(args.by), args.by, args.output, args.output_file)
    if text is not None:
        out.write(text)
        out.flush()
    if args.output_file is not None:
        progress(f"wrote {args.output_file}")
    if args.html is not None:
        args.html.write_text(result.html(), encoding="utf-8")
        progress(f"wrote {args.html}")
    for problem in result.problems:
        print(f"vpa-fleet report: {problem}", file=err)
    return 1 if result.failed else 0
