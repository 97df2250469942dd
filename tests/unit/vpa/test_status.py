"""The status the recommender writes and when it writes it."""

from __future__ import annotations

from recommender.vpa.objects import RecommendedContainerResources, VerticalPodAutoscaler, parse_vpa
from recommender.vpa.status import desired_status, stale_status, status_json, worth_writing

T0, T1 = "2026-11-29T00:00:00Z", "2026-11-29T00:01:00Z"


def _vpa(status: dict[str, object] | None = None, generation: int = 2) -> VerticalPodAutoscaler:
    return parse_vpa(
        {
            "metadata": {"name": "web", "namespace": "shop", "generation": generation},
            "spec": {"targetRef": {"kind": "Deployment", "name": "web"}},
            **({"status": status} if status else {}),
        }
    )


def _entry(cpu: str) -> RecommendedContainerResources:
    values = {"cpu": cpu, "memory": "600Mi"}
    return RecommendedContainerResources(
        containerName="app",
        target=values,
        lowerBound=values,
        upperBound=values,
        uncappedTarget=values,
    )


def test_first_status_is_complete_and_camel_case() -> None:
    status = desired_status(_vpa(), [_entry("126m")], pods_matched=True, now=T0)
    body = status_json(status)
    assert body["observedGeneration"] == 2
    assert body["recommendation"]["containerRecommendations"][0]["uncappedTarget"] == {
        "cpu": "126m",
        "memory": "600Mi",
    }
    assert body["conditions"] == [
        {
            "type": "RecommendationProvided",
            "status": "True",
            "lastTransitionTime": T0,
            "reason": "",
            "message": "",
        }
    ]
    assert worth_writing(_vpa().status, status)


def test_same_status_again_is_not_written() -> None:
    first = desired_status(_vpa(), [_entry("126m")], pods_matched=True, now=T0)
    written = _vpa(status_json(first))
    again = desired_status(written, [_entry("126m")], pods_matched=True, now=T1)
    assert again == written.status
    assert not worth_writing(written.status, again)


def test_threshold_skips_small_moves_but_not_large_ones() -> None:
    written = _vpa(status_json(desired_status(_vpa(), [_entry("100m")], pods_matched=True, now=T0)))
    small = desired_status(written, [_entry("104m")], pods_matched=True, now=T1)
    large = desired_status(written, [_entry("120m")], pods_matched=True, now=T1)
    assert worth_writing(written.status, small)  # threshold 0: every change
    assert not worth_writing(written.status, small, threshold=0.05)
    assert worth_writing(written.status, large, threshold=0.05)


def test_losing_pods_is_always_written() -> None:
    written = _vpa(status_json(desired_status(_vpa(), [_entry("100m")], pods_matched=True, now=T0)))
    lost = desired_status(written, [], pods_matched=False, now=T1)
    assert worth_writing(written.status, lost, threshold=10)
    assert [c.type for c in lost.conditions] == ["NoPodsMatched", "RecommendationProvided"]


def test_a_new_generation_is_written() -> None:
    written = _vpa(status_json(desired_status(_vpa(), [_entry("100m")], pods_matched=True, now=T0)))
    bumped = _vpa(status_json(written.status), generation=3)
    again = desired_status(bumped, [_entry("100m")], pods_matched=True, now=T1)
    assert worth_writing(bumped.status, again, threshold=10)


def test_stale_history_keeps_the_recommendation_and_says_since_when() -> None:
    written = _vpa(status_json(desired_status(_vpa(), [_entry("126m")], pods_matched=True, now=T0)))
    stale = stale_status(written, "cannot connect", now=T1)
    assert stale.recommendation == written.status.recommendation
    assert stale.observed_generation == written.status.observed_generation
    conditions = {c.type: c for c in stale.conditions}
    assert (conditions["HistoryStale"].status, conditions["HistoryStale"].message) == (
        "True",
        "cannot connect",
    )
    assert conditions["RecommendationProvided"] == written.status.conditions[0]
    assert worth_writing(written.status, stale)
    still = stale_status(_vpa(status_json(stale)), "cannot connect", now="2026-11-29T00:02:00Z")
    assert still == stale, "the transition time stays at the first failure"
    back = desired_status(_vpa(status_json(stale)), [_entry("126m")], pods_matched=True, now=T1)
    assert "HistoryStale" not in {c.type for c in back.conditions}
