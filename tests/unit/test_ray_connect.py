"""Connecting to a Ray cluster through Ray Client: the proxy's per-driver server dying at
birth is retried on a new connection; every other failure is reported at once."""

from __future__ import annotations

from typing import Any

import pytest

from recommender import ray_runtime
from recommender.ray_runtime import RayStartError


class _Context:
    def __init__(self) -> None:
        self.address_info = {"gcs_address": "10.0.0.1:6379"}
        self.dashboard_url = ""


class _Ray:
    """Stands in for the `ray` module's init/shutdown (the real one is in the integration
    tests against a real head): fails the first `failures` calls with `error`."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.inits = 0
        self.shutdowns = 0

    def init(self, **_: Any) -> Any:
        self.inits += 1
        if self.inits <= self.failures:
            raise self.error

        return _Context()

    def shutdown(self) -> None:
        self.shutdowns += 1


DIED = ConnectionAbortedError(
    "Initialization failure from server:\nRuntimeError: Starting Ray client server failed. "
    "See ray_client_server_23000.err for detailed logs."
)


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_runtime.time, "sleep", lambda _: None)


def test_a_client_server_that_died_at_birth_is_retried() -> None:
    ray = _Ray(failures=2, error=DIED)
    runtime = ray_runtime._connect(ray, "ray://head:10001", "vpa-fleet")
    assert (ray.inits, ray.shutdowns) == (3, 2)
    assert runtime.address == "10.0.0.1:6379"
    assert not runtime.embedded


def test_it_gives_up_after_three_attempts_naming_the_address() -> None:
    ray = _Ray(failures=5, error=DIED)
    with pytest.raises(RayStartError, match=r"(?s)ray://head:10001: .*client server failed"):
        ray_runtime._connect(ray, "ray://head:10001", "vpa-fleet")
    assert ray.inits == 3


def test_other_failures_are_not_retried() -> None:
    ray = _Ray(failures=1, error=ConnectionError("token refused"))
    with pytest.raises(RayStartError, match="token refused"):
        ray_runtime._connect(ray, "ray://head:10001", "vpa-fleet")
    assert (ray.inits, ray.shutdowns) == (1, 0)
