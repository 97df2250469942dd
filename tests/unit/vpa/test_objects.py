"""Parsing VPA objects and deciding which recommender owns them."""

from __future__ import annotations

import pytest

from recommender.vpa.objects import InvalidVpaError, UpdateMode, parse_vpa
from recommender.vpa.selection import is_selected


def _vpa(**spec: object) -> dict[str, object]:
    return {
        "apiVersion": "autoscaling.k8s.io/v1",
        "kind": "VerticalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "shop", "generation": 3},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            **spec,
        },
    }


def test_parses_the_fields_the_recommender_needs() -> None:
    vpa = parse_vpa(
        _vpa(
            recommenders=[{"name": "vpa-fleet"}],
            updatePolicy={"updateMode": "InPlaceOrRecreate"},
            resourcePolicy={
                "containerPolicies": [
                    {"containerName": "*", "minAllowed": {"cpu": "50m"}},
                    {"containerName": "app", "mode": "Off", "controlledResources": ["cpu"]},
                ]
            },
            futureField={"ignored": True},
        )
    )
    assert vpa.key == "shop/web"
    assert vpa.metadata.generation == 3
    assert vpa.update_mode is UpdateMode.IN_PLACE_OR_RECREATE
    assert vpa.spec.target_ref is not None and vpa.spec.target_ref.kind == "Deployment"
    policy = vpa.spec.resource_policy
    assert policy is not None
    app = policy.for_container("app")
    assert app is not None and app.mode == "Off" and app.controlled_resources == ("cpu",)
    sidecar = policy.for_container("sidecar")
    assert sidecar is not None and sidecar.min_allowed == {"cpu": "50m"}


def test_exact_container_policy_wins_wherever_it_is() -> None:
    vpa = parse_vpa(
        _vpa(
            resourcePolicy={
                "containerPolicies": [
                    {"containerName": "app", "maxAllowed": {"cpu": "1"}},
                    {"containerName": "*", "maxAllowed": {"cpu": "2"}},
                ]
            }
        )
    )
    assert vpa.spec.resource_policy is not None
    app = vpa.spec.resource_policy.for_container("app")
    assert app is not None and app.max_allowed == {"cpu": "1"}


def test_no_policy_means_none() -> None:
    vpa = parse_vpa(_vpa(resourcePolicy={"containerPolicies": [{"containerName": "db"}]}))
    assert vpa.spec.resource_policy is not None
    assert vpa.spec.resource_policy.for_container("app") is None


def test_unset_update_mode_is_recreate() -> None:
    assert parse_vpa(_vpa()).update_mode is UpdateMode.RECREATE
    assert parse_vpa(_vpa(updatePolicy={})).update_mode is UpdateMode.RECREATE


def test_bad_object_names_the_vpa_and_the_field() -> None:
    with pytest.raises(InvalidVpaError) as raised:
        parse_vpa(_vpa(updatePolicy={"updateMode": "Sometimes"}))
    message = str(raised.value)
    assert message.startswith("VerticalPodAutoscaler shop/web:")
    assert "spec.updatePolicy.updateMode" in message
    assert "'Sometimes'" in message


@pytest.mark.parametrize(
    ("recommenders", "name", "selected"),
    [
        ([], "default", True),
        ([], "vpa-fleet", False),
        ([{"name": "vpa-fleet"}], "vpa-fleet", True),
        ([{"name": "vpa-fleet"}], "default", False),
        ([{"name": "other"}], "vpa-fleet", False),
        ([{"name": "default"}], "default", True),
    ],
)
def test_selection_follows_spec_recommenders(
    recommenders: list[dict[str, str]], name: str, selected: bool
) -> None:
    assert is_selected(parse_vpa(_vpa(recommenders=recommenders)), name) is selected
