"""`vpa-fleet run`: the recommender loop."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("run", help="run the recommender loop against the cluster(s)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    print(
        "vpa-fleet run: the recommender loop is not implemented yet; nothing was read from "
        "or written to the cluster.",
        file=sys.stderr,
    )
    return 2
