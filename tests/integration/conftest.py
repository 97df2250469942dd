"""Session-scoped fixtures for the real testbed: each component starts once, on free loopback
ports, and is always torn down. A component that cannot be built or started fails the tests
that need it with the component's own error; nothing is ever replaced by a stand-in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client, config

from testbed.cluster import ControlPlane, start_control_plane
from testbed.ray_local import LocalRay, init_local_ray, shutdown_local_ray


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = start_control_plane(tmp_path_factory.mktemp("control-plane"), nodes=2)
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kube_api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def local_ray() -> Iterator[LocalRay]:

    info = init_local_ray(num_cpus=2, dashboard=True)
    try:
        yield info
    finally:
        shutdown_local_ray(info)
