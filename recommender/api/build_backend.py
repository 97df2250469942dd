"""The project's build backend: setuptools, after generating the gRPC stubs.

pyproject.toml names this module (`backend-path = ["."]`), so `pip install .`, `pip install -e .`
(`make install`) and `pip wheel .` (the Dockerfile) all generate `recommender/api/generated/`
from `proto/` first; the wheel then carries the stubs like any other module. Everything else is
setuptools' own backend, re-exported unchanged.
"""

from __future__ import annotations

from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

from recommender.api.generate import generate

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    generate()
    name: str = _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)
    return name


def build_editable(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    generate()
    name: str = _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
    return name


def build_sdist(sdist_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    name: str = _setuptools.build_sdist(sdist_directory, config_settings)
    return name
