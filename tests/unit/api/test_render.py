"""What `inspect` and `explain` print, from API messages: every format carries the status
values unchanged; the explanation text marks the percentile buckets and ends at the status."""

from __future__ import annotations

import csv
import io
import json

import yaml

from recommender.api.convert import explanation_message
from recommender.api.generated.vpafleet.v1 import inspection_pb2 as pb
from recommender.inspection.explain import explain_container
from recommender.inspection.render import (
    explanation_output,
    explanation_text,
    recommendations_text,
)
from recommender.inspection.summary import container_requests, recommendation, savings
from recommender.vpa.objects import parse_vpa
from tests.unit.api.test_explain_logic import _state, _vpa

VPA = {
    "apiVersion": "autoscaling.k8s.io/v1",
    "kind": "VerticalPodAutoscaler",
    "metadata": {"name": "web", "namespace": "shop", "labels": {"team": "a"}},
    "spec": {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "recommenders": [{"name": "vpa-fleet"}],
    },
    "status": {
        "recommendation": {
            "containerRecommendations": [
                {
                    "containerName": "web",
                    "target": {"cpu": "126m", "memory": "262144k"},
                    "lowerBound": {"cpu": "25m", "memory": "262144k"},
                    "upperBound": {"cpu": "1", "memory": "1Gi"},
                    "uncappedTarget": {"cpu": "126m", "memory": "262144k"},
                }
            ]
        }
    },
}


def _pod(cpu: str, memory: str, phase: str = "Running") -> dict[str, object]:
    return {
        "metadata": {"name": "web-1", "namespace": "shop"},
        "spec": {
            "containers": [
                {"name": "web", "resources": {"requests": {"cpu": cpu, "memory": memory}}}
            ]
        },
        "status": {"phase": phase},
    }  # fmt: skip


def _message() -> pb.Recommendation:
    pods = [_pod("500m", "512Mi"), _pod("500m", "512Mi"), _pod("1", "1Gi", phase="Succeeded")]
    return recommendation("eu-1", parse_vpa(VPA), pods)


def test_requests_are_the_most_common_and_savings_count_running_pods() -> None:
    pods = [_pod("500m", "512Mi"), _pod("500m", "512Mi"), _pod("250m", "512Mi")]
    assert container_requests(pods, "web") == {"cpu": "500m", "memory": "512Mi"}
    assert container_requests(pods, "other") == {}
    assert savings({"cpu": "500m", "memory": "512Mi"}, {"cpu": "126m", "memory": "262144k"}, 2) == {
        "cpu": 748.0,
        "memory": 2 * (512 * 2**20 - 262144000),
    }
    message = _message()
    assert message.pods == 2
    (container,) = message.containers
    assert container.savings["cpu"] == 748.0


def test_every_format_carries_the_status_values() -> None:
    message = _message()
    rows = json.loads(recommendations_text([message], "json"))
    assert rows[0]["containers"][0]["target"] == {"cpu": "126m", "memory": "262144k"}
    assert rows[0]["containers"][0]["upper_bound"] == {"cpu": "1", "memory": "1Gi"}
    assert yaml.safe_load(recommendations_text([message], "yaml")) == rows
    (row,) = csv.DictReader(io.StringIO(recommendations_text([message], "csv")))
    assert (row["target_cpu"], row["target_memory"], row["savings_cpu_millicores"]) == (
        "126m",
        "262144k",
        "748",
    )
    table = recommendations_text([message], "table").splitlines()
    assert table[0].split()[:4] == ["NAMESPACE", "VPA", "WORKLOAD", "CONTAINER"]
    assert table[1].split() == [
        "shop", "web", "Deployment/web", "web", "2", "500m/512Mi", "126m/262144k",
        "25m/262144k", "1/1Gi", "748m/524Mi",
    ]  # fmt: skip
    assert recommendations_text([], "table") == "no VPA of ours found"


def test_the_explanation_text_marks_the_buckets_and_the_steps() -> None:
    _, snapshots, end = _state()
    vpa = _vpa({"containerPolicies": [{"containerName": "app", "maxAllowed": {"memory": "600Mi"}}]})
    message = explanation_message(
        explain_container(cluster="prod", vpa=vpa, container="app", aggregates=snapshots, as_of=end)
    )
    text = explanation_text(message)
    assert "VPA shop/api (cluster prod), container app" in text
    assert "<target p90" in text and "<lower p50" in text and "<upper p95" in text
    assert "cap          maxAllowed 600Mi (containerPolicy app)" in text
    assert "written      600Mi" in text
    assert "note: the VPA's status has no recommendation for this container" in text
    assert json.loads(explanation_output(message, "json"))["container"] == "app"
