"""Conditions as the stock recommender sets them."""

from __future__ import annotations

from recommender.vpa.conditions import updated_conditions
from recommender.vpa.objects import Condition

T0, T1 = "2026-11-29T00:00:00Z", "2026-11-29T01:00:00Z"


def _by_type(conditions: tuple[Condition, ...]) -> dict[str, Condition]:
    return {c.type: c for c in conditions}


def test_first_recommendation() -> None:
    conditions = updated_conditions((), pods_matched=True, has_recommendation=True, now=T0)
    assert [c.type for c in conditions] == ["RecommendationProvided"]
    provided = conditions[0]
    assert (provided.status, provided.reason, provided.message) == ("True", "", "")
    assert provided.last_transition_time == T0


def test_transition_time_is_kept_while_the_status_holds() -> None:
    first = updated_conditions((), pods_matched=True, has_recommendation=True, now=T0)
    again = updated_conditions(first, pods_matched=True, has_recommendation=True, now=T1)
    assert again == first


def test_no_pods_matched_sets_both_conditions_sorted() -> None:
    first = updated_conditions((), pods_matched=True, has_recommendation=True, now=T0)
    conditions = updated_conditions(first, pods_matched=False, has_recommendation=False, now=T1)
    assert [c.type for c in conditions] == ["NoPodsMatched", "RecommendationProvided"]
    by_type = _by_type(conditions)
    assert by_type["NoPodsMatched"].status == "True"
    assert by_type["NoPodsMatched"].message == "No pods match this VPA object"
    provided = by_type["RecommendationProvided"]
    assert (provided.status, provided.reason) == ("False", "NoPodsMatched")
    assert provided.last_transition_time == T1


def test_pods_back_remove_no_pods_matched() -> None:
    lost = updated_conditions((), pods_matched=False, has_recommendation=False, now=T0)
    back = updated_conditions(lost, pods_matched=True, has_recommendation=True, now=T1)
    assert [c.type for c in back] == ["RecommendationProvided"]
    assert back[0].status == "True" and back[0].last_transition_time == T1


def test_config_unsupported_and_deprecated() -> None:
    stale = (Condition(type="ConfigDeprecated", status="True", reason="x"),)
    bad = updated_conditions(
        stale,
        pods_matched=False,
        has_recommendation=False,
        now=T0,
        config_unsupported="Unknown error during checking if target apps/v1/Foo bar ...",
    )
    by_type = _by_type(bad)
    assert "ConfigDeprecated" not in by_type
    assert by_type["ConfigUnsupported"].status == "True"
    assert by_type["ConfigUnsupported"].reason == ""
    fixed = updated_conditions(bad, pods_matched=True, has_recommendation=True, now=T1)
    assert "ConfigUnsupported" not in _by_type(fixed)
