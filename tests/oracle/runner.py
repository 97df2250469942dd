"""Build and run the Go oracle of this directory (protocol in README.md).

`build_oracle()` compiles it once per source version (cached by build.sh), `run_oracle(cases)`
runs `oracle recommend` on protocol cases, and `case_from_frame` turns a one-workload usage
frame (schema of `analytics.usage`) into such a case.
"""

from __future__ import annotations

import functools
import json
import math
import subprocess
from pathlib import Path
from typing import Any

import polars as pl

__all__ = ["BUILD_SCRIPT", "OracleError", "build_oracle", "case_from_frame", "run_oracle"]

BUILD_SCRIPT = Path(__file__).with_name("build.sh")

Case = dict[str, Any]


class OracleError(RuntimeError):
    """The oracle could not be built, or rejected its input; the message carries its stderr."""


@functools.cache
def build_oracle() -> Path:
    """Path of the oracle binary, built by build.sh unless already in the cache."""
    built = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
    lines = built.stdout.strip().splitlines()
    if built.returncode != 0 or len(lines) != 1:
        raise OracleError(
            f"building the oracle failed (bash {BUILD_SCRIPT}: exit {built.returncode}):\n"
            f"{built.stderr.strip()}"
        )
    binary = Path(lines[0])
    if not binary.is_file():
        raise OracleError(f"build.sh printed {binary}, which is not a file")
    return binary


def run_oracle(cases: list[Case]) -> list[Case]:
    """`oracle recommend` on the cases: one `{"name", "recommendations"}` per case, in order."""
    payload = json.dumps({"cases": cases}, allow_nan=False)
    ran = subprocess.run(
        [str(build_oracle()), "recommend"],
        input=payload,
        capture_output=True,
        text=True,
        check=False,
    )
    if ran.returncode != 0:
        raise OracleError(f"oracle recommend failed (exit {ran.returncode}):\n{ran.stderr.strip()}")
    results: list[Case] = json.loads(ran.stdout)["cases"]
    names = [result["name"] for result in results]
    if names != [case["name"] for case in cases]:
        raise OracleError(f"oracle answered cases {names}, asked {[c['name'] for c in cases]}")
    return results


def case_from_frame(name: str, frame: pl.DataFrame) -> Case:
    """The oracle case of a usage frame holding one workload, in the engine's replay order.

    Rows go in order of (timestamp, pod, container), rows that tie keeping their frame order
    (a duplicate after its original); each is a CPU and a memory sample. A row with `oom` set
    is also a kill whose memory is the row's `memory_request` when present, else its `memory`.
    Every value must be finite: the oracle has no notion of an invalid measurement.
    """
    workloads = frame.select("cluster", "namespace", "workload").unique()
    if workloads.height != 1:
        raise ValueError(f"case {name!r}: expected one workload, found {workloads.height}")
    timestamp = pl.col("timestamp")
    time_type = frame.schema["timestamp"]
    if isinstance(time_type, pl.Datetime) and time_type.time_zone is not None:
        timestamp = timestamp.dt.convert_time_zone("UTC")
    oom = pl.col("oom").fill_null(False) if "oom" in frame.columns else pl.lit(False)
    oom_memory = pl.col("memory").cast(pl.Float64)
    if "memory_request" in frame.columns:
        oom_memory = pl.coalesce(pl.col("memory_request").cast(pl.Float64), oom_memory)
    rows = frame.select(
        (timestamp.dt.epoch("us") / 1e6).alias("t"),
        "pod",
        "container",
        pl.col("cpu").cast(pl.Float64),
        pl.col("memory").cast(pl.Float64),
        oom.alias("oom"),
        oom_memory.alias("oom_memory"),
    ).sort(["t", "pod", "container"], maintain_order=True)

    samples: list[dict[str, Any]] = []
    ooms: list[dict[str, Any]] = []
    for index, row in enumerate(rows.iter_rows(named=True)):
        values = [row["cpu"], row["memory"]] + ([row["oom_memory"]] if row["oom"] else [])
        if not all(value is not None and math.isfinite(value) for value in values):
            raise ValueError(f"case {name!r}, sorted row {index}: missing or non-finite {row}")
        where = {"pod": row["pod"], "container": row["container"], "t": row["t"]}
        samples.append({**where, "cpu": row["cpu"], "memory": row["memory"]})
        if row["oom"]:
            ooms.append({**where, "memory": row["oom_memory"]})
    return {
        "name": name,
        "containers": sorted(frame["container"].unique().to_list()),
        "samples": samples,
        "ooms": ooms,
    }
