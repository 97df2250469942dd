"""The fast kernels compute exactly what the plain formulas compute, bit for bit."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from analytics.go_semantics import go_exp2
from analytics.histogram import DecayingHistogram, HistogramArrays
from analytics.histogram_kernels import add_samples, stable_order
from analytics.histogram_layout import CPU_LAYOUT, MEMORY_LAYOUT, HistogramLayout
from analytics.ingest import ingest_samples
from analytics.model_params import ModelParams
from analytics.scalar_model import ScalarModel
from analytics.store import AggregateStore
from analytics.usage import prepare_samples

from .test_ingest_parity import assert_identical
from .traces import MIB, START

MINUTE = 60 * 10**9
DAY = 1440 * MINUTE
T0 = 1_709_285_400 * 10**9  # 2024-03-01T09:30:00Z


def general_exp2(x: np.ndarray) -> np.ndarray:
    """go_exp2 through its general path: a NaN among the inputs rules out the in-range path."""
    with_nan = np.append(np.asarray(x, dtype=np.float64).ravel(), np.nan)
    result: np.ndarray = go_exp2(with_nan)[:-1]
    return result


def near(values: list[float]) -> list[float]:
    """Each value and its neighbours one ulp away."""
    return [
        w for v in values for w in (math.nextafter(v, -math.inf), v, math.nextafter(v, math.inf))
    ]


@given(st.lists(st.floats(min_value=-1074.0, max_value=1023.9999999999999), min_size=1))
def test_exp2_in_range_equals_general_path(values: list[float]) -> None:
    x = np.array(values)
    assert go_exp2(x).tobytes() == general_exp2(x).tobytes()


def test_exp2_in_range_on_edges_and_across_blocks() -> None:
    halves = [k + 0.5 for k in range(-5, 5)] + [0.0, 0.5, 1.0, 99.5, 100.0]
    edges = [*near(halves), -0.0, 5e-324, -5e-324, -1074.0, 1023.9999999999999]
    rng = np.random.default_rng(7)
    bulk = np.concatenate([rng.uniform(-1.0, 101.0, 100_003), rng.uniform(-1074, 1023, 70_001)])
    for x in (np.array(edges), bulk, bulk[:99_999].reshape(3, -1)):
        assert go_exp2(x).tobytes() == general_exp2(x).reshape(x.shape).tobytes()
        assert go_exp2(x).shape == x.shape


def test_exp2_out_of_range_takes_the_general_path() -> None:
    x = np.array([0.5, 1024.0, -1075.0, np.inf, -np.inf, np.nan])
    result = go_exp2(x)
    assert result[0] == math.sqrt(2.0) or abs(result[0] - math.sqrt(2.0)) < 1e-15
    assert result[1] == np.inf
    assert result[2] == 0.0
    assert result[3] == np.inf
    assert result[4] == 0.0
    assert np.isnan(result[5])


def boundary_amounts(layout: HistogramLayout, unit: float) -> np.ndarray:
    """Integer amounts on and around every bucket start (in 1/unit of the layout's unit)."""
    starts = np.asarray(layout.bucket_starts) * unit
    around = np.floor(starts)[:, None] + np.arange(-3, 4)[None, :]
    return np.unique(np.clip(around.ravel(), 0, None)).astype(np.int64)


def test_cpu_amount_table_equals_bucket_index_exhaustively() -> None:
    # Every millicore value the table holds, then a stretch past its end.
    end = math.ceil(float(CPU_LAYOUT.bucket_starts[-1]) * 1000 * 1.001) + 1
    amounts = np.arange(end + 100_000, dtype=np.int64)
    expected = CPU_LAYOUT.bucket_index(amounts / 1000.0)
    assert np.array_equal(CPU_LAYOUT.amount_bucket_index(amounts, 1000.0), expected)


@given(st.lists(st.integers(min_value=0, max_value=10**14), min_size=1))
def test_cpu_amount_table_beyond_its_end(amounts: list[int]) -> None:
    values = np.array(amounts, dtype=np.int64)
    expected = CPU_LAYOUT.bucket_index(values / 1000.0)
    assert np.array_equal(CPU_LAYOUT.amount_bucket_index(values, 1000.0), expected)


@pytest.mark.parametrize(
    ("layout", "unit"),
    [
        (CPU_LAYOUT, 1000.0),
        (CPU_LAYOUT, 1.0),
        (MEMORY_LAYOUT, 1.0),
        (HistogramLayout(max_value=50.0, first_bucket_size=0.5, ratio=1.1), 100.0),
        (HistogramLayout(max_value=1e9, first_bucket_size=1.0, ratio=1.02), 1.0),
        # Amounts beyond 2**52 at the top: no thresholds, `bucket_index` itself.
        (MEMORY_LAYOUT, 1e6),
    ],
)
def test_amount_bucket_index_on_bucket_boundaries(layout: HistogramLayout, unit: float) -> None:
    amounts = boundary_amounts(layout, unit)
    expected = layout.bucket_index(amounts / unit)
    assert np.array_equal(layout.amount_bucket_index(amounts, unit), expected)


@given(st.lists(st.integers(min_value=0, max_value=10**14), min_size=1))
def test_memory_amount_bucket_index_equals_bucket_index(amounts: list[int]) -> None:
    values = np.array(amounts, dtype=np.int64)
    expected = MEMORY_LAYOUT.bucket_index(values / 1.0)
    assert np.array_equal(MEMORY_LAYOUT.amount_bucket_index(values, 1.0), expected)


def test_memory_amount_bucket_index_on_many_values() -> None:
    rng = np.random.default_rng(3)
    starts = np.asarray(MEMORY_LAYOUT.bucket_starts)
    values = np.concatenate(
        [
            rng.integers(0, 2 * 10**12, 200_000),
            rng.integers(0, 10**14, 20_000),
            (np.floor(starts)[:, None] + np.arange(-200, 201)).ravel().astype(np.int64),
        ]
    )
    values = np.clip(values, 0, None)
    expected = MEMORY_LAYOUT.bucket_index(values / 1.0)
    assert np.array_equal(MEMORY_LAYOUT.amount_bucket_index(values, 1.0), expected)


@pytest.mark.parametrize("top", [3, 200, 60_000, 70_000, 2**40, 2**62])
def test_stable_order_equals_a_stable_argsort(top: int) -> None:
    rng = np.random.default_rng(top % 1000)
    keys = rng.integers(0, top, 50_000)
    keys[::3] = keys[0]  # many ties
    assert np.array_equal(stable_order(keys), np.argsort(keys, kind="stable"))


def scalar_rows(
    layout: HistogramLayout,
    half_life_ns: int,
    rows: np.ndarray,
    t_ns: np.ndarray,
    values: np.ndarray,
) -> list[DecayingHistogram]:
    histograms = [DecayingHistogram(layout, half_life_ns) for _ in range(int(rows.max()) + 1)]
    for row, t, value in zip(rows.tolist(), t_ns.tolist(), values.tolist(), strict=True):
        histograms[row].add_sample(value, 0.1, t)
    return histograms


def assert_rows_equal(arrays: HistogramArrays, histograms: list[DecayingHistogram]) -> None:
    for index, histogram in enumerate(histograms):
        assert arrays.weights[index].tobytes() == histogram.weights.tobytes()
        assert arrays.total_weight[index] == histogram.total_weight
        assert arrays.reference_ns[index] == histogram.reference_ns


@pytest.mark.parametrize("jitter", [False, True])
@pytest.mark.parametrize("stagger_minutes", [0, 7])
def test_grid_samples_decay_exactly_as_one_by_one(jitter: bool, stagger_minutes: int) -> None:
    # Rows whose first sample comes at different times get different references; on a time
    # grid the decay factors are shared, with jitter every sample has its own.
    half_life = 5 * MINUTE
    rows_n, steps = 40, 300
    rng = np.random.default_rng(stagger_minutes + jitter)
    step = np.repeat(np.arange(steps), rows_n)
    rows = np.tile(np.arange(rows_n), steps)
    t_ns = T0 + step * MINUTE + (rng.integers(0, 10**9, step.size) if jitter else 0)
    late = step < (rows % 4) * stagger_minutes
    rows, t_ns = rows[~late], t_ns[~late]
    order = np.argsort(t_ns, kind="stable")
    rows, t_ns = rows[order], t_ns[order]
    values = np.round(rng.gamma(2.0, 0.2, rows.size), 3)
    arrays = HistogramArrays.empty(CPU_LAYOUT, half_life, rows_n)
    add_samples(arrays, rows, t_ns, values, 0.1)
    assert_rows_equal(arrays, scalar_rows(CPU_LAYOUT, half_life, rows, t_ns, values))
    if stagger_minutes:
        assert np.unique(arrays.reference_ns).shape[0] > 1


def grid_trace(containers: int, steps: int, *, stagger_minutes: int, seed: int) -> pl.DataFrame:
    """Samples on a one-minute grid; container i starts (i % 5) * stagger_minutes late."""
    rng = np.random.default_rng(seed)
    step = np.repeat(np.arange(steps), containers)
    container = np.tile(np.arange(containers), steps)
    keep = step >= (container % 5) * stagger_minutes
    step, container = step[keep], container[keep]
    return pl.DataFrame(
        {
            "timestamp": [START + dt.timedelta(minutes=int(s)) for s in step],
            "cluster": "prod",
            "namespace": "shop",
            "workload": [f"w{c // 2}" for c in container],
            "pod": [f"w{c // 2}-pod" for c in container],
            "container": [f"c{c % 2}" for c in container],
            "cpu": rng.gamma(2.0, 0.1, step.size),
            "memory": ((200 + step // 3 + rng.integers(0, 50, step.size)) * MIB).astype(float),
        }
    )


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("stagger_minutes", [0, 3, 11])
def test_grid_trace_ingests_exactly_as_one_by_one(seed: int, stagger_minutes: int) -> None:
    params = ModelParams(
        cpu_histogram_decay_half_life_s=300.0,
        memory_histogram_decay_half_life_s=300.0,
        memory_aggregation_interval_s=3600.0,
    )
    frame = grid_trace(16, 240, stagger_minutes=stagger_minutes, seed=seed)
    scalar = ScalarModel(params)
    expected_skipped = scalar.ingest(prepare_samples(frame))
    store = AggregateStore.empty(params)
    skipped = ingest_samples(store, prepare_samples(frame))
    assert_identical(scalar.to_store(), store)
    assert skipped == expected_skipped


def test_samples_far_older_than_the_reference_decay_exactly_as_one_by_one() -> None:
    # Exponents below Exp2's range (weights of exactly zero) and near its edge (subnormal).
    half_life = MINUTE
    rows = np.array([0, 1, 0, 1, 0, 1] * 400)
    t_ns = T0 + np.repeat(np.arange(1200), 2) * MINUTE
    # The first two samples set the reference at T0 + 1199 minutes: these lie 700 to 1099
    # half-lives before it.
    t_ns[:400] = T0 + (1199 - np.arange(700, 1100)) * MINUTE
    arrays = HistogramArrays.empty(CPU_LAYOUT, half_life, 2)
    scalars = scalar_rows(CPU_LAYOUT, half_life, rows[:2], t_ns[-2:], np.array([0.5, 0.5]))
    add_samples(arrays, rows[:2], t_ns[-2:], np.array([0.5, 0.5]), 0.1)
    for row, t, value in zip(rows.tolist(), t_ns.tolist(), [0.25] * rows.size, strict=True):
        scalars[row].add_sample(value, 0.1, t)
    add_samples(arrays, rows, t_ns, np.full(rows.size, 0.25), 0.1)
    assert_rows_equal(arrays, scalars)
