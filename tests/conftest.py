"""Shared pytest configuration: tests under tests/integration carry the `integration` mark."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

from testbed.ray_local import apply_ray_env

# Before any test module imports ray: some of Ray's knobs are read at import time.
apply_ray_env()

# No deadline on hypothesis examples: a deadline is a timing assert, and this machine is shared
# and noisy; what a property test checks is the property.
settings.register_profile("vpa-fleet", deadline=None)
settings.load_profile("vpa-fleet")

_INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _INTEGRATION in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
