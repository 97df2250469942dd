"""`vpa-fleet inspect`: our VPAs as a table (or JSON, YAML, CSV): workload, container, current
requests, target and bounds, savings. Directly against a cluster (kubeconfig, like kubectl), or
through the gRPC API of a running recommender with --server."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from recommender.api.client import ClientError, ClientTls, InspectionClient
from recommender.api.generated.vpafleet.v1 import inspection_pb2 as pb
from recommender.inspection.render import FORMATS, recommendations_text
from recommender.inspection.source import ClusterInspector
from recommender.kube.rest import KubeApiError, KubeClient, load_api_client

TOKEN_ENV = "VPA_FLEET_API_TOKEN"


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of both ways in: a cluster (kubectl's) or the API (--server)."""
    cluster = parser.add_argument_group("directly against a cluster")
    cluster.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube)")
    cluster.add_argument("--context", help="kubeconfig context (default: the current one)")
    cluster.add_argument(
        "--recommender-name", default="vpa-fleet", help="VPAs naming this are ours (vpa-fleet)"
    )
    api = parser.add_argument_group("through the gRPC API of `vpa-fleet run`")
    api.add_argument("--server", metavar="HOST:PORT", help="the API's address")
    api.add_argument(
        "--token-file", type=Path, help=f"file holding the bearer token (or ${TOKEN_ENV})"
    )
    api.add_argument(
        "--token", help="the bearer token itself (visible to other users in process lists)"
    )
    api.add_argument("--tls", action="store_true", help="connect with TLS")
    api.add_argument("--ca-file", type=Path, help="CA of the server's certificate (implies --tls)")
    api.add_argument("--cert-file", type=Path, help="client certificate for mutual TLS")
    api.add_argument("--key-file", type=Path, help="key of the client certificate")
    parser.add_argument(
        "--cluster", default="", help="cluster name (shown; with --server, the cluster to ask)"
    )


def client(args: argparse.Namespace) -> InspectionClient:
    token = os.environ.get(TOKEN_ENV) or None
    if args.token_file is not None:
        token = args.token_file.read_text(encoding="utf-8").strip()
    if args.token:
        token = args.token
    secure = args.tls or args.ca_file or args.cert_file
    tls = ClientTls(args.ca_file, args.cert_file, args.key_file) if secure else None
    return InspectionClient(args.server, token=token, tls=tls)


def context_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace of the kubeconfig context (kubectl's default for -n), else "default"."""
    from kubernetes import config  # noqa: PLC0415 - only the direct mode needs it

    try:
        contexts, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=kubeconfig
        )
    except (config.ConfigException, OSError):
        return "default"
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else "default"


def inspector(args: argparse.Namespace) -> ClusterInspector:
    kube = KubeClient(load_api_client(args.kubeconfig, args.context))
    return ClusterInspector(
        cluster=args.cluster or args.context or "default",
        kube=kube,
        recommender_name=args.recommender_name,
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="list our VPAs: requests, recommendation, bounds, savings",
        description="List the VPAs that name this recommender, one row per container: the "
        "workload, its current requests, the recommended target and bounds, and what the "
        "target saves over the requests (x pods). Reads the cluster directly (like kubectl), "
        "or asks a running recommender's gRPC API with --server.",
    )
    parser.add_argument("-n", "--namespace", help="this namespace (default: the context's)")
    parser.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    parser.add_argument("-l", "--selector", default="", help="label selector on the VPAs")
    parser.add_argument("-o", "--output", choices=FORMATS, default="table", help="output format")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress on stderr (shown on a terminal)"
    )
    add_connection_flags(parser)
    parser.set_defaults(func=_inspect)


def _progress(line: str) -> None:
    print(f"inspect: {line}", file=sys.stderr, flush=True)


def _inspect(args: argparse.Namespace) -> int:
    try:
        if args.server:
            namespace = "" if args.all_namespaces else (args.namespace or "")
            with client(args) as api:
                found: list[pb.Recommendation] = list(
                    api.recommendations(
                        cluster=args.cluster, namespace=namespace, label_selector=args.selector
                    )
                )
        else:
            namespace = (
                ""
                if args.all_namespaces
                else args.namespace or context_namespace(args.kubeconfig, args.context)
            )
            source = inspector(args)
            if not args.quiet and sys.stderr.isatty():
                source.progress = _progress
            found = source.recommendations(namespace, args.selector)
    except (ClientError, KubeApiError, OSError) as error:
        print(f"vpa-fleet inspect: {error}", file=sys.stderr)
        return 1
    print(recommendations_text(found, args.output))
    return 0
