"""Deterministic usage frames for tests (schema of `analytics.usage`)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
from hypothesis import strategies as st

from analytics.model_params import ModelParams

START = dt.datetime(2024, 3, 1, 9, 30)
MIB = 1024 * 1024
SCHEMA = {
    "timestamp": pl.Datetime("us"),
    "cluster": pl.String,
    "namespace": pl.String,
    "workload": pl.String,
    "pod": pl.String,
    "container": pl.String,
    "cpu": pl.Float64,
    "memory": pl.Float64,
}


def steady_trace(
    *,
    cpu_cores: float = 0.1,
    memory_bytes: float = 500 * MIB,
    minutes: int = 2 * 24 * 60,
    pods: tuple[str, ...] = ("web-1",),
    containers: tuple[str, ...] = ("app",),
    workload: str = "web",
) -> pl.DataFrame:
    """Constant usage sampled once a minute."""
    rows = [
        {
            "timestamp": START + dt.timedelta(minutes=i),
            "cluster": "prod",
            "namespace": "shop",
            "workload": workload,
            "pod": pod,
            "container": container,
            "cpu": cpu_cores,
            "memory": float(memory_bytes),
        }
        for i in range(minutes)
        for pod in pods
        for container in containers
    ]
    return pl.DataFrame(rows, schema=SCHEMA)


def mixed_trace(seed: int, *, days: float = 3, step_minutes: int = 15) -> pl.DataFrame:
    """Two replicas with an app and a sidecar: noisy CPU, drifting memory, a few OOM kills."""
    rng = np.random.default_rng(seed)
    steps = int(days * 24 * 60 / step_minutes)
    rows = []
    for step in range(steps):
        for pod in ("api-7f9c-a", "api-7f9c-b"):
            for container, cpu_scale, memory_base in (("app", 0.4, 900), ("proxy", 0.05, 60)):
                memory = (memory_base + 2 * step + rng.integers(0, 200)) * MIB
                rows.append(
                    {
                        "timestamp": START
                        + dt.timedelta(minutes=step * step_minutes, seconds=int(rng.integers(60))),
                        "cluster": "prod",
                        "namespace": "shop",
                        "workload": "api",
                        "pod": pod,
                        "container": container,
                        "cpu": float(rng.gamma(2.0, cpu_scale)),
                        "memory": float(memory),
                        "memory_request": float(1024 * MIB if container == "app" else 128 * MIB),
                        "oom": bool(container == "app" and rng.random() < 0.01),
                    }
                )
    return pl.DataFrame(rows)


def sample_rows(max_minute: int = 3000) -> st.SearchStrategy[dict[str, object]]:
    """One random sample of a small namespace: invalid values, OOM kills, missing requests."""
    return st.fixed_dictionaries(
        {
            "minute": st.integers(0, max_minute),
            "pod": st.sampled_from(["a", "b", "c"]),
            "container": st.sampled_from(["app", "side"]),
            "workload": st.sampled_from(["w1", "w2"]),
            "cpu": st.one_of(
                st.floats(0, 8), st.sampled_from([0.0, 0.01, 0.1, float("nan"), -1.0])
            ),
            "memory_mib": st.one_of(st.integers(0, 4000), st.sampled_from([0, 10, 100])),
            "oom": st.booleans(),
            "request_mib": st.one_of(st.none(), st.integers(0, 2048)),
        }
    )


model_params = st.builds(
    ModelParams,
    cpu_histogram_decay_half_life_s=st.sampled_from([300.0, 3600.0, 86400.0]),
    memory_histogram_decay_half_life_s=st.sampled_from([300.0, 3600.0, 86400.0]),
    memory_aggregation_interval_s=st.sampled_from([600.0, 3600.0, 86400.0]),
)
"""Model parameters that make decay, reference moves and interval ends happen in short traces."""


def sample_frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    """The usage frame of `sample_rows` draws (in the order drawn)."""
    return pl.DataFrame(
        [
            {
                "timestamp": START + dt.timedelta(minutes=int(r["minute"])),  # type: ignore[call-overload]
                "cluster": "prod",
                "namespace": "shop",
                "workload": r["workload"],
                "pod": f"{r['workload']}-{r['pod']}",
                "container": r["container"],
                "cpu": r["cpu"],
                "memory": float(r["memory_mib"]) * MIB,  # type: ignore[arg-type]
                "memory_request": None
                if r["request_mib"] is None
                else float(r["request_mib"]) * MIB,  # type: ignore[arg-type]
                "oom": r["oom"],
            }
            for r in rows
        ],
        schema_overrides={"memory_request": pl.Float64},
    )
