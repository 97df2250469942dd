"""Selectors of the VPA's target kinds, their string form, and matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recommender.vpa.targets import (
    Selector,
    SelectorError,
    from_label_selector,
    parse_selector,
    workload_selector,
)

WEB = {"app": "web", "tier": "front"}


def _obj(spec: dict[str, object]) -> dict[str, object]:
    return {"metadata": {"name": "w"}, "spec": spec}


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"])
def test_apps_kinds_use_spec_selector(kind: str) -> None:
    selector = workload_selector(kind, _obj({"selector": {"matchLabels": {"app": "web"}}}))
    assert selector.matches(WEB)
    assert not selector.matches({"app": "db"})


def test_replication_controller_uses_a_plain_map() -> None:
    selector = workload_selector("ReplicationController", _obj({"selector": {"app": "web"}}))
    assert selector.matches(WEB)
    assert not selector.matches({})


def test_cronjob_uses_the_job_template_labels() -> None:
    spec = {"jobTemplate": {"spec": {"template": {"metadata": {"labels": {"app": "web"}}}}}}
    assert workload_selector("CronJob", _obj(spec)).matches(WEB)
    assert not workload_selector("CronJob", _obj({"jobTemplate": {}})).matches(WEB)


def test_missing_selector_matches_nothing_and_empty_matches_everything() -> None:
    assert not workload_selector("Deployment", _obj({})).matches(WEB)
    assert workload_selector("Deployment", _obj({"selector": {}})).matches(WEB)


def test_match_expressions() -> None:
    selector = from_label_selector(
        {
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "app", "operator": "NotIn", "values": ["db"]},
                {"key": "app", "operator": "Exists"},
            ]
        },
        "test",
    )
    assert selector.matches(WEB)
    assert not selector.matches({**WEB, "canary": "1"})
    assert not selector.matches({"app": "db", "tier": "front"})
    assert not selector.matches({"tier": "front"})


def test_bad_operator_is_named() -> None:
    with pytest.raises(SelectorError, match=r"matchExpressions\[0\]\.operator 'Like'"):
        from_label_selector({"matchExpressions": [{"key": "a", "operator": "Like"}]}, "w")


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(SelectorError, match="Rollout is not a well-known controller"):
        workload_selector("Rollout", _obj({}))


def test_scale_selector_strings() -> None:
    selector = parse_selector("app=web,tier in (front, edge),!canary,env!=prod,team", "scale")
    assert selector.matches({**WEB, "team": "a"})
    assert not selector.matches(WEB)  # no team label
    assert not selector.matches({**WEB, "team": "a", "env": "prod"})
    assert parse_selector("app==web", "scale").matches(WEB)
    assert parse_selector("tier notin (back)", "scale").matches(WEB)


@pytest.mark.parametrize("text", ["", "app=web,,", "!tier in (a)", "a b"])
def test_bad_scale_selector_strings(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(text, "scale")


_label = st.text(alphabet="abcxyz", min_size=1, max_size=3)


@given(st.dictionaries(_label, _label, max_size=4), st.dictionaries(_label, _label, max_size=4))
def test_match_labels_string_and_object_forms_agree(
    wanted: dict[str, str], labels: dict[str, str]
) -> None:
    as_object = from_label_selector({"matchLabels": wanted}, "test")
    expected = all(labels.get(k) == v for k, v in wanted.items())
    assert as_object.matches(labels) is expected
    if wanted:
        text = ",".join(f"{k}={v}" for k, v in wanted.items())
        assert parse_selector(text, "test").matches(labels) is expected


def test_nothing_matches_nothing() -> None:
    assert not Selector.nothing().matches({})
    assert Selector().matches({})
