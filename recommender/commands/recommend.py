"""`vpa-fleet recommend`: replay a recorded usage trace and print its recommendations."""

from __future__ import annotations

import argparse
import json
import sys

from analytics.sources.files import read_trace
from analytics.strategies import STRATEGIES
from analytics.trace import TraceResult, replay_trace


def _strategy_help() -> str:
    lines = ["strategies and their parameters (--param NAME=VALUE):"]
    for name in sorted(STRATEGIES):
        strategy = STRATEGIES[name]
        lines.append(f"  {name}: {strategy.description}")
        for field_name, field in strategy.params_model.model_fields.items():
            lines.append(f"    {field_name} (default {field.default}): {field.description}")
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "recommend",
        help="recommend requests for every container of a recorded usage trace",
        description="Replay a usage trace (Parquet, one row per container sample) through a "
        "strategy and print one recommendation per workload container, as of the trace's end.",
        epilog=_strategy_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("trace", metavar="TRACES.parquet", help="usage trace to replay")
    parser.add_argument("--strategy", default="vpa", help="recommendation strategy (default: vpa)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="strategy parameter, repeatable",
    )
    parser.add_argument(
        "-o", "--output", choices=("table", "json"), default="table", help="output format"
    )
    parser.set_defaults(func=_recommend)


def _parse_params(items: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in items:
        name, separator, value = item.partition("=")
        if not separator or not name.strip():
            raise ValueError(f"--param expects NAME=VALUE, got {item!r}")
        params[name.strip()] = value.strip()
    return params


def _json_entries(result: TraceResult) -> list[dict[str, object]]:
    entries = []
    for recommendation in result.recommendations:
        status = recommendation.to_status_entry()
        entries.append(
            {
                "cluster": recommendation.cluster,
                "namespace": recommendation.namespace,
                "workload": recommendation.workload,
                **status,
            }
        )
    return entries


def _table(result: TraceResult) -> str:
    header = ("CLUSTER", "NAMESPACE", "WORKLOAD", "CONTAINER", "TARGET", "LOWER", "UPPER")
    rows: list[tuple[str, ...]] = [header]
    for r in result.recommendations:
        cells = [
            f"{q['cpu']}/{q['memory']}"
            for q in (
                r.target.to_quantities(),
                r.lower_bound.to_quantities(),
                r.upper_bound.to_quantities(),
            )
        ]
        rows.append((r.cluster, r.namespace, r.workload, r.container_name, *cells))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _recommend(args: argparse.Namespace) -> int:
    try:
        params = _parse_params(args.param)
        result = replay_trace(read_trace(args.trace), args.strategy, params)
    except ValueError as error:
        print(f"vpa-fleet recommend: error: {error}", file=sys.stderr)
        return 2
    if args.output == "json":
        print(json.dumps(_json_entries(result), indent=2))
    else:
        print(_table(result))
    if result.skipped:
        counts = ", ".join(f"{reason}={count}" for reason, count in sorted(result.skipped.items()))
        print(f"skipped: {counts}", file=sys.stderr)
    return 0
