"""Usage history from a cluster's Prometheus: one range query per (namespace, metric, chunk).

`PrometheusHistory.fetch(namespace, start, end)` returns every container of the namespace as a
usage frame (the schema of `analytics.usage` without `workload`, which the caller maps from
pods) and its OOM kills. Queries scale with namespaces, not pods: each query selects the whole
namespace, and a window is cut into chunks of at most `max_points_per_series` points so that no
series exceeds Prometheus' limit (11,000 points per series per query).

Requests go through `requests`, one HTTP call per chunk: prometheus-api-client's
`custom_query_range` retries 5xx answers with a sleeping backoff (several calls per chunk, a
failing namespace holds its caller for seconds) and reduces error answers to the repr of their
bytes; here a failure is one `PrometheusQueryError` naming the URL, namespace and query, and
the caller retries at its next tick.

Bad answers never crash and never become samples: bad samples are dropped and counted by
reason (`analytics.sources.promql.matrix_samples`); a failed query raises for its namespace
only, so the caller goes on with the others.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, Final, Self

import polars as pl
import requests
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from analytics.sources.promql import (
    KILL_SCHEMA,
    LABEL_NAME,
    SAMPLE_SCHEMA,
    AnswerError,
    Chunk,
    LabelMatcher,
    LabelNames,
    decode_matrix,
    evaluation_grid,
    format_duration,
    matrix_samples,
    merge_kills,
    oom_counter_kills,
    parse_duration,
    parse_matchers,
    plan_chunks,
    reason_kills,
    selector,
    usage_table,
)

__all__ = [
    "KILL_COLUMNS",
    "USAGE_COLUMNS",
    "LabelMapping",
    "MetricNames",
    "NamespaceHistory",
    "PrometheusConfigError",
    "PrometheusConnection",
    "PrometheusHistory",
    "PrometheusQueryError",
    "PrometheusSourceConfig",
    "load_config",
]

USAGE_COLUMNS: Final = ("timestamp", "cluster", "namespace", "pod", "container", "cpu", "memory")
"""Columns of `NamespaceHistory.samples`: `analytics.usage`'s schema without `workload`."""

KILL_COLUMNS: Final = ("timestamp", "cluster", "namespace", "pod", "container")
"""Columns of `NamespaceHistory.oom_kills`."""

TIMESTAMP: Final = pl.Datetime("ms", "UTC")

Seconds = Annotated[int, BeforeValidator(parse_duration)]
"""Whole seconds, given as a number or a Prometheus duration ("5m", "8d")."""


def _matchers(value: object) -> object:
    if isinstance(value, str):
        return parse_matchers(value)
    if isinstance(value, list | tuple):
        return tuple(LabelMatcher.parse(v) if isinstance(v, str) else v for v in value)
    return value


Matchers = Annotated[tuple[LabelMatcher, ...], BeforeValidator(_matchers)]
"""Label matchers, given as PromQL text (`job="kubelet",metrics_path="/metrics/cadvisor"`)
or as a list of `LabelMatcher` (or of single-matcher strings)."""


class PrometheusConfigError(ValueError):
    """A configuration that does not validate; the message names the field."""


class PrometheusConnection(BaseModel):
    """Where Prometheus is and how to authenticate to it.

    At most one of bearer token (inline or file, the file is re-read at every query so that
    rotated service-account tokens work) and basic auth. `headers` go with every request
    (e.g. `X-Scope-OrgID` for Mimir/Cortex tenants). `timeout_s` bounds each HTTP call (seconds)
    and is passed to Prometheus as the query's evaluation timeout.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    bearer_token: SecretStr | None = None
    bearer_token_file: Path | None = None
    username: str | None = None
    password: SecretStr | None = None
    tls_verify: bool = True
    ca_file: Path | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=60.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        url = url.strip().rstrip("/")
        scheme, _, rest = url.partition("://")
        if scheme not in ("http", "https") or not rest:
            raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
        if "@" in rest.split("/", 1)[0]:
            raise ValueError("put credentials in username/password, not in the URL")
        return url

    @model_validator(mode="after")
    def _one_auth(self) -> Self:
        bearer = self.bearer_token is not None or self.bearer_token_file is not None
        if self.bearer_token is not None and self.bearer_token_file is not None:
            raise ValueError("give bearer_token or bearer_token_file, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("basic auth needs both username and password")
        if bearer and self.username is not None:
            raise ValueError("give a bearer token or basic auth, not both")
        if self.ca_file is not None and not self.tls_verify:
            raise ValueError("ca_file is set but tls_verify is false")
        return self


def _metric_name(name: str, *, optional: bool = False) -> str:
    name = name.strip()
    if optional and not name:
        return name
    selector(name, ())  # raises for a name that is not a metric name
    return name


class MetricNames(BaseModel):
    """Metric names. CPU is a cAdvisor counter of core-seconds, memory a gauge of bytes; the
    two OOM metrics may be "" to skip them (one query fewer per chunk each)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu: str = "container_cpu_usage_seconds_total"
    memory: str = "container_memory_working_set_bytes"
    oom_events: str = "container_oom_events_total"
    last_terminated_reason: str = "kube_pod_container_status_last_terminated_reason"

    @field_validator("cpu", "memory")
    @classmethod
    def _required(cls, name: str) -> str:
        return _metric_name(name)

    @field_validator("oom_events", "last_terminated_reason")
    @classmethod
    def _optional(cls, name: str) -> str:
        return _metric_name(name, optional=True)


class LabelMapping(BaseModel):
    """Label names of namespace, pod and container, and the optional cluster label that
    scopes every query in a shared Thanos / VictoriaMetrics / AMP store."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = "namespace"
    pod: str = "pod"
    container: str = "container"
    cluster: str | None = None

    @field_validator("namespace", "pod", "container", "cluster")
    @classmethod
    def _label(cls, name: str | None) -> str | None:
        if name is not None and not LABEL_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a Prometheus label name")
        return name


class PrometheusSourceConfig(BaseModel):
    """What to query, and how finely.

    * `cluster`: the `cluster` column of the samples; with `labels.cluster` set, every query
      also matches `<labels.cluster>="<cluster_label_value or cluster>"`.
    * `cadvisor_selector` / `kube_state_metrics_selector`: matchers of the scrape jobs (PromQL
      text, "" for none); `extra_matchers` go into every query.
    * `step_s`: resolution, seconds between samples (default 60). The engine weighs one CPU
      sample per minute as the stock recommender's live feed does (its confidence counts
      samples / 1440 per day), and takes memory peaks from the samples it sees; the stock
      recommender's 1h history step gives 24 samples a day: low confidence and missed peaks.
    * `rate_window_s`: the `rate()` window of CPU (default 300): at least two scrapes, so a
      CPU sample is the mean usage over the 5 minutes before it.
    * `history_s`: what `fetch_history` bootstraps (default 8 days).
    * `max_points_per_series`: chunk size (Prometheus and Thanos refuse more than 11,000).
    * `oom_match_window_s`: a kube-state-metrics OOM kill within this of a cAdvisor OOM event
      of the same container is the same kill (default 600).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    connection: PrometheusConnection
    cluster: str = Field(default="default", min_length=1)
    cluster_label_value: str | None = None
    metrics: MetricNames = Field(default_factory=MetricNames)
    labels: LabelMapping = Field(default_factory=LabelMapping)
    cadvisor_selector: Matchers = (LabelMatcher(name="job", value="kubernetes-cadvisor"),)
    kube_state_metrics_selector: Matchers = (LabelMatcher(name="job", value="kube-state-metrics"),)
    extra_matchers: Matchers = ()
    rate_window_s: Seconds = 300
    step_s: Seconds = 60
    history_s: Seconds = 8 * 86_400
    max_points_per_series: int = Field(default=11_000, ge=2)
    oom_match_window_s: Seconds = 600

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.history_s < self.step_s:
            raise ValueError(f"history_s ({self.history_s}) is shorter than step_s")
        if self.cluster_label_value is not None and self.labels.cluster is None:
            raise ValueError("cluster_label_value is set but labels.cluster is not")
        return self


def load_config(mapping: Mapping[str, Any]) -> PrometheusSourceConfig:
    """Validate a mapping (settings file, environment); errors name each bad field."""
    try:
        return PrometheusSourceConfig.model_validate(mapping)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']}"
            for e in error.errors()
        ]
        raise PrometheusConfigError("Prometheus configuration: " + "; ".join(problems)) from None


class PrometheusQueryError(RuntimeError):
    """A query that gave no usable answer. `kind` is "unreachable", "timeout", "http_error",
    "bad_answer" or "auth"; `status` and `error_type` are the HTTP status and Prometheus'
    errorType when there was an answer."""

    def __init__(
        self,
        url: str,
        namespace: str,
        query: str,
        chunk: Chunk,
        *,
        kind: str,
        detail: str,
        status: int | None = None,
        error_type: str | None = None,
    ) -> None:
        when = (
            f"{datetime.fromtimestamp(chunk.start_s, UTC):%Y-%m-%dT%H:%M:%SZ} to "
            f"{datetime.fromtimestamp(chunk.end_s, UTC):%Y-%m-%dT%H:%M:%SZ} step {chunk.step_s}s"
        )
        super().__init__(
            f"Prometheus at {url}: query for namespace {namespace!r} failed ({kind}): {detail}\n"
            f"  query: {query}\n  range: {when}"
        )
        self.url = url
        self.namespace = namespace
        self.query = query
        self.chunk = chunk
        self.kind = kind
        self.detail = detail
        self.status = status
        self.error_type = error_type


@dataclass(frozen=True)
class NamespaceHistory:
    """What one `fetch` returned for one namespace over [start, end).

    `samples`: `USAGE_COLUMNS`, one row per (timestamp, pod, container), sorted; `cpu` in cores
    (mean over the rate window before the timestamp), `memory` in bytes (the working set at
    the timestamp); a side is null when only the other had a valid sample there.
    `oom_kills`: `KILL_COLUMNS`, one row per kill. `dropped`: samples dropped (and counter
    resets seen) by `<metric>_<reason>`. `queries`: HTTP calls made.
    """

    namespace: str
    start: datetime
    end: datetime
    samples: pl.DataFrame
    oom_kills: pl.DataFrame
    dropped: Counter[str]
    queries: int


def _unix_us(moment: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is UTC (as in `analytics.usage`)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


class PrometheusHistory:
    """Fetches namespaces' usage from one Prometheus. Thread-safe counters: `query_count`
    (HTTP calls attempted) and `errors` (failed queries by kind)."""

    def __init__(
        self, config: PrometheusSourceConfig, *, session: requests.Session | None = None
    ) -> None:
        self.config = config
        self.session = session if session is not None else requests.Session()
        self._lock = threading.Lock()
        self._queries = 0
        self._errors: Counter[str] = Counter()

    @property
    def query_count(self) -> int:
        """HTTP range queries issued so far, failed ones included."""
        with self._lock:
            return self._queries

    @property
    def errors(self) -> Counter[str]:
        """Failed queries so far, by `PrometheusQueryError.kind`."""
        with self._lock:
            return Counter(self._errors)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ queries

    def _scope(self, namespace: str) -> list[LabelMatcher]:
        config, labels = self.config, self.config.labels
        scope = [*config.extra_matchers]
        if labels.cluster is not None:
            value = config.cluster_label_value or config.cluster
            scope.append(LabelMatcher(name=labels.cluster, value=value))
        scope.append(LabelMatcher(name=labels.namespace, value=namespace))
        return scope

    def queries(self, namespace: str) -> dict[str, str]:
        """PromQL per metric key ("cpu", "memory", "oom_events", "oom_reason") for a namespace.

        Containers only: `container!=""` drops the pod-level cgroup series and
        `container!="POD"` the pause container of older runtimes.
        """
        config, metrics = self.config, self.config.metrics
        containers = [
            LabelMatcher(name=config.labels.container, op="!=", value=""),
            LabelMatcher(name=config.labels.container, op="!=", value="POD"),
        ]
        cadvisor = [*config.cadvisor_selector, *self._scope(namespace), *containers]
        window = format_duration(config.rate_window_s)
        result = {
            "cpu": f"rate({selector(metrics.cpu, cadvisor)}[{window}])",
            "memory": selector(metrics.memory, cadvisor),
        }
        if metrics.oom_events:
            result["oom_events"] = selector(metrics.oom_events, cadvisor)
        if metrics.last_terminated_reason:
            ksm = [
                *config.kube_state_metrics_selector,
                *self._scope(namespace),
                *containers,
                LabelMatcher(name="reason", value="OOMKilled"),
            ]
            result["oom_reason"] = selector(metrics.last_terminated_reason, ksm)
        return result

    def plan(self, start: datetime, end: datetime) -> dict[str, list[Chunk]]:
        """The chunks each metric key is queried over for the window [start, end).

        OOM metrics start one step earlier: a kill is a change from the previous point.
        """
        step = self.config.step_s
        grid = evaluation_grid(_unix_us(start), _unix_us(end), step)
        if grid is None:
            return {}
        first, last = grid
        limit = self.config.max_points_per_series
        usage = plan_chunks(first, last, step, limit)
        oom = plan_chunks(first - step, last, step, limit)
        return {key: oom if key.startswith("oom") else usage for key in self._metric_keys()}

    def _metric_keys(self) -> list[str]:
        metrics = self.config.metrics
        keys = ["cpu", "memory"]
        if metrics.oom_events:
            keys.append("oom_events")
        if metrics.last_terminated_reason:
            keys.append("oom_reason")
        return keys

    # ------------------------------------------------------------------ HTTP

    def _auth(self) -> tuple[dict[str, str], tuple[str, str] | None]:
        connection = self.config.connection
        headers = dict(connection.headers)
        if connection.bearer_token is not None:
            headers["Authorization"] = f"Bearer {connection.bearer_token.get_secret_value()}"
        elif connection.bearer_token_file is not None:
            token = connection.bearer_token_file.read_text().strip()
            headers["Authorization"] = f"Bearer {token}"
        auth = None
        if connection.username is not None and connection.password is not None:
            auth = (connection.username, connection.password.get_secret_value())
        return headers, auth

    def _range_query(self, namespace: str, query: str, chunk: Chunk) -> list[dict[str, Any]]:
        """One HTTP call: the series of `query` over `chunk`, or PrometheusQueryError."""
        connection = self.config.connection
        url = connection.url

        def fail(
            kind: str, detail: str, status: int | None = None, error_type: str | None = None
        ) -> PrometheusQueryError:
            with self._lock:
                self._errors[kind] += 1
            return PrometheusQueryError(
                url,
                namespace,
                query,
                chunk,
                kind=kind,
                detail=detail,
                status=status,
                error_type=error_type,
            )

        try:
            headers, auth = self._auth()
        except OSError as error:
            raise fail("auth", f"cannot read the bearer token file: {error}") from None
        with self._lock:
            self._queries += 1
        params = {
            "query": query,
            "start": str(chunk.start_s),
            "end": str(chunk.end_s),
            "step": str(chunk.step_s),
            # Seconds as a plain number: Prometheus durations ("30s") cannot be fractional.
            "timeout": f"{connection.timeout_s:g}",
        }
        verify: bool | str = connection.tls_verify
        if connection.ca_file is not None:
            verify = str(connection.ca_file)
        try:
            response = self.session.get(
                f"{url}/api/v1/query_range",
                params=params,
                headers=headers,
                auth=auth,
                verify=verify,
                timeout=connection.timeout_s,
            )
        except requests.Timeout:
            raise fail("timeout", f"no answer within {connection.timeout_s:g} s") from None
        except requests.ConnectionError as error:
            raise fail("unreachable", f"cannot connect ({_root_cause(error)})") from None
        except requests.RequestException as error:
            raise fail("unreachable", f"request failed ({_root_cause(error)})") from None
        try:
            return decode_matrix(response.status_code, response.content)
        except AnswerError as error:
            raise fail(error.kind, error.detail, error.status, error.error_type) from None

    # ------------------------------------------------------------------ fetch

    def fetch(self, namespace: str, start: datetime, end: datetime) -> NamespaceHistory:
        """Every container of `namespace` over [start, end) (naive datetimes are UTC).

        Samples are at multiples of `step_s` (counted from the epoch) inside the window, so
        consecutive windows [a, b), [b, c) never repeat or miss a point. A window shorter than a
        step may hold no point: then no query is made. Raises PrometheusQueryError on the first
        failed query; nothing of the namespace is returned then.
        """
        plan = self.plan(start, end)
        dropped: Counter[str] = Counter()
        if not plan:
            empty = usage_table(_empty_samples(), _empty_samples())
            window = (start, end)
            return self._history(
                namespace, window, empty, _empty_kills(), dropped=dropped, queries=0
            )
        names = LabelNames(pod=self.config.labels.pod, container=self.config.labels.container)
        last_ms = plan["cpu"][-1].end_s * 1000
        frames: dict[str, pl.DataFrame] = {}
        queries = 0
        for key, query in self.queries(namespace).items():
            result: list[dict[str, Any]] = []
            for chunk in plan[key]:
                result.extend(self._range_query(namespace, query, chunk))
                queries += 1
            first_ms = plan[key][0].start_s * 1000
            frames[key], counts = matrix_samples(result, names, first_ms, last_ms, key)
            dropped.update(counts)
        kills = self._kills(frames, plan["cpu"][0].start_s * 1000, dropped)
        usage = usage_table(frames["cpu"], frames["memory"])
        return self._history(
            namespace, (start, end), usage, kills, dropped=dropped, queries=queries
        )

    def _kills(
        self, frames: dict[str, pl.DataFrame], first_ms: int, dropped: Counter[str]
    ) -> pl.DataFrame:
        """OOM kills at or after `first_ms` from whichever OOM metrics were queried."""
        events = _empty_kills()
        if "oom_events" in frames:
            events, counts = oom_counter_kills(frames["oom_events"], first_ms, "oom_events")
            dropped.update(counts)
        reasons = _empty_kills()
        if "oom_reason" in frames:
            reasons = reason_kills(frames["oom_reason"], first_ms, self.config.step_s * 1000)
        return merge_kills(events, reasons, self.config.oom_match_window_s * 1000)

    def fetch_history(self, namespace: str, end: datetime | None = None) -> NamespaceHistory:
        """The bootstrap: `history_s` seconds of `namespace` before `end` (default now)."""
        end = end if end is not None else datetime.now(UTC)
        return self.fetch(namespace, end - timedelta(seconds=self.config.history_s), end)

    def _history(
        self,
        namespace: str,
        window: tuple[datetime, datetime],
        usage: pl.DataFrame,
        kills: pl.DataFrame,
        *,
        dropped: Counter[str],
        queries: int,
    ) -> NamespaceHistory:
        """The frames labelled with cluster and namespace, their times as UTC datetimes."""
        labels = [
            pl.col("timestamp_ms").cast(TIMESTAMP).alias("timestamp"),
            pl.lit(self.config.cluster, pl.String).alias("cluster"),
            pl.lit(namespace, pl.String).alias("namespace"),
        ]
        return NamespaceHistory(
            namespace=namespace,
            start=window[0],
            end=window[1],
            samples=usage.with_columns(labels).select(USAGE_COLUMNS),
            oom_kills=kills.with_columns(labels).select(KILL_COLUMNS),
            dropped=dropped,
            queries=queries,
        )


def _empty_samples() -> pl.DataFrame:
    return pl.DataFrame(schema=SAMPLE_SCHEMA)


def _empty_kills() -> pl.DataFrame:
    return pl.DataFrame(schema=KILL_SCHEMA)


def _root_cause(error: BaseException) -> str:
    """The innermost reason of a requests error ("[Errno 111] Connection refused"), without
    the wrappers' repeated URL."""
    inner: BaseException | None = error
    while inner is not None:
        error = inner
        inner = error.__cause__ or error.__context__
    return str(error) or type(error).__name__
