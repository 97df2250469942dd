"""How the fleet reaches each cluster's API server: a kubeconfig file, a kubeconfig held in a
Secret of the home cluster (the one the recommender runs in), or the in-cluster service account.

A Secret's kubeconfig is read where it is used (in each actor), never sent through Ray and never
logged: errors say which cluster, Secret and key, and what is wrong, but quote nothing of the
Secret's content. Its credentials must be inline (`certificate-authority-data`,
`client-certificate-data`, `token`, ...): paths inside it would name files of some other machine.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import yaml
from kubernetes import config

from recommender.fleet.config import ClusterConfig, SecretKeyRef
from recommender.kube.rest import KubeApiError, KubeClient, load_api_client
from recommender.settings import SERVICE_ACCOUNT_NAMESPACE_FILE

__all__ = ["ClusterAccessError", "HomeCluster", "cluster_client", "parse_kubeconfig"]


class ClusterAccessError(RuntimeError):
    """A cluster's API server cannot be configured; the message names cluster and field."""


@dataclass(frozen=True)
class HomeCluster:
    """The cluster the recommender runs in: where kubeconfig Secrets (and the Lease) live.
    None for both: in-cluster, else $KUBECONFIG."""

    kubeconfig: str | None = None
    context: str | None = None

    def client(self) -> KubeClient:
        return KubeClient(load_api_client(self.kubeconfig, self.context))


def _where(cluster: ClusterConfig, ref: SecretKeyRef, namespace: str) -> str:
    return f"cluster {cluster.name}: kubeconfig_secret {namespace}/{ref.name} key {ref.key!r}"


def parse_kubeconfig(raw: bytes, where: str) -> dict[str, object]:
    """A kubeconfig's text as a mapping. Errors quote nothing of the text (it holds
    credentials): YAML errors give the line only."""
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ClusterAccessError(f"{where}: not UTF-8 text") from None
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 1 if error.problem_mark else "?"
        raise ClusterAccessError(f"{where}: not valid YAML (line {line})") from None
    except yaml.YAMLError:
        raise ClusterAccessError(f"{where}: not valid YAML") from None
    if not isinstance(data, dict) or not data.get("clusters"):
        raise ClusterAccessError(f"{where}: not a kubeconfig (no 'clusters' list)")
    return data


def _secret_namespace(ref: SecretKeyRef) -> str:
    if ref.namespace:
        return ref.namespace
    try:
        namespace = SERVICE_ACCOUNT_NAMESPACE_FILE.read_text().strip()
    except OSError:
        namespace = ""
    if not namespace:
        raise ClusterAccessError(
            "kubeconfig_secret.namespace: not given, and the recommender does not run in a "
            "cluster (no service account namespace): give the Secret's namespace"
        )
    return namespace


def _from_secret(cluster: ClusterConfig, ref: SecretKeyRef, home: HomeCluster) -> KubeClient:
    try:
        namespace = _secret_namespace(ref)
    except ClusterAccessError as error:
        raise ClusterAccessError(f"cluster {cluster.name}: {error}") from None
    where = _where(cluster, ref, namespace)
    try:
        secret = home.client().get(f"/api/v1/namespaces/{namespace}/secrets/{ref.name}")
    except KubeApiError as error:
        raise ClusterAccessError(f"{where}: cannot read the Secret: {error}") from None
    except Exception as error:  # the home API server unreachable or misconfigured
        raise ClusterAccessError(
            f"{where}: cannot read the Secret: {type(error).__name__}: {error}"
        ) from None
    encoded = (secret.get("data") or {}).get(ref.key)
    if encoded is None:
        keys = sorted(secret.get("data") or {})
        raise ClusterAccessError(f"{where}: the Secret has no such key (its keys: {keys})")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ClusterAccessError(f"{where}: the key's value is not base64") from None
    data = parse_kubeconfig(raw, where)
    try:
        api = config.new_client_from_config_dict(data, context=cluster.context)  # type: ignore[no-untyped-call]
    except config.ConfigException as error:
        # The library's messages name kubeconfig keys and contexts, not credentials.
        raise ClusterAccessError(f"{where}: unusable kubeconfig: {error}") from None
    except Exception as error:
        raise ClusterAccessError(f"{where}: unusable kubeconfig ({type(error).__name__})") from None
    return KubeClient(api)


def cluster_client(cluster: ClusterConfig, home: HomeCluster) -> KubeClient:
    """A client of the cluster's API server, configured the way its fleet entry says."""
    if cluster.kubeconfig_secret is not None:
        return _from_secret(cluster, cluster.kubeconfig_secret, home)
    kubeconfig = str(cluster.kubeconfig) if cluster.kubeconfig else None
    try:
        return KubeClient(load_api_client(kubeconfig, cluster.context))
    except Exception as error:
        raise ClusterAccessError(
            f"cluster {cluster.name}: kubeconfig {kubeconfig or '(in-cluster)'}: {error}"
        ) from None
