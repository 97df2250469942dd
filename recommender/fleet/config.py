"""The fleet file: which clusters, how to reach each API server and Prometheus, which
namespaces, and how many ShardActors. Errors name the cluster and the field."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from analytics.sources.prometheus import PrometheusSourceConfig

__all__ = ["ClusterConfig", "FleetConfig", "FleetConfigError", "SecretKeyRef", "load_fleet"]

_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class FleetConfigError(ValueError):
    """A fleet file that cannot be used; one line per problem, naming cluster and field."""


class SecretKeyRef(BaseModel):
    """A kubeconfig held in a Secret of the cluster the recommender runs in (the home
    cluster: `--kubeconfig`/`--context`, in-cluster by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=253, pattern=_DNS_SUBDOMAIN)
    key: str = Field("kubeconfig", min_length=1, pattern=r"^[-._a-zA-Z0-9]+$")
    namespace: str | None = Field(
        None,
        max_length=63,
        pattern=_DNS_LABEL,
        description="default: the namespace the recommender runs in",
    )


class ClusterConfig(BaseModel):
    """One cluster of the fleet. `prometheus.cluster` follows `name`. Its API server is reached
    through `kubeconfig` (a file), `kubeconfig_secret` (a Secret of the home cluster), or, with
    neither, the in-cluster service account."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    kubeconfig: Path | None = Field(None, description="kubeconfig file; none: in-cluster")
    kubeconfig_secret: SecretKeyRef | None = Field(
        None, description="a Secret key holding the kubeconfig (credentials inline)"
    )
    context: str | None = None
    max_concurrent_passes: int | None = Field(
        None,
        ge=1,
        description="namespace passes (each one Prometheus query at a time) running at once "
        "on this cluster across all ShardActors; none: one per ShardActor holding its shards",
    )
    prometheus: PrometheusSourceConfig
    include: tuple[str, ...] = Field(("*",), description="namespace glob patterns to serve")
    exclude: tuple[str, ...] = Field((), description="namespace glob patterns to leave out")

    @model_validator(mode="before")
    @classmethod
    def _prometheus_cluster(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("prometheus"), dict):
            prometheus = dict(data["prometheus"])
            given = prometheus.get("cluster")
            if given is not None and given != data.get("name"):
                raise ValueError(
                    f"prometheus.cluster ({given!r}) follows the cluster's name; leave it out"
                )
            prometheus["cluster"] = data.get("name", "default")
            data = {**data, "prometheus": prometheus}
        return data

    @model_validator(mode="after")
    def _one_way_in(self) -> Self:
        if self.kubeconfig is not None and self.kubeconfig_secret is not None:
            raise ValueError(
                f"kubeconfig ({self.kubeconfig}) and kubeconfig_secret "
                f"({self.kubeconfig_secret.name}): give one of them"
            )
        return self

    def serves(self, namespace: str) -> bool:
        """Whether the namespace is one of this cluster's shards."""
        included = any(fnmatch.fnmatchcase(namespace, p) for p in self.include)
        return included and not any(fnmatch.fnmatchcase(namespace, p) for p in self.exclude)


class FleetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    clusters: tuple[ClusterConfig, ...] = Field(min_length=1)
    actors: int = Field(2, ge=1, description="number of ShardActors")
    tick_budget_s: float = Field(
        30.0,
        gt=0,
        description="how long a fleet tick waits for each cluster; a cluster still busy then "
        "is reported and not started again until it finishes",
    )

    @model_validator(mode="after")
    def _unique(self) -> Self:
        names = [c.name for c in self.clusters]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"cluster names must be unique; repeated: {twice}")
        return self

    def cluster(self, name: str) -> ClusterConfig:
        return next(c for c in self.clusters if c.name == name)


def _where(data: object, loc: tuple[int | str, ...]) -> str:
    """`clusters[1] (eu-west).prometheus.connection.url` for a validation error location."""
    parts: list[str] = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(part, int):
            label = f"[{part}]"
            if i > 0 and loc[i - 1] == "clusters" and isinstance(node, list) and part < len(node):
                item = node[part]
                if isinstance(item, dict) and "name" in item:
                    label += f" ({item['name']})"
            parts.append(label)
        else:
            parts.append(("." if parts else "") + part)
        node = _child(node, part)
    return "".join(parts) or "(fleet)"


def _child(node: object, part: int | str) -> object:
    if isinstance(node, list) and isinstance(part, int) and part < len(node):
        return node[part]
    if isinstance(node, dict):
        return node.get(part)
    return None


def load_fleet(path: Path) -> FleetConfig:
    """Read and validate a fleet file; FleetConfigError names the file, cluster and field."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise FleetConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise FleetConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise FleetConfigError(f"{path}: expected a mapping with 'clusters', got {data!r:.80}")
    try:
        return FleetConfig.model_validate(data)
    except ValidationError as error:
        lines = [
            f"{path}: {_where(data, tuple(e['loc']))}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            + ("" if e["type"] == "missing" else f" (got {e['input']!r:.80})")
            for e in error.errors()
        ]
        raise FleetConfigError("\n".join(lines)) from None
