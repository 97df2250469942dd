"""Shared pytest configuration: tests under tests/integration carry the `integration` mark."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.ray_local import apply_ray_env

# Before any test module imports ray: some of Ray's knobs are read at import time.
apply_ray_env()

_INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _INTEGRATION in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
