"""Malformed VPAs, fuzzed with hypothesis through the real API server: unknown fields, wrong
kinds, absurd quantities, huge containerPolicies. Whatever the API server lets through, a
tick never fails, the well-formed VPA beside them keeps being recommended, and a fuzzed VPA
that cannot be served is reported naming what is wrong."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.sources.prometheus import PrometheusHistory, load_config
from recommender.kube.rest import JSON, KubeApiError, KubeClient, load_api_client
from recommender.loop.cluster import ClusterRecommender, LoopOptions
from testbed.cluster import ControlPlane
from testbed.demo import DemoWorkload, start_demo
from testbed.series import MI, ContainerSpec

APP = ContainerSpec("app", 0.2, 200 * MI, 0.25, 256 * MI)
VPAS = "/apis/autoscaling.k8s.io/v1/namespaces/{}/verticalpodautoscalers"
SEEN: Counter[str] = Counter()
"""What the fuzzed VPAs became, for the check that the fuzzing reached the recommender."""


@dataclass
class Setup:
    kube: KubeClient
    namespace: str
    recommender: ClusterRecommender
    clock: list[dt.datetime]


@pytest.fixture(scope="module")
def setup(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    kube = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    namespace = f"fuzz-{uuid.uuid4().hex[:5]}"
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    demo = start_demo(
        tmp_path_factory.mktemp("fuzz"),
        kube,
        (DemoWorkload("Deployment", namespace, "good", 1, (APP,)),),
        days=0.2,
        step_s=300,
        end=now - dt.timedelta(minutes=10),
    )
    config = load_config({"connection": {"url": demo.prometheus.url}})
    options = LoopOptions(namespaces=(namespace,), history=dt.timedelta(days=1))
    clock = [now]
    recommender = ClusterRecommender(
        kube, PrometheusHistory(config), options, checkpoints=False, clock=lambda: clock[0]
    )
    recommender.start()
    try:
        first = recommender.tick()
        assert [(r.key, r.outcome) for r in first.results] == [(f"{namespace}/good", "written")]
        yield Setup(kube, namespace, recommender, clock)
    finally:
        recommender.stop()
        demo.stop()


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=8,
)
quantities = st.one_of(
    st.sampled_from(["100m", "1", "1e100", "-5", "999999999Ti", "0", "abc", "1.5Gi", "", "NaN"]),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    anything,
)
resource_lists = st.one_of(
    st.dictionaries(st.sampled_from(["cpu", "memory", "gpu", "bogus"]), quantities, max_size=3),
    anything,
)
container_policies = st.fixed_dictionaries(
    {},
    optional={
        "containerName": st.one_of(st.sampled_from(["app", "*", "other"]), anything),
        "mode": st.one_of(st.sampled_from(["Auto", "Off", "Sometimes"]), anything),
        "minAllowed": resource_lists,
        "maxAllowed": resource_lists,
        "controlledResources": st.one_of(
            st.lists(st.sampled_from(["cpu", "memory", "gpu"]), max_size=3), anything
        ),
        "controlledValues": st.one_of(
            st.sampled_from(["RequestsOnly", "RequestsAndLimits", "Everything"]), anything
        ),
        "surprise": anything,
    },
)
target_refs = st.one_of(
    st.fixed_dictionaries(
        {
            "apiVersion": st.sampled_from(["apps/v1", "v1", "example.com/v1", "apps/v2"]),
            "kind": st.sampled_from(["Deployment", "StatefulSet", "Pod", "Widget", ""]),
            "name": st.one_of(st.just("good"), names),
        }
    ),
    anything,
)
specs = st.fixed_dictionaries(
    {"recommenders": st.just([{"name": "vpa-fleet"}])},
    optional={
        "targetRef": target_refs,
        "updatePolicy": st.one_of(
            st.fixed_dictionaries(
                {"updateMode": st.sampled_from(["Off", "Auto", "InPlaceOrRecreate", "Maybe"])}
            ),
            anything,
        ),
        "resourcePolicy": st.one_of(
            st.fixed_dictionaries(
                {"containerPolicies": st.lists(container_policies, min_size=0, max_size=300)}
            ),
            anything,
        ),
        "unknownField": anything,
    },
)


def _create(setup: Setup, name: str, spec: Any) -> JSON | None:
    body = {
        "apiVersion": "autoscaling.k8s.io/v1",
        "kind": "VerticalPodAutoscaler",
        "metadata": {"name": name},
        "spec": spec,
    }
    try:
        return setup.kube.request("POST", VPAS.format(setup.namespace), body=body)
    except KubeApiError as error:
        if error.status not in {400, 422}:
            raise
        SEEN["refused by the API server"] += 1  # nothing to serve
        return None


def _wait_until_seen(setup: Setup, name: str, version: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for cache in setup.recommender.vpa_caches:
            seen = cache.get(setup.namespace, name)
            if seen is not None and seen["metadata"]["resourceVersion"] == version:
                return
        time.sleep(0.05)
    raise AssertionError(f"the watch never delivered VPA {name} at {version}")


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=specs)
def test_a_malformed_vpa_never_fails_the_tick_nor_touches_the_good_one(
    setup: Setup, spec: Any
) -> None:
    name = f"f{uuid.uuid4().hex[:8]}"
    created = _create(setup, name, spec)
    if created is None:
        return
    try:
        _wait_until_seen(setup, name, created["metadata"]["resourceVersion"])
        setup.clock[0] += dt.timedelta(minutes=1)
        report = setup.recommender.tick()
        outcomes = {r.key: r for r in report.results}
        assert outcomes[f"{setup.namespace}/good"].outcome in {"written", "unchanged"}
        fuzzed = outcomes.get(f"{setup.namespace}/{name}")
        SEEN["accepted, " + (fuzzed.outcome if fuzzed else "not served (does not parse)")] += 1
        if fuzzed is not None and fuzzed.outcome == "error":
            assert fuzzed.message, "an error says what is wrong"
    finally:
        setup.kube.request("DELETE", VPAS.format(setup.namespace) + f"/{name}")


def test_the_fuzzing_reached_the_recommender() -> None:
    accepted = sum(n for what, n in SEEN.items() if what.startswith("accepted"))
    assert accepted >= 5, SEEN
