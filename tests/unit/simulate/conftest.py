"""Fixtures of the simulation tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from analytics.strategies import STRATEGIES
from analytics.strategies_baselines import register_baselines


@pytest.fixture
def baselines_registered() -> Iterator[None]:
    """The baselines in the engine's registry for one test, which is then put back."""
    before = dict(STRATEGIES)
    register_baselines()
    yield
    STRATEGIES.clear()
    STRATEGIES.update(before)
