"""HTML plots of simulations: self-contained pages per namespace, usage summaries."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import polars as pl
import pytest

from analytics.simulate.families import generate
from analytics.simulate.plot import (
    MAX_CONTAINERS_PER_PAGE,
    page_name,
    render_pages,
    summarize,
)
from analytics.simulate.replay import prepare_trace, simulate_many

MIB = 1024 * 1024
START = dt.datetime(2024, 3, 1, 10, 0)


def small_trace(workloads: list[str], minutes: int = 120) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "timestamp": START + dt.timedelta(minutes=m),
                "cluster": "c",
                "namespace": "ns",
                "workload": workload,
                "pod": f"{workload}-0",
                "container": "app",
                "cpu": 0.1 * (1 + m % 3),
                "memory": float((100 + m) * MIB),
                "cpu_request": 1.0,
                "memory_request": 512.0 * MIB,
                "memory_limit": 1024.0 * MIB,
            }
            for workload in workloads
            for m in range(minutes)
        ]
    )


def test_usage_per_interval_by_hand() -> None:
    trace = prepare_trace(small_trace(["web"], minutes=120))
    hour = 3600 * 10**9
    t0 = int(START.replace(tzinfo=dt.UTC).timestamp()) * 10**9
    usage = summarize(trace, np.array([t0, t0 + hour], dtype=np.int64), hour)
    # CPU cycles 0.1, 0.2, 0.3: mean 0.2, max 0.3; memory grows 1 MiB a minute.
    assert usage.cpu_mean[:, 0] == pytest.approx([0.2, 0.2])
    assert usage.cpu_max[:, 0].tolist() == [0.3, 0.3]
    assert usage.memory_max[:, 0].tolist() == [159 * MIB, 219 * MIB]
    assert usage.memory_mean[:, 0] == pytest.approx([129.5 * MIB, 189.5 * MIB])


def test_one_self_contained_page_per_family() -> None:
    frame = generate(["steady", "leak"], seeds=[0, 1], days=0.5)
    trace = prepare_trace(frame)
    results = simulate_many(trace, [("vpa", None), ("krr-simple", None)])
    pages = render_pages(trace, results, source="traces.parquet")
    assert sorted(pages) == ["index.html", "leak.html", "steady.html"]
    leak = pages["leak.html"]
    assert leak.startswith("<!DOCTYPE html>")
    assert leak.count("<svg") == 4  # CPU and memory for each of 2 workloads
    assert "leak-0 / leak-0-0 / app" in leak
    assert "vpa request" in leak
    assert "krr-simple request" in leak
    for page in pages.values():
        assert "<script" not in page
        assert "<link" not in page
        assert "src=" not in page
        assert "url(" not in page
        assert set(re.findall(r"https?://[^\"' ]+", page)) <= {"http://www.w3.org/2000/svg"}
    assert 'href="leak.html"' in pages["index.html"]


def test_names_are_escaped_and_pages_capped() -> None:
    names = ["a<b", *[f"w{i:02d}" for i in range(MAX_CONTAINERS_PER_PAGE)]]
    trace = prepare_trace(small_trace(names, minutes=30))
    pages = render_pages(trace, simulate_many(trace, [("vpa", None)]))
    page = pages["ns.html"]
    assert "a&lt;b" in page
    assert "a<b" not in page
    assert f"the first {MAX_CONTAINERS_PER_PAGE} of {len(names)} containers" in page
    assert page.count("<svg") == 2 * MAX_CONTAINERS_PER_PAGE


def test_page_names() -> None:
    assert page_name("sim", "step-up", 1) == "step-up.html"
    assert page_name("prod", "shop", 2) == "prod.shop.html"
    assert page_name("c", "a/b c", 1) == "a_b_c.html"
    assert render_pages(prepare_trace(small_trace(["web"])), []) == {}
