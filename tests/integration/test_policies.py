"""RecommenderPolicy on the real testbed: the API server rejects invalid policies naming the
field; the loop applies the winning policy of each VPA (priority, then name), exactly as the
one-cluster loop configured with the same settings would; an invalid policy keeps its VPAs'
recommendations as written and says why in its status."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from analytics.sources.prometheus import PrometheusHistory, PrometheusSourceConfig, load_config
from recommender.kube.rest import JSON, MERGE_PATCH, KubeApiError, KubeClient, load_api_client
from recommender.kube.status_writer import vpa_path
from recommender.loop.cluster import ClusterRecommender, LoopOptions, TickReport
from recommender.policy.objects import API_PATH
from testbed.cluster import ControlPlane
from testbed.demo import DEMO, Demo, start_demo

HISTORY = dt.timedelta(days=8)
P50_CPU = {"target_cpu_percentile": 0.5}


@dataclass
class Setup:
    kube: KubeClient
    demo: Demo
    config: PrometheusSourceConfig
    now: dt.datetime
    shop: str
    batch: str

    def options(self, **changes: object) -> LoopOptions:
        namespaces = (self.shop, self.batch)
        return LoopOptions(cluster="testbed", namespaces=namespaces, history=HISTORY, **changes)  # type: ignore[arg-type]

    def tick(self, options: LoopOptions) -> TickReport:
        recommender = ClusterRecommender(
            self.kube,
            PrometheusHistory(self.config),
            options,
            checkpoints=False,
            clock=lambda: self.now,
        )
        recommender.start()
        try:
            return recommender.tick()
        finally:
            recommender.stop()

    def recommendations(self) -> dict[tuple[str, str], JSON]:
        return {
            (w.namespace, w.name): self.kube.get(vpa_path(w.namespace, w.name))["status"][
                "recommendation"
            ]
            for w in self.demo.workloads
            if w.vpa is not None and w.vpa.recommender == "vpa-fleet"
        }

    def policy(self, namespace: str, name: str) -> JSON:
        return self.kube.get(f"{API_PATH}/namespaces/{namespace}/recommenderpolicies/{name}")


def _policy(namespace: str, name: str, spec: JSON) -> JSON:
    return {
        "apiVersion": "vpa-fleet.io/v1alpha1",
        "kind": "RecommenderPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def _create(kube: KubeClient, namespace: str, name: str, spec: JSON) -> JSON:
    path = f"{API_PATH}/namespaces/{namespace}/recommenderpolicies"
    return kube.request("POST", path, body=_policy(namespace, name, spec))


@pytest.fixture(scope="module")
def setup(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    kube = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    prefix = f"p{uuid.uuid4().hex[:4]}-"
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    demo = start_demo(
        tmp_path_factory.mktemp("policy-prometheus"),
        kube,
        DEMO,
        namespace_prefix=prefix,
        end=now - dt.timedelta(minutes=10),
    )
    try:
        config = load_config({"connection": {"url": demo.prometheus.url}, "cluster": "testbed"})
        yield Setup(kube, demo, config, now, shop=f"{prefix}shop", batch=f"{prefix}batch")
    finally:
        demo.stop()


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"statusChangeThreshold": 2}, "spec.statusChangeThreshold"),
        ({"strategy": "magic"}, "spec.strategy"),
        ({"priority": 5000}, "spec.priority"),
        ({"historyDays": 0}, "spec.historyDays"),
        ({"maxAllowed": {"cpu": "lots"}}, "spec.maxAllowed.cpu"),
        ({"actuator": {"mode": "yolo"}}, "spec.actuator.mode"),
        ({"actuator": {"cooldownSeconds": -1}}, "spec.actuator.cooldownSeconds"),
        (
            {"vpaSelector": {"matchExpressions": [{"key": "tier", "operator": "In"}]}},
            "spec.vpaSelector.matchExpressions[0]",
        ),
    ],
)
def test_the_api_server_rejects_an_invalid_policy_naming_the_field(
    setup: Setup, spec: JSON, field: str
) -> None:
    with pytest.raises(KubeApiError) as raised:
        _create(setup.kube, setup.shop, f"bad-{uuid.uuid4().hex[:6]}", spec)
    assert raised.value.status == 422
    assert field in raised.value.message


def test_the_winning_policy_sets_how_each_vpa_is_recommended(setup: Setup) -> None:
    kube, shop, batch = setup.kube, setup.shop, setup.batch
    # What the one-cluster loop writes when configured with each policy's settings.
    setup.tick(setup.options(strategy="krr-simple"))
    krr = setup.recommendations()
    setup.tick(setup.options())
    default = setup.recommendations()
    setup.tick(setup.options(strategy_params=P50_CPU))
    p50 = setup.recommendations()
    assert krr[(shop, "web")] != p50[(shop, "web")], "the settings must tell apart"
    assert default[(batch, "etl")] != p50[(batch, "etl")], "the settings must tell apart"

    kube.request(
        "PATCH",
        vpa_path(shop, "web"),
        body={"metadata": {"labels": {"tier": "frontend"}}},
        content_type=MERGE_PATCH,
    )
    _create(
        kube,
        shop,
        "frontend",
        {
            "vpaSelector": {"matchLabels": {"tier": "frontend"}},
            "priority": 10,
            "strategy": "krr-simple",
        },
    )
    _create(kube, shop, "everyone", {"strategyParams": P50_CPU})
    _create(kube, batch, "broken", {"strategyParams": {"target_cpu_percentile": 0.5, "bogus": 1}})

    report = setup.tick(setup.options())

    after = setup.recommendations()
    for (namespace, name), recommendation in after.items():
        if (namespace, name) == (shop, "web"):
            assert recommendation == krr[(shop, "web")], "the higher priority wins"
        else:  # shop: `everyone`; batch: kept as written (p50) while `broken` is invalid
            assert recommendation == p50[(namespace, name)], (namespace, name)
    errors = {r.key: r.message for r in report.results if r.outcome == "error"}
    assert set(errors) == {f"{batch}/etl", f"{batch}/reports"}
    assert all(f"RecommenderPolicy {batch}/broken" in m and "bogus" in m for m in errors.values())

    ours_in_shop = sum(1 for namespace, _ in after if namespace == shop)
    for name, matched, valid in (("frontend", 1, "True"), ("everyone", ours_in_shop - 1, "True")):
        status = setup.policy(shop, name)["status"]
        assert status["matchedVPAs"] == matched
        assert [c["status"] for c in status["conditions"] if c["type"] == "Valid"] == [valid]
    broken = setup.policy(batch, "broken")["status"]
    assert broken["matchedVPAs"] == 2
    (condition,) = broken["conditions"]
    assert (condition["status"], condition["reason"]) == ("False", "InvalidSpec")
    assert "spec.strategyParams" in condition["message"]
    assert "bogus" in condition["message"]

    # Fixed, the policy is valid again and its VPAs are recommended with the default settings.
    kube.request(
        "PATCH",
        f"{API_PATH}/namespaces/{batch}/recommenderpolicies/broken",
        body={"spec": {"strategyParams": None}},
        content_type=MERGE_PATCH,
    )
    setup.tick(setup.options())
    fixed = setup.recommendations()
    assert fixed[(batch, "etl")] == default[(batch, "etl")]
    assert setup.policy(batch, "broken")["status"]["conditions"][0]["status"] == "True"
