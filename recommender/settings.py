"""Settings of `vpa-fleet run`: one pydantic model, filled from flags, environment, a YAML file.

`load_settings` merges, highest precedence first:

1. flags (`overrides`): keys are field names, dotted for nested fields
   (`prometheus.connection.url`, `ray.num_cpus`); a `None` value is a flag not given;
2. the environment: `VPA_FLEET_<FIELD>`, nested fields joined by `__`
   (`VPA_FLEET_RAY__NUM_CPUS=2`, `VPA_FLEET_PROMETHEUS__CONNECTION__URL=...`); a nested
   section may also be given whole as JSON (`VPA_FLEET_STRATEGY_PARAMS='{"...": 0.95}'`),
   and `VPA_FLEET_NAMESPACES` is a comma-separated list. Names are case-insensitive;
   `VPA_FLEET_*` variables that name no setting are ignored (the testbed's `VPA_FLEET_CACHE`);
3. the YAML config file, a mapping of the same field names;
4. the defaults below.

Nested sections merge key by key across sources: a file may give the Prometheus connection and
the environment only its bearer token. `prometheus_url` is a shortcut for
`prometheus.connection.url` in every source (`VPA_FLEET_PROMETHEUS_URL`) and has its source's
precedence.

Some values follow others: `prometheus.cluster` is the top-level `cluster` and
`prometheus.history_s` is `history_days`; setting either to something else is an error. A
strategy's parameters are validated by the strategy registry when the settings load, and
`strategy_params` then holds them converted to their types.

Every problem is reported at once, as `<dotted.field>: <what is wrong> (got <value>)`, with
the source that gave the value when it was not a default. Secrets are never echoed: not in
errors and not in `describe`, which prints the effective settings at start.
"""

from __future__ import annotations

import copy
import json
import os
import re
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal, NoReturn, Self

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings import SettingsError as SourceError

from analytics.quantity import parse_quantity
from analytics.sources.prometheus import PrometheusSourceConfig
from analytics.sources.promql import LabelMatcher
from analytics.strategies import get_strategy

__all__ = [
    "ENV_PREFIX",
    "SERVICE_ACCOUNT_NAMESPACE_FILE",
    "ActuatorSettings",
    "LeaderElectionSettings",
    "MetricsSettings",
    "RaySettings",
    "Settings",
    "SettingsError",
    "describe",
    "load_settings",
]

ENV_PREFIX: Final = "VPA_FLEET_"
ENV_DELIMITER: Final = "__"
PROMETHEUS_URL_SHORTCUT: Final = "prometheus_url"

SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
"""The namespace of the pod we run in, when we run in a cluster."""

LOG_LEVELS: Final = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
RAY_MIN_OBJECT_STORE_BYTES: Final = 75 * 1024**2
"""Ray refuses a smaller object store."""

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_URL_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):[^@/\s]*@")
_SENSITIVE_NAME = re.compile(
    r"auth|token|secret|passw|cookie|api[-_]?key|credential|session|signature", re.IGNORECASE
)
_SECRET_FIELDS: Final = frozenset({"bearer_token", "password"})
_MASK: Final = "***"
_MAX_SHOWN: Final = 200


class SettingsError(ValueError):
    """Settings that do not load. `problems` holds one line per problem, each naming its field
    (or the config file) as `<dotted.field>: <what is wrong> (got <value>)`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid settings:\n" + "\n".join(f"  {p}" for p in problems))


# --- secrets ------------------------------------------------------------------------------


def _mask_url(text: str) -> str:
    """`https://user:pw@host` -> `https://user:***@host`, anywhere in the text."""
    return _URL_USERINFO.sub(rf"\g<head>:{_MASK}@", text)


def _is_sensitive(path: tuple[str, ...]) -> bool:
    """Whether the value at this path is a secret: a secret field, or a header whose name
    sounds like credentials (`Authorization`, `X-Api-Key`, ...)."""
    if not path:
        return False
    if path[-1] in _SECRET_FIELDS:
        return True
    return len(path) >= 2 and path[-2] == "headers" and bool(_SENSITIVE_NAME.search(path[-1]))


def _masked(value: object, path: tuple[str, ...] = ()) -> object:
    """The value with every secret inside it replaced by `***`."""
    if isinstance(value, SecretStr) or (_is_sensitive(path) and value is not None):
        return _MASK
    if isinstance(value, str):
        return _mask_url(value)
    if isinstance(value, Mapping):
        return {k: _masked(v, (*path, str(k))) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_masked(v, path) for v in value)
    if isinstance(value, BaseModel):
        return _masked({name: getattr(value, name) for name in type(value).model_fields}, path)
    return value


def _shown(value: object, path: tuple[str, ...]) -> str:
    text = repr(_masked(value, path))
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


# --- errors raised inside validators ------------------------------------------------------

Problem = tuple[str, str, object]
"""(dotted field, what is wrong, the value given); the value `_NOT_SHOWN` is not echoed. The
field "" is the validated field itself."""

_NOT_SHOWN: Final = object()


def _fail(problems: list[Problem], *, absolute: bool = False) -> NoReturn:
    """Raise from a validator one error that stands for several problems, each with its own
    field: relative to the validated field, or from the top when `absolute`."""
    summary = "; ".join(f"{field}: {what}" for field, what, _ in problems)
    raise PydanticCustomError(
        "settings", "{summary}", {"summary": summary, "problems": problems, "absolute": absolute}
    )


# --- the model ----------------------------------------------------------------------------


def _namespace_list(value: object) -> object:
    """Namespaces as a list, a JSON list or comma-separated text (`"a,b"`)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                raise ValueError("not a JSON list of namespaces") from None
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _in_cluster_namespace() -> str | None:
    try:
        namespace = SERVICE_ACCOUNT_NAMESPACE_FILE.read_text().strip()
    except OSError:
        return None
    return namespace or None


class SafetySettings(BaseModel):
    """Guards on how recommendations move from one write to the next (recommender/vpa/safety.py).
    Off by default: the `vpa` strategy then writes exactly what the stock recommender would."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_increase: float | None = Field(
        default=None, ge=0, description="largest relative rise of a target per write (0.5: 1.5x)"
    )
    max_decrease: float | None = Field(
        default=None, ge=0, le=1, description="largest relative fall of a target per write"
    )
    memory_peak_margin: float | None = Field(
        default=None,
        ge=0,
        description="memory is not lowered below the observed peak times (1 + this)",
    )


class ActuatorSettings(BaseModel):
    """The fallback actuator (recommender/actuator, docs/actuation.md): rollouts of workloads
    whose in-place resize the stock updater cannot complete. Off by default; a
    RecommenderPolicy may override most fields for the VPAs it governs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=False, description="run the actuator after each tick")
    dry_run: bool = Field(
        default=False, description="decide, log, audit and report, but change no workload"
    )
    mode: Literal["patch", "restart-annotation"] = Field(
        default="patch",
        description="patch: the pod template's resources; restart-annotation: "
        "kubectl.kubernetes.io/restartedAt on the template (needs the VPA admission controller)",
    )
    deferred_timeout_s: float = Field(
        default=600, ge=0, description="seconds a resize may stay Deferred before a rollout"
    )
    max_rollouts_per_cluster: int = Field(
        default=2, ge=0, description="rollouts under way at a time in the cluster"
    )
    max_rollouts_per_namespace: int = Field(
        default=1, ge=0, description="rollouts under way at a time in one namespace"
    )
    cooldown_s: float = Field(
        default=1800, ge=0, description="seconds after a rollout before the same workload again"
    )
    memory_margin: float = Field(
        default=0.15,
        ge=0,
        description="a memory decrease stops at the observed peak times (1 + this)",
    )
    updater_min_replicas: int = Field(
        default=2,
        ge=1,
        description="the stock updater's --min-replicas: smaller groups are the actuator's",
    )
    infeasible_grace_s: float = Field(
        default=300,
        ge=0,
        description="InPlaceOrRecreate: seconds an Infeasible resize of a group the updater "
        "handles is left to its eviction before a rollout",
    )
    boot_memory_restart: bool = Field(
        default=True,
        description="runtimes that read memory at boot (JVM, Node, PostgreSQL, Redis, "
        "Gunicorn) get memory changes through a restart, never in place",
    )
    admission_controller_namespace: str = Field(
        default="kube-system",
        description="where the VPA admission controller keeps its status Lease",
    )
    event_repeat_s: float = Field(
        default=600, gt=0, description="seconds before a repeated Event is counted again"
    )


class LeaderElectionSettings(BaseModel):
    """Leader election on a `coordination.k8s.io/v1` Lease: with several replicas, only the
    holder writes. After validation `lease_namespace` and `identity` are never None."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        default=False, description="elect a leader; off means this replica always writes"
    )
    lease_name: str = Field(default="vpa-fleet", description="name of the Lease object")
    lease_namespace: str | None = Field(
        default=None,
        validate_default=True,
        description="namespace of the Lease; default: the namespace this pod runs in "
        "(from its service account), else 'default'",
    )
    identity: str | None = Field(
        default=None,
        validate_default=True,
        description="holder identity written into the Lease; default: <hostname>_<pid>",
    )
    lease_duration_s: int = Field(
        default=15, gt=0, description="seconds after the last renewal when others may take over"
    )
    renew_interval_s: float = Field(
        default=5, gt=0, description="seconds between renewals (less than lease_duration_s)"
    )

    @field_validator("lease_name")
    @classmethod
    def _lease_name(cls, name: str) -> str:
        if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
            raise ValueError("not a valid object name (lowercase DNS subdomain)")
        return name

    @field_validator("lease_namespace")
    @classmethod
    def _lease_namespace(cls, namespace: str | None) -> str:
        if namespace is None:
            return _in_cluster_namespace() or "default"
        if len(namespace) > 63 or not _DNS_LABEL.fullmatch(namespace):
            raise ValueError("not a valid namespace name (lowercase DNS label)")
        return namespace

    @field_validator("identity")
    @classmethod
    def _identity(cls, identity: str | None) -> str:
        if identity is None:
            return f"{socket.gethostname()}_{os.getpid()}"
        if not identity.strip():
            raise ValueError("must not be empty")
        return identity

    @model_validator(mode="after")
    def _renew_before_expiry(self) -> Self:
        if self.renew_interval_s >= self.lease_duration_s:
            _fail(
                [
                    (
                        "renew_interval_s",
                        f"must be less than lease_duration_s ({self.lease_duration_s})",
                        self.renew_interval_s,
                    )
                ]
            )
        return self


class RaySettings(BaseModel):
    """Where the computation runs: an embedded local Ray in this process (no address, the
    default), or an existing Ray cluster."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str | None = Field(
        default=None,
        description="address of an existing Ray cluster (host:port of its GCS, 'auto', or "
        "ray://host:port); none: start an embedded local Ray in this process",
    )
    num_cpus: int | None = Field(
        default=None, ge=1, description="CPUs of the embedded Ray; default: the machine's"
    )
    object_store_bytes: int | None = Field(
        default=None,
        ge=RAY_MIN_OBJECT_STORE_BYTES,
        description="object store of the embedded Ray, bytes; default: Ray's share of memory",
    )
    dashboard: bool = Field(default=True, description="serve the embedded Ray's dashboard")
    dashboard_port: int = Field(
        default=8265, ge=1, le=65535, description="port of the dashboard, on 127.0.0.1"
    )
    namespace: str = Field(
        default="vpa-fleet", min_length=1, description="Ray namespace of our named actors"
    )
    temp_dir: Path | None = Field(
        default=None,
        description="temporary directory of the embedded Ray (absolute, short: Ray's unix "
        "sockets live there); default: Ray's own",
    )
    connect_timeout_s: float = Field(
        default=30, gt=0, description="how long to try to reach an existing Ray cluster"
    )

    @field_validator("address")
    @classmethod
    def _address(cls, address: str | None) -> str | None:
        if address is None:
            return None
        address = address.strip()
        if not address:
            raise ValueError("must not be empty (leave it unset for an embedded Ray)")
        if address == "local":
            raise ValueError("leave it unset for an embedded Ray")
        return address

    @field_validator("temp_dir")
    @classmethod
    def _temp_dir(cls, temp_dir: Path | None) -> Path | None:
        if temp_dir is not None and not temp_dir.is_absolute():
            raise ValueError("must be an absolute path")
        return temp_dir

    @model_validator(mode="after")
    def _embedded_only(self) -> Self:
        if self.address is None:
            return self
        problems: list[Problem] = [
            (name, "applies to an embedded Ray only, but ray.address is set", getattr(self, name))
            for name in ("num_cpus", "object_store_bytes", "temp_dir")
            if getattr(self, name) is not None
        ]
        if problems:
            _fail(problems)
        return self


class MetricsSettings(BaseModel):
    """The recommender's own Prometheus metrics (`/metrics`, see docs/report.md), served by
    `vpa-fleet run` on one cluster (the fleet's actors export theirs through Ray)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="serve /metrics")
    address: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="address to listen on (0.0.0.0 for every interface, as in a pod)",
    )
    port: int = Field(default=9847, ge=0, le=65535, description="port; 0: any free port")
    liveness_timeout_s: float = Field(
        default=900.0,
        gt=0,
        description="/healthz fails once the loop made no progress (a tick, or a wait for the "
        "Lease) for this long; above the longest tick (a first tick over thousands of VPAs "
        "takes minutes)",
    )


_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class ApiSettings(BaseModel):
    """The read-only gRPC inspection API served by `vpa-fleet run` (recommender/api). Off by
    default; on a non-loopback address it needs a bearer token or mutual TLS."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=False, description="serve the gRPC inspection API")
    listen: str = Field(
        default="127.0.0.1:50051", description="host:port to listen on ([::]:50051: everywhere)"
    )
    token_file: Path | None = Field(
        default=None, description="file holding the bearer token clients must send"
    )
    tls_cert_file: Path | None = Field(default=None, description="server certificate (PEM)")
    tls_key_file: Path | None = Field(default=None, description="key of the certificate (PEM)")
    client_ca_file: Path | None = Field(
        default=None, description="CA of client certificates: clients must present one (mTLS)"
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, listen: str) -> str:
        host, separator, port = listen.strip().rpartition(":")
        if not separator or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("expected host:port, e.g. 127.0.0.1:50051 or [::]:50051")
        return listen.strip()

    @model_validator(mode="after")
    def _secured(self) -> Self:
        problems: list[Problem] = []
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            problems.append(
                ("tls_key_file", "tls_cert_file and tls_key_file go together", self.tls_key_file)
            )
        if self.client_ca_file is not None and self.tls_cert_file is None:
            problems.append(
                ("client_ca_file", "needs tls_cert_file and tls_key_file", self.client_ca_file)
            )
        host = self.listen.rpartition(":")[0]
        unauthenticated = self.token_file is None and self.client_ca_file is None
        if self.enabled and unauthenticated and host not in _LOOPBACK_HOSTS:
            problems.append(
                (
                    "token_file",
                    f"listening on {self.listen} beyond loopback needs a token_file "
                    "(or client_ca_file)",
                    None,
                )
            )
        if problems:
            _fail(problems)
        return self


def _positive_quantity(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    if parse_quantity(text) <= 0:
        raise ValueError("must be a positive quantity")
    return text


class Settings(BaseSettings):
    """Everything `vpa-fleet run` needs to know. Load it with `load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        frozen=True,
        extra="forbid",
    )

    recommender_name: str = Field(
        default="vpa-fleet",
        min_length=1,
        description="VPAs whose spec.recommenders names this are ours",
    )
    cluster: str = Field(
        default="default", min_length=1, description="this cluster's name in our keys"
    )
    kubeconfig: Path | None = Field(
        default=None,
        description="kubeconfig file; default: in-cluster config, else $KUBECONFIG or "
        "~/.kube/config",
    )
    context: str | None = Field(default=None, description="kubeconfig context; default: current")
    namespaces: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_namespace_list)] = Field(
        default=(), description="namespaces to watch; empty: all namespaces"
    )
    tick_interval_s: float = Field(default=60, gt=0, description="seconds between two ticks")
    history_days: float = Field(
        default=8, gt=0, description="days of usage history read at start (prometheus.history_s)"
    )
    checkpoint_interval_s: float = Field(
        default=600, gt=0, description="seconds between two checkpoints of the histograms"
    )
    target_refresh_s: float = Field(
        default=300,
        ge=0,
        description="seconds a VPA's resolved targetRef is reused while the VPA is unchanged "
        "(0: resolve every tick)",
    )
    kube_api_qps: float = Field(
        default=50, gt=0, description="requests per second to the API server, on average"
    )
    kube_api_burst: int = Field(
        default=100, ge=1, description="requests to the API server at once, before kube_api_qps"
    )
    status_change_threshold: float = Field(
        default=0.0,
        ge=0,
        description="relative change of a recommendation that triggers a status write; "
        "0 writes every change",
    )
    strategy: str = Field(default="vpa", description="recommendation strategy (vpa, percentile)")
    strategy_params: dict[str, float | int | str | bool] = Field(
        default_factory=dict, description="parameters of the strategy, by name"
    )
    max_allowed_cpu: str | None = Field(
        default=None, description="CPU cap of every recommendation (quantity, e.g. '4')"
    )
    max_allowed_memory: str | None = Field(
        default=None, description="memory cap of every recommendation (quantity, e.g. '16Gi')"
    )
    prometheus: PrometheusSourceConfig | None = Field(
        default=None,
        description="where usage history comes from; its cluster and history_s follow the "
        "top-level cluster and history_days",
    )
    safety: SafetySettings = Field(
        default_factory=SafetySettings, description="guards on how recommendations move"
    )
    actuator: ActuatorSettings = Field(
        default_factory=ActuatorSettings,
        description="the fallback actuator (docs/actuation.md); off by default",
    )
    leader_election: LeaderElectionSettings = Field(
        default_factory=LeaderElectionSettings, description="leader election among replicas"
    )
    ray: RaySettings = Field(default_factory=RaySettings, description="where Ray runs")
    api: ApiSettings = Field(
        default_factory=ApiSettings, description="the read-only gRPC inspection API"
    )
    metrics: MetricsSettings = Field(
        default_factory=MetricsSettings, description="the recommender's own /metrics"
    )
    log_level: str = Field(default="INFO", description="CRITICAL, ERROR, WARNING, INFO or DEBUG")
    once: bool = Field(default=False, description="run one tick and exit")
    fleet: Path | None = Field(
        default=None,
        description="fleet file (clusters, their Prometheus, actors): run the fleet on Ray "
        "instead of one cluster; prometheus is then per cluster, and kubeconfig and context "
        "name the home cluster (kubeconfig Secrets, the Lease)",
    )

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # Secrets masked, so that logging the settings by accident shows none.
        for name in type(self).model_fields:
            yield name, _masked(getattr(self, name), (name,))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """`Settings()` reads keyword arguments, then this process's environment (with the
        `prometheus_url` shortcut); no .env files, no secrets directory."""
        return init_settings, _EnvironmentSource(settings_cls, os.environ)

    @model_validator(mode="before")
    @classmethod
    def _shortcut(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and PROMETHEUS_URL_SHORTCUT in data:
            data = copy.deepcopy(dict(data))
            problems = _fold_shortcut(data)
            if problems:
                _fail(problems, absolute=True)
        return data

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, namespaces: tuple[str, ...]) -> tuple[str, ...]:
        bad = [n for n in namespaces if len(n) > 63 or not _DNS_LABEL.fullmatch(n)]
        if bad:
            raise ValueError(f"not valid namespace names (lowercase DNS labels): {bad}")
        return tuple(dict.fromkeys(namespaces))

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, name: str) -> str:
        get_strategy(name)  # ValueError listing the known strategies
        return name

    @field_validator("strategy_params")
    @classmethod
    def _strategy_params(
        cls, params: dict[str, float | int | str | bool], info: ValidationInfo
    ) -> dict[str, float | int | str | bool]:
        name = info.data.get("strategy")
        if name is None:  # the strategy itself is wrong; that error says so
            return params
        model = get_strategy(name).params_model
        try:
            parsed = model.model_validate(params)
        except ValidationError as error:
            _fail(
                [
                    (
                        ".".join(str(part) for part in item["loc"]),
                        f"not a parameter of strategy {name!r}"
                        if item["type"] == "extra_forbidden"
                        else f"{_message(item['msg'])} (strategy {name!r})",
                        _NOT_SHOWN if item["type"] == "extra_forbidden" else item["input"],
                    )
                    for item in error.errors()
                ]
            )
        return {key: getattr(parsed, key) for key in params}

    @field_validator("max_allowed_cpu", "max_allowed_memory")
    @classmethod
    def _quantity(cls, text: str | None) -> str | None:
        return _positive_quantity(text)

    @field_validator("prometheus")
    @classmethod
    def _prometheus(
        cls, config: PrometheusSourceConfig | None, info: ValidationInfo
    ) -> PrometheusSourceConfig | None:
        cluster, days = info.data.get("cluster"), info.data.get("history_days")
        if config is None or cluster is None or days is None:
            return config
        history_s = round(days * 86_400)
        problems: list[Problem] = []
        if "cluster" in config.model_fields_set and config.cluster != cluster:
            problems.append(
                (
                    "prometheus.cluster",
                    f"follows the top-level cluster ({cluster!r}); set cluster instead",
                    config.cluster,
                )
            )
        if "history_s" in config.model_fields_set and config.history_s != history_s:
            problems.append(
                (
                    "prometheus.history_s",
                    f"follows history_days ({history_s} s); set history_days instead",
                    config.history_s,
                )
            )
        if history_s < config.step_s:
            problems.append(
                (
                    "history_days",
                    f"{history_s} s of history is shorter than prometheus.step_s "
                    f"({config.step_s} s)",
                    days,
                )
            )
        if problems:
            _fail(problems, absolute=True)
        fields = {name: getattr(config, name) for name in type(config).model_fields}
        return PrometheusSourceConfig.model_validate(
            {**fields, "cluster": cluster, "history_s": history_s}
        )

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, level: object) -> object:
        if isinstance(level, str):
            level = level.strip().upper()
            if level not in LOG_LEVELS:
                raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
        return level


# --- sources ------------------------------------------------------------------------------


def _fold_shortcut(data: dict[str, Any]) -> list[Problem]:
    """Move `prometheus_url` of one source into `prometheus.connection.url` of the same
    source (in place); problems when that source also gives a different URL."""
    url = data.pop(PROMETHEUS_URL_SHORTCUT)
    if url is None:
        return []
    prometheus = data.setdefault("prometheus", {})
    if prometheus is None:
        prometheus = data["prometheus"] = {}
    if not isinstance(prometheus, dict):
        return [(PROMETHEUS_URL_SHORTCUT, "cannot be combined with a whole prometheus", url)]
    connection = prometheus.setdefault("connection", {})
    if not isinstance(connection, dict):
        return [(PROMETHEUS_URL_SHORTCUT, "cannot be combined with a whole connection", url)]
    if connection.get("url", url) != url:
        return [
            (
                PROMETHEUS_URL_SHORTCUT,
                "conflicts with prometheus.connection.url given in the same place "
                f"({_shown(connection['url'], ('url',))})",
                url,
            )
        ]
    connection["url"] = url
    return []


class _EnvironmentSource(EnvSettingsSource):
    """`VPA_FLEET_*` variables of a given mapping (this process's environment, or one given
    for a test), with the `prometheus_url` shortcut."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Names are case-insensitive (the source matches lower-cased names).
        return {name.lower(): value for name, value in self._environ.items()}

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        url = self.env_vars.get(f"{ENV_PREFIX}{PROMETHEUS_URL_SHORTCUT}".lower())
        if url is not None:
            data[PROMETHEUS_URL_SHORTCUT] = url
            problems = _fold_shortcut(data)
            if problems:
                raise SettingsError([_line(p, "environment") for p in problems])
        return data


def _env_name(path: tuple[str, ...]) -> str:
    return ENV_PREFIX + ENV_DELIMITER.join(path).upper()


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SettingsError(
            [f"{path}: cannot read the settings file ({error.strerror or error})"]
        ) from None
    except UnicodeDecodeError:
        raise SettingsError([f"{path}: the settings file is not UTF-8 text"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        # Not str(error): its excerpt of the file could show a secret.
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(error, "problem", None) or "cannot parse"
        raise SettingsError([f"{path}: not valid YAML{where}: {what}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
        raise SettingsError(
            [f"{path}: expected a mapping of setting names to values, got {type(data).__name__}"]
        )
    return data


def _nest_overrides(overrides: Mapping[str, object]) -> tuple[dict[str, Any], list[str]]:
    """`{"a.b": 1}` -> `{"a": {"b": 1}}`; `None` values (flags not given) are left out."""
    nested: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in overrides.items():
        if value is None:
            continue
        parts = key.split(".")
        if not all(parts):
            problems.append(f"{key}: not a setting name")
            continue
        node = nested
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                problems.append(f"{key}: conflicts with {'.'.join(parts[: depth + 1])}")
                break
            node = child
        else:
            last = parts[-1]
            if isinstance(node.get(last), dict) and isinstance(value, Mapping):
                node[last] = _deep_merge(node[last], dict(value))
            elif last in node:
                problems.append(f"{key}: given twice")
            else:
                node[last] = copy.deepcopy(value)
    return nested, problems


def _deep_merge(low: dict[str, Any], high: dict[str, Any]) -> dict[str, Any]:
    merged = dict(low)
    for key, value in high.items():
        if isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# --- reporting ----------------------------------------------------------------------------


def _message(msg: str) -> str:
    return _mask_url(msg.removeprefix("Value error, ").removeprefix("Assertion failed, "))


def _line(problem: Problem, origin: str | None = None) -> str:
    field, what, given = problem
    path = tuple(field.split("."))
    got = "" if given is _NOT_SHOWN else f" (got {_shown(given, path)})"
    where = f" [{origin}]" if origin else ""
    return f"{field}: {_mask_url(what)}{got}{where}"


def _is_union_tag(part: object) -> bool:
    """Parts of an error location that name a member of a union, not a field."""
    return isinstance(part, str) and ("[" in part or part in ("float", "int", "str", "bool"))


Layer = tuple[str, dict[str, Any]]
"""A source's values, with how to name it in errors ("flags", "environment", the file)."""


def _origin(path: tuple[str, ...], layers: list[Layer]) -> str | None:
    """Which source gave the value at the path (the first, by precedence, that has it)."""
    for name, data in layers:
        node: object = data
        for part in path:
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            return f"environment {_env_name(path)}" if name == "environment" else name
    return None


def _expanded(item: ErrorDetails, loc: tuple[str, ...], layers: list[Layer]) -> list[str]:
    """The lines of an error raised by `_fail`: one per problem it carries."""
    context = item.get("ctx", {})
    lines = []
    for field, what, given in context.get("problems", []):
        full = field if context.get("absolute") else ".".join((*loc, field) if field else loc)
        lines.append(_line((full, what, given), _origin(tuple(full.split(".")), layers)))
    return lines


def _problems(error: ValidationError, layers: list[Layer]) -> list[str]:
    lines: list[str] = []
    for item in error.errors(include_url=False):
        loc = tuple(str(part) for part in item["loc"] if not _is_union_tag(part))
        if item["type"] == "settings":
            lines += _expanded(item, loc, layers)
            continue
        field = ".".join(loc) or "(settings)"
        given: object = item["input"]
        if item["type"] == "extra_forbidden":
            what, given = "unknown setting", _NOT_SHOWN
        elif item["type"] == "missing":
            what, given = "required", _NOT_SHOWN
        else:
            what = _message(item["msg"])
        lines.append(_line((field, what, given), _origin(loc, layers)))
    return list(dict.fromkeys(lines))


# --- entry points -------------------------------------------------------------------------


def load_settings(
    config_file: Path | None = None,
    overrides: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """The settings from flags (`overrides`) > environment (`env`, default this process's)
    > YAML `config_file` > defaults. Raises `SettingsError` listing every problem."""
    problems: list[str] = []
    layers: list[Layer] = []

    flags, flag_problems = _nest_overrides(overrides or {})
    problems += flag_problems
    if PROMETHEUS_URL_SHORTCUT in flags:
        problems += [_line(p, "flags") for p in _fold_shortcut(flags)]
    layers.append(("flags", flags))

    try:
        from_env = _EnvironmentSource(Settings, os.environ if env is None else env)()
    except SourceError as error:
        field = re.search(r'field "([^"]+)"', str(error))
        name = field[1] if field else "(environment)"
        problems.append(f"{name}: {_env_name((name,))} is not valid JSON")
        from_env = {}
    except SettingsError as error:
        problems += error.problems
        from_env = {}
    layers.append(("environment", from_env))

    if config_file is not None:
        from_file = _read_config_file(config_file)
        if PROMETHEUS_URL_SHORTCUT in from_file:
            problems += [_line(p, str(config_file)) for p in _fold_shortcut(from_file)]
        layers.append((str(config_file), from_file))

    if problems:
        raise SettingsError(problems)
    sources = tuple(InitSettingsSource(Settings, init_kwargs=data) for _, data in layers)
    try:
        return Settings(_build_sources=(sources, {}))
    except ValidationError as error:
        raise SettingsError(_problems(error, layers)) from None


def _plain(value: object, path: tuple[str, ...] = ()) -> object:
    """Settings as plain YAML-able values, secrets masked."""
    if isinstance(value, SecretStr) or (_is_sensitive(path) and value is not None):
        return _MASK
    if isinstance(value, BaseModel):
        return {
            name: _plain(getattr(value, name), (*path, name)) for name in type(value).model_fields
        }
    if isinstance(value, Mapping):
        return {str(k): _plain(v, (*path, str(k))) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if value and all(isinstance(v, LabelMatcher) for v in value):
            return ",".join(v.render() for v in value if isinstance(v, LabelMatcher))
        return [_plain(v, path) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return _mask_url(value)
    return value


def describe(settings: Settings) -> str:
    """The effective settings as YAML, for printing at start: secrets show as `***`
    (SecretStr values, passwords in URLs, credential-like headers); token files as paths."""
    text: str = yaml.safe_dump(
        _plain(settings), sort_keys=False, default_flow_style=False, allow_unicode=True
    )
    return text
