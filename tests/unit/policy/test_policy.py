"""RecommenderPolicy parsing and resolution (pure)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from analytics.strategies import STRATEGIES
from recommender.kube.rest import JSON
from recommender.policy.objects import parse_policy
from recommender.policy.resolve import Defaults, choose, effective, policy_status, status_differs

ROOT = Path(__file__).resolve().parents[3]

DEFAULTS = Defaults(
    strategy="vpa",
    strategy_params={"target_cpu_percentile": 0.8},
    history=dt.timedelta(days=8),
    status_change_threshold=0.0,
    max_allowed={"cpu": "4"},
)


def _obj(name: str, spec: object, namespace: str = "shop", generation: int = 1) -> JSON:
    return {
        "metadata": {"name": name, "namespace": namespace, "generation": generation},
        "spec": spec,
    }


def test_a_full_policy_is_read() -> None:
    policy = parse_policy(
        _obj(
            "batch",
            {
                "vpaSelector": {"matchLabels": {"tier": "batch"}},
                "priority": 3,
                "strategy": "krr-simple",
                "strategyParams": {"cpu_percentile": 0.9},
                "historyDays": 2.5,
                "statusChangeThreshold": 0.1,
                "maxAllowed": {"memory": "8Gi"},
                "actuator": {"enabled": True, "mode": "patch", "cooldownSeconds": 600},
            },
        )
    )
    assert policy.problem is None
    assert policy.picks({"tier": "batch"})
    assert not policy.picks({"tier": "web"})
    settings = policy.settings
    assert (policy.priority, settings.strategy) == (3, "krr-simple")
    assert settings.history == dt.timedelta(days=2.5)
    assert settings.max_allowed == (("memory", "8Gi"),)
    assert (settings.actuator.enabled, settings.actuator.cooldown_s) == (True, 600)


def test_no_selector_picks_every_vpa_of_the_namespace() -> None:
    assert parse_policy(_obj("all", {})).picks({})


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"historyDays": -1}, "spec.historyDays"),
        ({"maxAllowed": {"cpu": "lots"}}, "spec.maxAllowed.cpu"),
        ({"maxAllowed": {"cpu": "-1"}}, "spec.maxAllowed.cpu"),
        ({"strategyParams": {"cpu_histogram_decay_half_life_s": 60}}, "recommender's setting"),
        ({"surprise": 1}, "spec.surprise: unknown field"),
    ],
)
def test_settings_that_cannot_be_read_keep_the_policy_governing(spec: JSON, expected: str) -> None:
    policy = parse_policy(_obj("p", spec))
    assert policy.problem is not None
    assert "RecommenderPolicy shop/p" in policy.problem
    assert expected in policy.problem
    assert policy.picks({}), "its VPAs stay its own, to be kept as written"


@pytest.mark.parametrize(
    "spec",
    [
        None,
        {"vpaSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}},
        {"priority": "high"},
    ],
)
def test_a_policy_whose_selector_cannot_be_read_governs_nothing(spec: object) -> None:
    policy = parse_policy(_obj("p", spec))
    assert policy.problem
    assert not policy.picks({})


def test_the_highest_priority_wins_then_the_first_name() -> None:
    low = parse_policy(_obj("a-low", {"priority": -1}))
    high_b = parse_policy(_obj("b-high", {"priority": 5}))
    high_c = parse_policy(_obj("c-high", {"priority": 5}))
    other = parse_policy(_obj("z", {"priority": 9, "vpaSelector": {"matchLabels": {"x": "y"}}}))
    assert choose([low, high_c, other, high_b], {}) is high_b
    assert choose([low, high_c, other, high_b], {"x": "y"}) is other
    assert choose([other], {}) is None


def test_effective_settings_lay_the_policy_over_the_recommenders() -> None:
    none = effective(DEFAULTS, None)
    assert none.strategy_params == (("target_cpu_percentile", 0.8),)
    assert none.max_allowed == (("cpu", "4"),)

    same = parse_policy(_obj("p", {"strategyParams": {"target_memory_percentile": 0.95}}))
    merged = effective(DEFAULTS, same)
    assert merged.strategy == "vpa"
    assert dict(merged.strategy_params) == {
        "target_cpu_percentile": 0.8,
        "target_memory_percentile": 0.95,
    }

    other = parse_policy(
        _obj("q", {"strategy": "percentile", "maxAllowed": {"memory": "1Gi"}, "historyDays": 1})
    )
    switched = effective(DEFAULTS, other)
    assert switched.strategy_params == (), "the recommender's parameters are vpa's, not these"
    assert dict(switched.max_allowed) == {"cpu": "4", "memory": "1Gi"}
    assert switched.history == dt.timedelta(days=1)
    assert switched.status_change_threshold == 0.0


def test_the_status_moves_its_transition_time_only_when_validity_changes() -> None:
    policy = parse_policy(_obj("p", {}, generation=4))
    first = policy_status(policy, None, 3, "2026-01-01T00:00:00Z")
    assert first["observedGeneration"] == 4
    assert status_differs(policy, first)
    written = parse_policy({**_obj("p", {}, generation=4), "status": first})
    again = policy_status(written, None, 3, "2026-01-02T00:00:00Z")
    assert again == first
    assert not status_differs(written, again)
    broken = policy_status(written, "bad", 3, "2026-01-03T00:00:00Z")
    assert broken["conditions"] == [
        {
            "type": "Valid",
            "status": "False",
            "reason": "InvalidSpec",
            "message": "bad",
            "lastTransitionTime": "2026-01-03T00:00:00Z",
        }
    ]


labels = st.dictionaries(st.sampled_from("abc"), st.sampled_from("xy"), max_size=3)


@given(
    st.lists(
        st.tuples(st.integers(-3, 3), labels, st.text("abc", min_size=1, max_size=3)),
        max_size=6,
        unique_by=lambda t: t[2],
    ),
    labels,
)
def test_the_chosen_policy_picks_the_vpa_and_none_outranks_it(
    specs: list[tuple[int, dict[str, str], str]], vpa_labels: dict[str, str]
) -> None:
    policies = [
        parse_policy(_obj(name, {"priority": p, "vpaSelector": {"matchLabels": sel}}))
        for p, sel, name in specs
    ]
    chosen = choose(policies, vpa_labels)
    picking = [p for p in policies if p.picks(vpa_labels)]
    if chosen is None:
        assert not picking
        return
    assert chosen.picks(vpa_labels)
    assert all(
        (p.priority, p.name) == (chosen.priority, chosen.name)
        or p.priority < chosen.priority
        or (p.priority == chosen.priority and p.name > chosen.name)
        for p in picking
    )


def test_the_crd_offers_exactly_the_registered_strategies() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "recommenderpolicies.vpa-fleet.io.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert sorted(spec["properties"]["strategy"]["enum"]) == sorted(STRATEGIES)
