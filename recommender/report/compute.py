"""Savings and risk, per container and rolled up to workload, namespace and cluster. Pure
polars over the frames of `recommender.report.inventory` and the usage history.

Per container of a VPA (over the pods it matches now):

* requests and targets are summed over pods: `cpu_request` is the pods' requests together,
  `cpu_target` the VPA's per-pod target times the pods; `cpu_savings = cpu_request -
  cpu_target` (negative: the VPA asks for more than is requested). Cores and bytes.
* usage: every sample of the window (one per pod and step) counts: mean, 95th percentile
  (linear interpolation) and maximum per pod.
* slack: `sum(request - usage) * step` over the samples, in core-hours and GiB-hours, and as a
  share of the requested `sum(request) * step`; a sample of a container without a request is
  left out of both.
* risk: `cpu_over_request_pct` / `cpu_over_target_pct` are the shares of CPU samples above the
  pod's request / the VPA's target; `memory_over_*_samples` count memory samples above them;
  `oom_kills` are the container's OOM kills in the window. `risk` lists the reasons that apply
  (`oom_kills`, `memory_above_request`, `memory_above_target`, and `cpu_above_request` /
  `cpu_above_target` when the CPU share exceeds `cpu_risk_pct`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import polars as pl

from recommender.report.inventory import KEY, POD_SCHEMA, TARGET_SCHEMA, WORKLOAD_SCHEMA

CONTAINER_KEY: Final = (*KEY, "container")
LEVELS: Final = {
    "cluster": ("cluster",),
    "namespace": ("cluster", "namespace"),
    "workload": KEY,
    "container": CONTAINER_KEY,
}
GIB: Final = 1024.0**3
DEFAULT_CPU_RISK_PCT: Final = 5.0

SUMMED: Final = (
    "pods",
    "cpu_request",
    "memory_request",
    "cpu_target",
    "memory_target",
    "cpu_savings",
    "memory_savings",
    "samples",
    "cpu_slack_core_hours",
    "memory_slack_gib_hours",
    "cpu_request_core_hours",
    "memory_request_gib_hours",
    "oom_kills",
)
"""Columns that add up from containers to workloads, namespaces and clusters."""

CONTAINER_COLUMNS: Final = (
    *CONTAINER_KEY,
    "target_kind",
    "target_name",
    "pods",
    "cpu_request",
    "memory_request",
    "cpu_target",
    "memory_target",
    "cpu_savings",
    "memory_savings",
    "samples",
    "cpu_usage_mean",
    "cpu_usage_p95",
    "cpu_usage_max",
    "memory_usage_mean",
    "memory_usage_max",
    "cpu_slack_core_hours",
    "memory_slack_gib_hours",
    "cpu_request_core_hours",
    "memory_request_gib_hours",
    "cpu_slack_pct",
    "memory_slack_pct",
    "cpu_over_request_pct",
    "cpu_over_target_pct",
    "memory_over_request_samples",
    "memory_over_target_samples",
    "oom_kills",
    "at_risk",
    "risk",
)

KILL_SCHEMA: Final = {
    "cluster": pl.String,
    "namespace": pl.String,
    "pod": pl.String,
    "container": pl.String,
    "oom_kills": pl.Int64,
}


def _pct(part: pl.Expr, whole: pl.Expr) -> pl.Expr:
    return pl.when(whole > 0).then(100.0 * part / whole).otherwise(None)


def usage_rows(samples: pl.DataFrame, pods: pl.DataFrame, targets: pl.DataFrame) -> pl.DataFrame:
    """Samples (timestamp, cluster, namespace, pod, container, cpu, memory) of matched pods,
    with the VPA they belong to, the pod's requests and the VPA's per-pod target."""
    joined = samples.join(
        pods.select([*KEY, "pod", "container", "cpu_request", "memory_request"]),
        on=["cluster", "namespace", "pod", "container"],
        how="inner",
    )
    return joined.join(targets, on=list(CONTAINER_KEY), how="left")


def container_report(
    pods: pl.DataFrame,
    targets: pl.DataFrame,
    workloads: pl.DataFrame,
    samples: pl.DataFrame,
    kills: pl.DataFrame,
    *,
    step_s: float,
    cpu_risk_pct: float = DEFAULT_CPU_RISK_PCT,
) -> pl.DataFrame:
    """One row per (VPA, container): `CONTAINER_COLUMNS`, sorted by key.

    A container is listed when a matched pod runs it or the VPA recommends for it."""
    pods = pods.cast(POD_SCHEMA)  # type: ignore[arg-type]
    targets = targets.cast(TARGET_SCHEMA)  # type: ignore[arg-type]
    key = list(CONTAINER_KEY)
    requested = pods.group_by(key).agg(
        pl.len().cast(pl.Int64).alias("pods"),
        pl.col("cpu_request").sum(),
        pl.col("memory_request").sum(),
    )
    base = requested.join(targets, on=key, how="full", coalesce=True).with_columns(
        pl.col("pods").fill_null(0)
    )
    base = base.with_columns(
        (pl.col("cpu_target") * pl.col("pods")).alias("cpu_target_total"),
        (pl.col("memory_target") * pl.col("pods")).alias("memory_target_total"),
        pl.col("cpu_request").fill_null(0.0),
        pl.col("memory_request").fill_null(0.0),
    )
    usage = _usage(usage_rows(samples, pods, targets), step_s)
    killed = (
        kills.join(
            pods.select([*KEY, "pod", "container"]), on=["cluster", "namespace", "pod", "container"]
        )
        .group_by(key)
        .agg(pl.col("oom_kills").sum())
    )
    result = (
        base.join(usage, on=key, how="left")
        .join(killed, on=key, how="left")
        .join(workloads.select([*KEY, "target_kind", "target_name"]), on=list(KEY), how="left")
        .with_columns(
            pl.col("samples").fill_null(0),
            pl.col("oom_kills").fill_null(0),
            (pl.col("cpu_request") - pl.col("cpu_target_total")).alias("cpu_savings"),
            (pl.col("memory_request") - pl.col("memory_target_total")).alias("memory_savings"),
        )
        .drop("cpu_target", "memory_target")
        .rename({"cpu_target_total": "cpu_target", "memory_target_total": "memory_target"})
    )
    result = result.with_columns(
        _pct(pl.col("cpu_slack_core_hours"), pl.col("cpu_request_core_hours")).alias(
            "cpu_slack_pct"
        ),
        _pct(pl.col("memory_slack_gib_hours"), pl.col("memory_request_gib_hours")).alias(
            "memory_slack_pct"
        ),
    )
    reasons = [
        ("oom_kills", pl.col("oom_kills") > 0),
        ("memory_above_request", pl.col("memory_over_request_samples") > 0),
        ("memory_above_target", pl.col("memory_over_target_samples") > 0),
        ("cpu_above_request", pl.col("cpu_over_request_pct") > cpu_risk_pct),
        ("cpu_above_target", pl.col("cpu_over_target_pct") > cpu_risk_pct),
    ]
    risk = pl.concat_list(
        [
            pl.when(test.fill_null(False)).then(pl.lit(name)).otherwise(None)
            for name, test in reasons
        ]
    ).list.drop_nulls()
    result = result.with_columns(risk.list.join(",").alias("risk")).with_columns(
        (pl.col("risk") != "").alias("at_risk")
    )
    return result.select(CONTAINER_COLUMNS).sort(key)


def _usage(rows: pl.DataFrame, step_s: float) -> pl.DataFrame:
    hours = step_s / 3600.0
    cpu_ok = pl.col("cpu").is_not_null() & pl.col("cpu_request").is_not_null()
    memory_ok = pl.col("memory").is_not_null() & pl.col("memory_request").is_not_null()
    return rows.group_by(list(CONTAINER_KEY)).agg(
        pl.len().cast(pl.Int64).alias("samples"),
        pl.col("cpu").mean().alias("cpu_usage_mean"),
        pl.col("cpu").quantile(0.95, interpolation="linear").alias("cpu_usage_p95"),
        pl.col("cpu").max().alias("cpu_usage_max"),
        pl.col("memory").mean().alias("memory_usage_mean"),
        pl.col("memory").max().alias("memory_usage_max"),
        ((pl.col("cpu_request") - pl.col("cpu")).filter(cpu_ok).sum() * hours).alias(
            "cpu_slack_core_hours"
        ),
        (pl.col("cpu_request").filter(cpu_ok).sum() * hours).alias("cpu_request_core_hours"),
        ((pl.col("memory_request") - pl.col("memory")).filter(memory_ok).sum() * hours / GIB).alias(
            "memory_slack_gib_hours"
        ),
        (pl.col("memory_request").filter(memory_ok).sum() * hours / GIB).alias(
            "memory_request_gib_hours"
        ),
        _pct((pl.col("cpu") > pl.col("cpu_request")).filter(cpu_ok).sum(), cpu_ok.sum()).alias(
            "cpu_over_request_pct"
        ),
        _pct(
            (pl.col("cpu") > pl.col("cpu_target")).filter(pl.col("cpu_target").is_not_null()).sum(),
            (pl.col("cpu").is_not_null() & pl.col("cpu_target").is_not_null()).sum(),
        ).alias("cpu_over_target_pct"),
        (pl.col("memory") > pl.col("memory_request"))
        .filter(memory_ok)
        .sum()
        .cast(pl.Int64)
        .alias("memory_over_request_samples"),
        (pl.col("memory") > pl.col("memory_target"))
        .filter(pl.col("memory_target").is_not_null())
        .sum()
        .cast(pl.Int64)
        .alias("memory_over_target_samples"),
    )


def rollup(containers: pl.DataFrame, level: str) -> pl.DataFrame:
    """The container rows summed to `level` (a key of `LEVELS`); shares are recomputed from
    the sums, risk is the union of the containers' reasons. A workload's `pods` are those of
    its busiest container (its containers share pods), summed from there upwards."""
    if level == "container":
        return containers
    reason = pl.col("risk").str.split(",").explode()
    workloads = containers.group_by(list(KEY)).agg(
        pl.col("target_kind").first(),
        pl.col("target_name").first(),
        pl.len().cast(pl.Int64).alias("containers"),
        pl.col("pods").max(),
        *(pl.col(name).sum() for name in SUMMED if name != "pods"),
        pl.col("cpu_target").is_null().sum().cast(pl.Int64).alias("containers_without_target"),
        pl.col("at_risk").sum().cast(pl.Int64).alias("containers_at_risk"),
        reason.filter(reason != "").unique().sort().alias("reasons"),
    )
    if level != "workload":
        counts = ("containers", *SUMMED, "containers_without_target", "containers_at_risk")
        workloads = workloads.group_by(list(LEVELS[level])).agg(
            *(pl.col(name).sum() for name in counts),
            pl.col("reasons").explode().drop_nulls().unique().sort(),
        )
    return (
        workloads.with_columns(
            _pct(pl.col("cpu_slack_core_hours"), pl.col("cpu_request_core_hours")).alias(
                "cpu_slack_pct"
            ),
            _pct(pl.col("memory_slack_gib_hours"), pl.col("memory_request_gib_hours")).alias(
                "memory_slack_pct"
            ),
            pl.col("reasons").list.join(",").alias("risk"),
        )
        .select(level_columns(level))
        .sort(list(LEVELS[level]))
    )


def level_columns(level: str) -> Sequence[str]:
    """The columns of a rollup at `level`, in output order."""
    if level == "container":
        return CONTAINER_COLUMNS
    head = [*LEVELS[level], *(("target_kind", "target_name") if level == "workload" else ())]
    return (
        *head,
        "containers",
        *SUMMED,
        "cpu_slack_pct",
        "memory_slack_pct",
        "containers_without_target",
        "containers_at_risk",
        "risk",
    )


def empty_workloads() -> pl.DataFrame:
    return pl.DataFrame(schema=WORKLOAD_SCHEMA)
