"""`vpa-fleet explain NAMESPACE/VPA [CONTAINER]`: why a container's recommendation is what it
is, from the saved state: samples, history, the histogram (drawn in the terminal), its
percentiles, each estimator step, the caps of the VPA's policy, OOM kills, confidence."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recommender.api.client import ClientError
from recommender.api.convert import explanation_message
from recommender.commands.inspect import add_connection_flags, client, inspector
from recommender.inspection.explain import ExplainError
from recommender.inspection.render import explanation_output
from recommender.inspection.source import NotFoundError
from recommender.kube.rest import KubeApiError
from recommender.settings import SettingsError, load_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="why a container's recommendation is what it is",
        description="Explain one container's recommendation from the exact state the "
        "recommender saved (its RecommenderCheckpoint): the percentile of the histogram, the "
        "margin, the confidence of the bounds, the pod minimum, then the caps of the VPA's "
        "policy. Directly against the cluster it recomputes with the strategy of --config "
        "(the settings `vpa-fleet run` uses; default: the vpa strategy); with --server the "
        "running recommender answers with its own.",
    )
    parser.add_argument("vpa", metavar="NAMESPACE/VPA", help="the VPA")
    parser.add_argument("container", nargs="?", help="the container (needed if several)")
    parser.add_argument(
        "-o", "--output", choices=("text", "json", "yaml"), default="text", help="output format"
    )
    parser.add_argument(
        "--config", type=Path, help="settings file of the recommender (strategy, caps)"
    )
    parser.add_argument(
        "--prometheus-url",
        help="read the OOM kills of the history window from this Prometheus (direct mode; "
        "default: the config's, else pod status only)",
    )
    add_connection_flags(parser)
    parser.set_defaults(func=_explain)


def _explain(args: argparse.Namespace) -> int:
    namespace, slash, name = args.vpa.partition("/")
    if not slash or not namespace or not name:
        print(f"vpa-fleet explain: expected NAMESPACE/VPA, got {args.vpa!r}", file=sys.stderr)
        return 2
    try:
        if args.server:
            with client(args) as api:
                message = api.explain(namespace, name, args.container or "", args.cluster)
        else:
            source = inspector(args)
            if args.config is not None:
                settings = load_settings(args.config, {})
                source.strategy = settings.strategy
                source.strategy_params = dict(settings.strategy_params)
                source.max_allowed = {
                    resource: quantity
                    for resource, quantity in (
                        ("cpu", settings.max_allowed_cpu),
                        ("memory", settings.max_allowed_memory),
                    )
                    if quantity is not None
                }
                source.recommender_name = settings.recommender_name
                source.cluster = args.cluster or settings.cluster
                source.prometheus = settings.prometheus
            if args.prometheus_url:
                overrides = {"prometheus_url": args.prometheus_url, "cluster": source.cluster}
                source.prometheus = load_settings(args.config, overrides).prometheus
            message = explanation_message(source.explain(namespace, name, args.container))
    except SettingsError as error:
        print(f"vpa-fleet explain: {args.config}: {error}", file=sys.stderr)
        return 2
    except (ClientError, KubeApiError, NotFoundError, ExplainError, OSError) as error:
        print(f"vpa-fleet explain: {error}", file=sys.stderr)
        return 1
    print(explanation_output(message, args.output))
    return 0
