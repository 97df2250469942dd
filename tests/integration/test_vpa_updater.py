"""The stock VPA updater and admission controller (the pinned VPA release) acting on what
vpa-fleet writes, on the testbed, with the simulated kubelet answering resizes.

A VPA in `InPlaceOrRecreate` naming vpa-fleet gets a recommendation outside its pods'
requests (written by our StatusWriter): the stock updater resizes the pods in place (same
UID, new requests in spec and, once the kubelet actuates it, in status). What it does when
the kubelet does not actuate a resize is recorded here as findings (docs/actuation.md):
`Infeasible` -> eviction, after which the admission controller gives the new pod the
recommendation; `Deferred` -> it waits (5 minutes at this release); a workload with fewer
replicas than `--min-replicas` is never touched.

The components run on the session's control plane confined to this module's namespace
(`--vpa-object-namespace`), so other tests' pods are neither mutated, resized nor evicted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import pytest
from kubernetes import client

from recommender.kube.rest import (
    JSON,
    JSON_PATCH,
    MERGE_PATCH,
    KubeApiError,
    KubeClient,
)
from recommender.kube.status_writer import StatusWriter, WriteResult, vpa_path
from recommender.vpa.objects import RecommendedContainerResources, parse_vpa
from recommender.vpa.status import desired_status
from testbed import demo
from testbed.cluster import ControlPlane
from testbed.kubelet_sim import (
    RESIZE_ANNOTATION,
    RESIZE_IN_PROGRESS,
    RESIZE_PENDING,
    Answer,
    KubeletSimulator,
    Outcome,
)
from testbed.vpa_components import (
    AdmissionController,
    Updater,
)
from tests.integration.kube_helpers import (
    eventually,
    exists,
    quantities,
    unique_namespace,
    updater_bed,
)

INTERVAL_S = 5.0
REQUESTS = {"cpu": "100m", "memory": "128Mi"}
LIMITS = {"memory": "256Mi"}
TARGET = {"cpu": "250m", "memory": "256Mi"}
LOWER = {"cpu": "200m", "memory": "200Mi"}
UPPER = {"cpu": "500m", "memory": "512Mi"}
# RequestsAndLimits (the default): the memory limit keeps its ratio to the request.
TARGET_LIMITS = {"memory": "512Mi"}
RESIZE_CONDITIONS = {RESIZE_PENDING, RESIZE_IN_PROGRESS}


@dataclass
class Actuation:
    kube: KubeClient
    namespace: str
    simulator: KubeletSimulator
    admission: AdmissionController
    updater: Updater

    def pods(self, app: str) -> list[JSON]:
        items, _ = self.kube.list_all(
            f"/api/v1/namespaces/{self.namespace}/pods", labelSelector=f"app={app}"
        )
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def events(self, reason: str) -> list[JSON]:
        items, _ = self.kube.list_all(
            f"/api/v1/namespaces/{self.namespace}/events", fieldSelector=f"reason={reason}"
        )
        return items


@pytest.fixture(scope="module")
def actuation(control_plane: ControlPlane, kube_api: client.ApiClient) -> Iterator[Actuation]:
    with updater_bed(control_plane, kube_api, "actuation", interval_s=INTERVAL_S) as bed:
        yield Actuation(bed.kube, bed.namespace, bed.simulator, bed.admission, bed.updater)


def _container(pod: JSON) -> JSON:
    containers: list[JSON] = pod["spec"]["containers"]
    return containers[0]


def _status_resources(pod: JSON) -> JSON | None:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return statuses[0].get("resources") if statuses else None


def _requests(pod: JSON) -> dict[str, Fraction]:
    return quantities(_container(pod).get("resources", {}).get("requests"))


def _limits(pod: JSON) -> dict[str, Fraction]:
    return quantities(_container(pod).get("resources", {}).get("limits"))


def _resize_conditions(pod: JSON) -> dict[str, JSON]:
    return {
        c["type"]: c
        for c in pod.get("status", {}).get("conditions") or []
        if c["type"] in RESIZE_CONDITIONS
    }


def _running(pod: JSON) -> bool:
    return pod.get("status", {}).get("phase") == "Running" and _status_resources(pod) is not None


def _settled(pod: JSON, requests: dict[str, str], limits: dict[str, str]) -> bool:
    """Running with `requests` and `limits` in spec, the kubelet reporting the same, and no
    resize pending or in progress."""
    status = _status_resources(pod) or {}
    return (
        _running(pod)
        and _requests(pod) == quantities(requests)
        and _limits(pod) == quantities(limits)
        and quantities(status.get("requests")) == quantities(requests)
        and quantities(status.get("limits")) == quantities(limits)
        and not _resize_conditions(pod)
    )


def _deploy(
    actuation: Actuation, name: str, replicas: int, answer: Answer | None = None
) -> list[JSON]:
    """A VPA (InPlaceOrRecreate, naming vpa-fleet) and its Deployment; returns the running
    pods once the kubelet has reported their resources."""
    kube, namespace = actuation.kube, actuation.namespace
    kube.request(
        "POST",
        f"/apis/autoscaling.k8s.io/v1/namespaces/{namespace}/verticalpodautoscalers",
        body=demo.vpa_manifest(namespace, name, "Deployment"),
    )
    container = demo.container_manifest(
        "app", requests=REQUESTS, limits=LIMITS, image="registry.example/app:1"
    )
    template = demo.pod_template(name, [container])
    if answer is not None:
        template["metadata"]["annotations"] = {RESIZE_ANNOTATION: answer.value}
    kube.request(
        "POST",
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        body=demo.workload_manifest("Deployment", name, template, replicas=replicas),
    )
    return eventually(
        lambda: (
            pods
            if len(pods := actuation.pods(name)) == replicas
            and all(_settled(p, REQUESTS, LIMITS) for p in pods)
            else None
        ),
        90,
        f"{replicas} running pods of {name} with their resources reported",
    )


def _recommend(actuation: Actuation, name: str) -> None:
    """Write TARGET (bounds LOWER..UPPER) as vpa-fleet does: the pods' 100m CPU request is
    below the lower bound, so the updater acts at once."""
    path = vpa_path(actuation.namespace, name)
    vpa = parse_vpa(actuation.kube.get(path))
    entry = RecommendedContainerResources(
        containerName="app",
        target=TARGET,
        lowerBound=LOWER,
        upperBound=UPPER,
        uncappedTarget=TARGET,
    )
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = desired_status(vpa, [entry], pods_matched=True, now=now)
    assert StatusWriter(actuation.kube).write(vpa, status) is WriteResult.WRITTEN


def _uids(pods: list[JSON]) -> set[str]:
    return {p["metadata"]["uid"] for p in pods}


def _involved(events: list[JSON]) -> set[str]:
    return {e["involvedObject"].get("uid", "") for e in events}


def test_admission_controller_sees_the_pods_of_our_vpas(actuation: Actuation) -> None:
    pods = _deploy(actuation, "observed", replicas=2)
    # The webhook ran for each pod: it found the VPA (no recommendation yet, so no change).
    for pod in pods:
        assert pod["metadata"]["annotations"]["vpaObservedContainers"] == "app"
        assert "vpaUpdates" not in pod["metadata"]["annotations"]


def test_stock_updater_resizes_in_place(actuation: Actuation) -> None:
    pods = _deploy(actuation, "web", replicas=2)
    before = _uids(pods)

    _recommend(actuation, "web")

    after = eventually(
        lambda: (
            pods
            if _uids(pods := actuation.pods("web")) == before
            and all(_settled(p, TARGET, TARGET_LIMITS) for p in pods)
            else None
        ),
        20 * INTERVAL_S,
        "both pods of web resized in place (same UIDs) to the target",
    )
    for pod in after:
        assert pod["metadata"]["annotations"].get("vpaInPlaceUpdated") == "true"
        outcomes = [a.outcome for a in actuation.simulator.actions(pod["metadata"]["uid"])]
        assert outcomes == [Outcome.REPORTED, Outcome.RESIZED]
    assert before <= _involved(actuation.events("InPlaceResizedByVPA"))
    assert not before & _involved(actuation.events("EvictedByVPA"))


def test_infeasible_resize_is_evicted_and_readmitted_with_the_target(
    actuation: Actuation,
) -> None:
    """Finding: at this release the stock updater evicts a pod whose resize the kubelet
    answers `Infeasible` without waiting, as soon as the group's disruption budget allows
    (one pod of two per loop: --eviction-tolerance 0.5); the ReplicaSet's new pod is given
    the target by the admission controller at creation."""
    pods = _deploy(actuation, "stuck", replicas=2, answer=Answer.INFEASIBLE)
    before = _uids(pods)

    _recommend(actuation, "stuck")

    eventually(
        lambda: any(
            a.outcome is Outcome.INFEASIBLE and a.uid in before
            for a in actuation.simulator.actions()
        ),
        20 * INTERVAL_S,
        "the updater's resize answered Infeasible by the kubelet",
    )
    replaced = eventually(
        lambda: (
            pods
            if len(pods := actuation.pods("stuck")) == 2
            and not _uids(pods) & before
            and all(_settled(p, TARGET, TARGET_LIMITS) for p in pods)
            else None
        ),
        30 * INTERVAL_S,
        "both pods of stuck evicted and replaced by pods admitted with the target",
    )
    for pod in replaced:
        # Admitted with the recommendation: no resize was needed for the new pods.
        assert "cpu request" in pod["metadata"]["annotations"]["vpaUpdates"]
        assert [a.outcome for a in actuation.simulator.actions(pod["metadata"]["uid"])] == [
            Outcome.REPORTED
        ]
    assert before <= _involved(actuation.events("EvictedByVPA"))
    vpa_uid = actuation.kube.get(vpa_path(actuation.namespace, "stuck"))["metadata"]["uid"]
    assert vpa_uid in _involved(actuation.events("EvictedPod"))


def test_deferred_resize_is_waited_for_then_completes_in_place(actuation: Actuation) -> None:
    """Finding: a resize the kubelet answers `Deferred` is left alone (for 5 minutes at
    this release, then the pod is evicted); once the kubelet actuates it the pod keeps its
    UID."""
    pods = _deploy(actuation, "deferred", replicas=2, answer=Answer.DEFERRED)
    before = _uids(pods)

    _recommend(actuation, "deferred")

    def deferred() -> list[JSON] | None:
        pods = actuation.pods("deferred")
        return (
            pods
            if _uids(pods) == before
            and all(
                _requests(p) == quantities(TARGET)
                and quantities((_status_resources(p) or {}).get("requests")) == quantities(REQUESTS)
                and _resize_conditions(p).get(RESIZE_PENDING, {}).get("reason") == "Deferred"
                for p in pods
            )
            else None
        )

    eventually(deferred, 20 * INTERVAL_S, "both resizes of deferred answered Deferred")
    actuation.updater.wait_loops(3)
    assert deferred(), "the updater evicted a pod with a Deferred resize within a minute"

    for uid_pod in actuation.pods("deferred"):
        actuation.kube.request(
            "PATCH",
            f"/api/v1/namespaces/{actuation.namespace}/pods/{uid_pod['metadata']['name']}",
            body={"metadata": {"annotations": {RESIZE_ANNOTATION: None}}},
            content_type=MERGE_PATCH,
        )
    eventually(
        lambda: (
            _uids(pods := actuation.pods("deferred")) == before
            and all(_settled(p, TARGET, TARGET_LIMITS) for p in pods)
        ),
        30,
        "the deferred resizes actuated by the kubelet, same UIDs",
    )
    assert not before & _involved(actuation.events("EvictedByVPA"))


def test_workload_below_min_replicas_is_not_touched(actuation: Actuation) -> None:
    """Finding: with --min-replicas 2 (upstream's default) a single-replica workload is
    neither resized nor evicted, however far the recommendation is from its requests."""
    [pod] = _deploy(actuation, "single", replicas=1)

    _recommend(actuation, "single")
    actuation.updater.wait_loops(3)

    [now] = actuation.pods("single")
    assert now["metadata"]["uid"] == pod["metadata"]["uid"]
    assert _settled(now, REQUESTS, LIMITS)
    assert "Too few replicas" in actuation.updater.log_text()


def _bare_pod(kube: KubeClient, namespace: str, name: str, annotations: dict[str, str]) -> None:
    container = demo.container_manifest(
        "app", requests=REQUESTS, limits=LIMITS, image="registry.example/app:1"
    )
    template = demo.pod_template(name, [container])
    kube.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/pods",
        body={
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {**template["metadata"], "name": name, "annotations": annotations},
            "spec": template["spec"],
        },
    )


def _resize(kube: KubeClient, namespace: str, name: str, cpu: str) -> JSON:
    return kube.request(
        "PATCH",
        f"/api/v1/namespaces/{namespace}/pods/{name}/resize",
        body=[{"op": "replace", "path": "/spec/containers/0/resources/requests/cpu", "value": cpu}],
        content_type=JSON_PATCH,
    )


def test_kubelet_simulator_reports_in_progress_then_actuates(actuation: Actuation) -> None:
    kube, namespace = actuation.kube, actuation.namespace
    _bare_pod(kube, namespace, "slow", {RESIZE_ANNOTATION: Answer.IN_PROGRESS.value})
    path = f"/api/v1/namespaces/{namespace}/pods/slow"
    eventually(lambda: _settled(kube.get(path), REQUESTS, LIMITS), 60, "pod slow reported")

    resized = _resize(kube, namespace, "slow", "300m")
    generation = resized["metadata"]["generation"]

    def in_progress() -> JSON | None:
        condition = _resize_conditions(kube.get(path)).get(RESIZE_IN_PROGRESS)
        return (
            condition if condition and condition.get("observedGeneration") == generation else None
        )

    condition = eventually(in_progress, 30, "PodResizeInProgress on pod slow")
    # Empty reason and message: an actuation under way (the updater waits an hour for it).
    assert (condition["status"], condition.get("reason", ""), condition.get("message", "")) == (
        "True",
        "",
        "",
    )
    assert quantities((_status_resources(kube.get(path)) or {}).get("requests")) == quantities(
        REQUESTS
    )

    kube.request(
        "PATCH",
        path,
        body={"metadata": {"annotations": {RESIZE_ANNOTATION: None}}},
        content_type=MERGE_PATCH,
    )
    done = eventually(
        lambda: (
            pod if _settled(pod := kube.get(path), {**REQUESTS, "cpu": "300m"}, LIMITS) else None
        ),
        30,
        "the resize of pod slow actuated",
    )
    assert done["status"]["observedGeneration"] == generation


def test_without_the_simulator_kwok_pods_cannot_be_resized(
    actuation: Actuation, kube_api: client.ApiClient
) -> None:
    """Why the simulator exists: KWOK reports no container resources, and the API server
    refuses to resize a running container whose status has none."""
    kube = actuation.kube
    namespace = unique_namespace(kube_api, "unsimulated")
    eventually(
        lambda: exists(kube, f"/api/v1/namespaces/{namespace}/serviceaccounts/default"),
        60,
        f"the default ServiceAccount of {namespace}",
    )
    _bare_pod(kube, namespace, "plain", {})
    path = f"/api/v1/namespaces/{namespace}/pods/plain"
    pod = eventually(
        lambda: pod if (pod := kube.get(path))["status"].get("phase") == "Running" else None,
        60,
        "pod plain Running",
    )
    assert _status_resources(pod) is None

    with pytest.raises(KubeApiError) as refused:
        _resize(kube, namespace, "plain", "300m")
    assert refused.value.status == 422
    assert "Pod running on node without support for resize" in refused.value.message
