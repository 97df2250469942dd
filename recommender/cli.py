"""The `vpa-fleet` command line: a thin dispatcher over `recommender.commands`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from recommender import __version__
from recommender.commands import explain, inspect, recommend, report, run, simulate

# Each subcommand module registers itself here; the order is the order of `--help`.
_COMMANDS = (run, inspect, explain, recommend, simulate, report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vpa-fleet",
        description="A fleet-scale recommender for the Kubernetes Vertical Pod Autoscaler.",
    )
    parser.add_argument("--version", action="version", version=f"vpa-fleet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in _COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
