"""Pure PromQL building and answer parsing for the Prometheus history source (no I/O).

Query side: durations, label matchers, selectors, the evaluation grid of a time window and its
chunks under the points-per-series limit. Answer side: a `query_range` HTTP answer to a list of
series, series to one sorted sample table per metric (bad samples dropped and counted by
reason), and OOM kill detection from a counter and from a "last terminated reason" gauge.

Times here are integers: seconds for the query side, milliseconds for samples (Prometheus
answers in float seconds with millisecond precision).
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict, field_validator

from analytics.arrays import BoolArray, Int64Array

__all__ = [
    "KILL_SCHEMA",
    "LABEL_NAME",
    "METRIC_NAME",
    "SAMPLE_SCHEMA",
    "AnswerError",
    "Chunk",
    "LabelMatcher",
    "LabelNames",
    "decode_matrix",
    "escape_label_value",
    "evaluation_grid",
    "format_duration",
    "matrix_samples",
    "merge_kills",
    "oom_counter_kills",
    "parse_duration",
    "parse_matchers",
    "plan_chunks",
    "reason_kills",
    "selector",
    "usage_table",
]


METRIC_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

# --------------------------------------------------------------------------- durations

_UNITS: Final = {"y": 365 * 86_400, "w": 7 * 86_400, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_DURATION: Final = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_duration(value: object) -> int:
    """Whole seconds from an int, a digit string or a Prometheus duration ("5m", "1h30m",
    "8d"). Sub-second durations ("500ms") and non-positive values are errors."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, float) and value.is_integer():
        seconds = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        seconds = int(value.strip())
    elif isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match is None or not any(match.groups()):
            raise ValueError(
                f"{value!r} is not a duration in whole seconds (e.g. 90, '90s', '5m', '1h', '8d')"
            )
        seconds = sum(
            int(count) * unit
            for count, unit in zip(match.groups(), _UNITS.values(), strict=True)
            if count
        )
    else:
        raise ValueError(f"expected a duration in whole seconds, got {value!r}")
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


def format_duration(seconds: int) -> str:
    """The largest single unit that divides `seconds` exactly: 300 -> "5m", 90 -> "90s".

    Single units only: every Prometheus-compatible server parses them (mixed units such as
    "1m30s" came later to some of them)."""
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {seconds}")
    for unit in ("d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


# --------------------------------------------------------------------------- selectors

MatchOp = Literal["=", "!=", "=~", "!~"]
_MATCHER: Final = re.compile(
    r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)'
)
_UNESCAPE: Final = re.compile(r"\\(.)")


def escape_label_value(value: str) -> str:
    """A label value inside PromQL double quotes: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class LabelMatcher(BaseModel):
    """One PromQL label matcher such as `job="kubernetes-cadvisor"` or `container!="POD"`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    op: MatchOp = "="
    value: str

    @field_validator("name")
    @classmethod
    def _label_name(cls, name: str) -> str:
        if not LABEL_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a Prometheus label name")
        return name

    def render(self) -> str:
        """The matcher as PromQL text."""
        return f'{self.name}{self.op}"{escape_label_value(self.value)}"'

    @classmethod
    def parse(cls, text: str) -> LabelMatcher:
        """Parse one matcher written as PromQL (`name="value"`, `name!~"re"`)."""
        matchers = parse_matchers(text)
        if len(matchers) != 1:
            raise ValueError(f"expected one label matcher, got {len(matchers)} in {text!r}")
        return matchers[0]


def parse_matchers(text: str) -> tuple[LabelMatcher, ...]:
    """Comma-separated PromQL matchers (`job="kubelet",metrics_path="/metrics/cadvisor"`);
    an empty or blank string is no matcher."""
    matchers: list[LabelMatcher] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _MATCHER.match(text, position)
        if match is None:
            raise ValueError(
                f"cannot parse label matchers {text!r} at character {position}: expected "
                'name="value" (or !=, =~, !~), separated by commas'
            )
        name, op, raw, separator = match.groups()
        value = _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), raw)
        matchers.append(LabelMatcher(name=name, op=op, value=value))
        position = match.end()
        if separator == "," and position >= len(text):
            raise ValueError(f"label matchers {text!r} end with a comma")
    return tuple(matchers)


def selector(metric: str, matchers: Sequence[LabelMatcher]) -> str:
    """`metric{m1,m2,...}`; matchers keep their order (queries are reproducible text)."""
    if not METRIC_NAME.fullmatch(metric):
        raise ValueError(f"{metric!r} is not a Prometheus metric name")
    return f"{metric}{{{','.join(m.render() for m in matchers)}}}"


# --------------------------------------------------------------------------- time chunks


@dataclass(frozen=True)
class Chunk:
    """Evaluation times `start_s, start_s + step_s, ..., end_s` of one range query (Unix s)."""

    start_s: int
    end_s: int
    step_s: int

    @property
    def points(self) -> int:
        """Points per series this chunk asks for."""
        return (self.end_s - self.start_s) // self.step_s + 1


def evaluation_grid(start_us: int, end_us: int, step_s: int) -> tuple[int, int] | None:
    """First and last evaluation time (Unix s) of a window [start, end) given in Unix
    microseconds: the multiples of `step_s` inside it. None when there is none.

    Whole multiples of the step (counted from the epoch) make consecutive windows meet
    exactly: fetching [a, b) then [b, c) gives every point once, whatever a, b, c are.
    """
    step_us = step_s * 1_000_000
    first = -(-start_us // step_us) * step_us  # ceil
    last = (-(-end_us // step_us) - 1) * step_us  # the largest multiple strictly below end
    if last < first:
        return None
    return first // 1_000_000, last // 1_000_000


def plan_chunks(first_s: int, last_s: int, step_s: int, max_points: int) -> list[Chunk]:
    """Split evaluation times `first_s..last_s` (every `step_s`) into consecutive range queries
    of at most `max_points` points per series, in time order, without overlap or gap."""
    if step_s <= 0 or max_points < 1 or last_s < first_s:
        raise ValueError(f"no chunks for {first_s}..{last_s} step {step_s}, max {max_points}")
    span = (max_points - 1) * step_s
    chunks = []
    start = first_s
    while start <= last_s:
        end = min(start + span, last_s)
        end -= (end - start) % step_s  # stay on the grid
        chunks.append(Chunk(start, end, step_s))
        start = end + step_s
    return chunks


# --------------------------------------------------------------------------- answers


class AnswerError(ValueError):
    """An answer that carries no usable matrix: `kind` is "http_error" or "bad_answer";
    `status` is the HTTP status and `error_type` Prometheus' errorType, when known."""

    def __init__(
        self, kind: str, detail: str, status: int | None = None, error_type: str | None = None
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status
        self.error_type = error_type


def _snippet(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    return text if len(text) <= limit else text[:limit] + "..."


def decode_matrix(status: int, body: bytes) -> list[dict[str, Any]]:
    """The series of a `query_range` answer; anything else raises AnswerError saying why.

    Prometheus answers errors with a 4xx/5xx status and `{"status": "error", "errorType",
    "error"}`; proxies in front of it answer with HTML or plain text, which is quoted instead.
    """
    try:
        document = json.loads(body)
    except ValueError:  # not JSON, or not UTF-8
        document = None
    if status != 200:
        if isinstance(document, dict) and document.get("status") == "error":
            error_type = str(document.get("errorType", "unknown"))
            detail = f"HTTP {status}, {error_type}: {document.get('error', '')}"
            raise AnswerError("http_error", detail, status, error_type)
        raise AnswerError("http_error", f"HTTP {status}: {_snippet(body)!r}", status)
    if not isinstance(document, dict):
        raise AnswerError("bad_answer", f"HTTP 200 but not a JSON object: {_snippet(body)!r}")
    if document.get("status") != "success":
        raise AnswerError(
            "bad_answer",
            f"status {document.get('status')!r}: {document.get('error', _snippet(body))}",
            status,
            document.get("errorType"),
        )
    data = document.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "matrix":
        found = data.get("resultType") if isinstance(data, dict) else type(data).__name__
        raise AnswerError("bad_answer", f"expected a matrix result, got {found!r}")
    result = data.get("result")
    if not isinstance(result, list):
        raise AnswerError("bad_answer", "the matrix result is not a list")
    for index, series in enumerate(result):
        if (
            not isinstance(series, dict)
            or not isinstance(series.get("metric"), dict)
            or not isinstance(series.get("values"), list)
        ):
            raise AnswerError("bad_answer", f"series {index} has no 'metric' object and 'values'")
    return result


@dataclass(frozen=True)
class LabelNames:
    """Which labels carry the pod and the container name (cAdvisor and kube-state-metrics
    both use `pod` and `container`)."""

    pod: str = "pod"
    container: str = "container"


SAMPLE_SCHEMA: Final = {
    "pod": pl.String,
    "container": pl.String,
    "timestamp_ms": pl.Int64,
    "value": pl.Float64,
}
KILL_SCHEMA: Final = {"pod": pl.String, "container": pl.String, "timestamp_ms": pl.Int64}


def _flatten(result: list[dict[str, Any]]) -> tuple[Int64Array, npt.NDArray[np.float64]]:
    """All (timestamp ms, value) pairs of all series, concatenated; numpy converts the
    strings (Prometheus writes values as strings, including "NaN", "+Inf", "-Inf")."""
    pairs = list(itertools.chain.from_iterable(series["values"] for series in result))
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    try:
        table = np.array(pairs, dtype=object)
        # numpy would read a null as NaN: a null is a malformed answer, not a NaN sample.
        if (
            table.ndim != 2
            or table.shape[1] != 2
            or np.equal(table, np.array(None, dtype=object)).any()
        ):
            raise ValueError("not pairs")
        seconds = table[:, 0].astype(np.float64)
        values = table[:, 1].astype(np.float64)
    except (TypeError, ValueError):
        raise AnswerError(
            "bad_answer", 'a series\' values are not [timestamp, "number"] pairs'
        ) from None
    if not np.isfinite(seconds).all() or np.abs(seconds).max() > 1e11:
        raise AnswerError("bad_answer", "a sample timestamp is not a Unix time in seconds")
    return np.rint(seconds * 1000.0).astype(np.int64), values


def matrix_samples(
    result: list[dict[str, Any]],
    labels: LabelNames,
    first_ms: int,
    last_ms: int,
    prefix: str,
) -> tuple[pl.DataFrame, Counter[str]]:
    """One row per (pod, container, timestamp) of a matrix: `SAMPLE_SCHEMA`, sorted.

    Samples are dropped, and counted under `<prefix>_<reason>`, for the first reason that
    applies: `missing_pod` / `missing_container` (the series lacks the label, or it is empty),
    `outside_window` (not in [first_ms, last_ms]), `nan`, `infinite`, `negative`, and
    `duplicate`: two series with the same pod and container (two scrape jobs, or a restarted
    container's old series still inside the lookback) both answer at a timestamp; the series
    whose full label set sorts first is kept, so the choice does not depend on answer order.
    Invalid values go before duplicates, so a NaN never hides the valid twin.
    """
    dropped: Counter[str] = Counter()
    metrics = [series["metric"] for series in result]
    lengths = np.array([len(series["values"]) for series in result], dtype=np.int64)
    pods = [str(m.get(labels.pod) or "") for m in metrics]
    containers = [str(m.get(labels.container) or "") for m in metrics]
    # Rank series by their whole label set: the deterministic tie-break for duplicates.
    label_sets = [sorted((str(k), str(v)) for k, v in m.items()) for m in metrics]
    rank = np.empty(len(result), dtype=np.int64)
    rank[sorted(range(len(result)), key=label_sets.__getitem__)] = np.arange(len(result))
    # One integer per distinct (pod, container), in name order: the output's sort key.
    keys = sorted(set(zip(pods, containers, strict=True)))
    key_index = {key: i for i, key in enumerate(keys)}
    series_key = np.array(
        [key_index[key] for key in zip(pods, containers, strict=True)], dtype=np.int64
    )

    t_ms, values = _flatten(result)
    series = np.repeat(np.arange(len(result), dtype=np.int64), lengths)
    checks: list[tuple[str, BoolArray]] = [
        ("missing_pod", np.array([not p for p in pods], dtype=bool)[series]),
        ("missing_container", np.array([not c for c in containers], dtype=bool)[series]),
        ("outside_window", (t_ms < first_ms) | (t_ms > last_ms)),
        ("nan", np.isnan(values)),
        ("infinite", np.isinf(values)),
        ("negative", values < 0),
    ]
    keep = np.ones(t_ms.shape[0], dtype=bool)
    for reason, bad in checks:
        hit = bad & keep
        if hit.any():
            dropped[f"{prefix}_{reason}"] = int(hit.sum())
        keep &= ~bad
    series, t_ms, values = series[keep], t_ms[keep], values[keep]

    key = series_key[series]
    order = np.lexsort((rank[series], t_ms, key))
    key, t_ms, values = key[order], t_ms[order], values[order]
    duplicate = np.zeros(key.shape[0], dtype=bool)
    duplicate[1:] = (key[1:] == key[:-1]) & (t_ms[1:] == t_ms[:-1])
    if duplicate.any():
        dropped[f"{prefix}_duplicate"] = int(duplicate.sum())
        key, t_ms, values = key[~duplicate], t_ms[~duplicate], values[~duplicate]

    frame = pl.DataFrame(
        {
            "pod": pl.Series([k[0] for k in keys], dtype=pl.String).gather(key),
            "container": pl.Series([k[1] for k in keys], dtype=pl.String).gather(key),
            "timestamp_ms": t_ms,
            "value": values,
        },
        schema=SAMPLE_SCHEMA,
    )
    return frame, dropped


_CONTAINER: Final = ("pod", "container")


def _previous(frame: pl.DataFrame) -> pl.DataFrame:
    """Add each row's predecessor in its container (frames are sorted by container, time)."""
    same = (pl.col("pod") == pl.col("pod").shift(1)) & (
        pl.col("container") == pl.col("container").shift(1)
    )
    return frame.with_columns(
        same.fill_null(False).alias("has_previous"),
        pl.col("timestamp_ms").shift(1).alias("previous_ms"),
        pl.col("value").shift(1).alias("previous_value"),
    )


def oom_counter_kills(
    samples: pl.DataFrame, first_ms: int, prefix: str
) -> tuple[pl.DataFrame, Counter[str]]:
    """OOM kills from a counter of OOM events (`container_oom_events_total`), at or after
    `first_ms`: one kill per rise between consecutive samples of a container.

    A decrease is a counter reset (a new container instance reusing the labels), counted as
    `<prefix>_reset`; as in Prometheus' `increase()`, the value after a reset is all new, so a
    reset to a non-zero value is a kill too. A container's first sample has no predecessor:
    it tells nothing (callers query one step before the window for this reason).
    """
    dropped: Counter[str] = Counter()
    frame = _previous(samples)
    rise = pl.col("has_previous") & (pl.col("value") > pl.col("previous_value"))
    reset = pl.col("has_previous") & (pl.col("value") < pl.col("previous_value"))
    resets = int(frame.select(reset.sum()).item())
    if resets:
        dropped[f"{prefix}_reset"] = resets
    kill = (rise | (reset & (pl.col("value") > 0))) & (pl.col("timestamp_ms") >= first_ms)
    return frame.filter(kill).select(KILL_SCHEMA.keys()), dropped


def reason_kills(samples: pl.DataFrame, first_ms: int, step_ms: int) -> pl.DataFrame:
    """OOM kills from kube-state-metrics' `..._last_terminated_reason{reason="OOMKilled"}`:
    a container whose series (value > 0) appears at a time at or after `first_ms`, having been
    absent (or 0) one step before. The first sample of the queried range tells nothing: the
    reason may be days old (callers query one step before the window for this reason)."""
    present = samples.filter(pl.col("value") > 0)
    frame = _previous(present)
    appears = ~pl.col("has_previous") | (pl.col("previous_ms") != pl.col("timestamp_ms") - step_ms)
    kill = appears & (pl.col("timestamp_ms") >= first_ms)
    return frame.filter(kill).select(KILL_SCHEMA.keys())


def merge_kills(events: pl.DataFrame, reasons: pl.DataFrame, window_ms: int) -> pl.DataFrame:
    """One row per OOM kill: every counter kill, plus the reason kills with no counter kill of
    the same container within `window_ms` (the two metrics see one kill a scrape or two
    apart; the counter is missing altogether when the container is replaced)."""
    keys = list(KILL_SCHEMA)
    events = events.unique(keys).sort(["timestamp_ms", *_CONTAINER])
    reasons = reasons.unique(keys).sort(["timestamp_ms", *_CONTAINER])
    if events.height and reasons.height:
        nearest = reasons.join_asof(
            events.with_columns(pl.col("timestamp_ms").alias("event_ms")),
            on="timestamp_ms",
            by=list(_CONTAINER),
            strategy="nearest",
            tolerance=window_ms,
            check_sortedness=False,  # sorted by time overall, hence within each container
        )
        reasons = nearest.filter(pl.col("event_ms").is_null()).select(keys)
    return pl.concat([events, reasons]).sort(["timestamp_ms", *_CONTAINER])


def usage_table(cpu: pl.DataFrame, memory: pl.DataFrame) -> pl.DataFrame:
    """CPU and memory samples joined on (pod, container, timestamp_ms): columns pod,
    container, timestamp_ms, cpu, memory; a side without a sample there is null."""
    joined = cpu.rename({"value": "cpu"}).join(
        memory.rename({"value": "memory"}),
        on=["pod", "container", "timestamp_ms"],
        how="full",
        coalesce=True,
    )
    return joined.sort(["timestamp_ms", *_CONTAINER])
