"""The fallback actuator on the testbed: a real API server with the stock VPA updater and
admission controller (the pinned release, with the `InPlace` feature gate), KWOK nodes and the
simulated kubelet answering resizes. Each test deploys its own workload in this module's
namespace and runs actuator passes by hand (one pass = what `vpa-fleet run` does after a tick).

- `InPlace` mode (the updater never evicts) with the kubelet answering `Infeasible`: the
  actuator rolls the Deployment out with the recommended resources;
- the same behind a PodDisruptionBudget allowing no disruption: no rollout, and an Event says
  why (once, not every pass);
- dry-run: nothing changes, the plan is recorded;
- a JVM workload (detected from its command) in `InPlaceOrRecreate`: its memory change comes
  through a restart (a rollout that also sets resizePolicy memory RestartContainer), after
  which the updater changes its CPU in place;
- a single-replica workload (the updater leaves it alone) with the restart-annotation
  method: restarted, and admitted with the recommendation by the admission controller;
- StatefulSets: RollingUpdate rolled out by their controller; OnDelete gets the template but
  keeps its pods; a DaemonSet is reported, not rolled.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import pytest
from kubernetes import client

from recommender.actuator.audit import AuditAction, AuditRecord
from recommender.actuator.plan import Method, Policy, SkipReason, Trigger
from recommender.actuator.service import PLANNED, ROLLED_OUT, SKIPPED, ActuationReport, Actuator
from recommender.kube.rest import JSON, KubeClient
from recommender.kube.status_writer import StatusWriter, WriteResult, vpa_path
from recommender.vpa.objects import RecommendedContainerResources, parse_vpa
from recommender.vpa.status import desired_status
from testbed import demo
from testbed.cluster import ControlPlane
from testbed.kubelet_sim import RESIZE_ANNOTATION, Answer, KubeletSimulator
from testbed.vpa_components import (
    AdmissionController,
    Updater,
)
from tests.integration.kube_helpers import eventually, quantities, updater_bed

INTERVAL_S = 5.0
REQUESTS = {"cpu": "100m", "memory": "128Mi"}
LIMITS = {"memory": "256Mi"}
TARGET = {"cpu": "250m", "memory": "256Mi"}
LOWER = {"cpu": "200m", "memory": "200Mi"}
UPPER = {"cpu": "1", "memory": "1Gi"}
JAVA = ["java", "-Xmx96m", "-jar", "/app.jar"]
GATES = {"InPlace": True}


@dataclass
class Bed:
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

    def deployment(self, name: str, kind: str = "Deployment") -> JSON:
        return self.kube.get(f"/apis/apps/v1/namespaces/{self.namespace}/{kind.lower()}s/{name}")

    def vpas(self) -> dict[tuple[str, str], object]:
        items, _ = self.kube.list_all(
            f"/apis/autoscaling.k8s.io/v1/namespaces/{self.namespace}/verticalpodautoscalers"
        )
        return {(self.namespace, i["metadata"]["name"]): parse_vpa(i) for i in items}

    def events(self, reason: str, uid: str) -> list[JSON]:
        items, _ = self.kube.list_all(
            f"/api/v1/namespaces/{self.namespace}/events",
            fieldSelector=f"reason={reason},involvedObject.uid={uid}",
        )
        return items

    def actuator(self, **policy: object) -> Actuator:
        actuator = Actuator(
            self.kube,
            Policy(**policy),  # type: ignore[arg-type]
            cluster="testbed",
            namespaces=(self.namespace,),
        )
        actuator.start()
        return actuator

    def run(self, actuator: Actuator) -> ActuationReport:
        report = actuator.run_once(self.vpas())  # type: ignore[arg-type]
        assert not report.errors, report.errors
        return report


@pytest.fixture(scope="module")
def bed(control_plane: ControlPlane, kube_api: client.ApiClient) -> Iterator[Bed]:
    with updater_bed(
        control_plane, kube_api, "actuator", interval_s=INTERVAL_S, feature_gates=GATES
    ) as running:
        yield Bed(
            running.kube, running.namespace, running.simulator, running.admission, running.updater
        )


def _requests(pod_or_template: JSON) -> dict[str, Fraction]:
    return quantities(pod_or_template["spec"]["containers"][0]["resources"].get("requests"))


def _running_requests(pod: JSON) -> dict[str, Fraction]:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    resources = statuses[0].get("resources") if statuses else None
    return quantities((resources or {}).get("requests"))


def _template(bed: Bed, name: str) -> JSON:
    template: JSON = bed.deployment(name)["spec"]["template"]
    return template


def _uids(pods: list[JSON]) -> set[str]:
    return {p["metadata"]["uid"] for p in pods}


def _deploy(
    bed: Bed,
    name: str,
    *,
    replicas: int,
    mode: str,
    answer: Answer | None = None,
    command: list[str] | None = None,
    kind: str = "Deployment",
    strategy: str | None = None,
) -> list[JSON]:
    """A VPA naming vpa-fleet and its workload (`replicas` pods; for a DaemonSet, the number
    of KWOK nodes); returns the pods once running with their resources reported."""
    kube, namespace = bed.kube, bed.namespace
    kube.request(
        "POST",
        f"/apis/autoscaling.k8s.io/v1/namespaces/{namespace}/verticalpodautoscalers",
        body=demo.vpa_manifest(namespace, name, kind, update_mode=mode),
    )
    container = demo.container_manifest(
        "app", requests=REQUESTS, limits=LIMITS, image="registry.example/app:1"
    )
    if command:
        container["command"] = command
    template = demo.pod_template(name, [container])
    if answer is not None:
        template["metadata"]["annotations"] = {RESIZE_ANNOTATION: answer.value}
    manifest = demo.workload_manifest(
        kind, name, template, replicas=None if kind == "DaemonSet" else replicas
    )
    if strategy is not None:
        manifest["spec"]["updateStrategy"] = {"type": strategy}
    kube.request("POST", f"/apis/apps/v1/namespaces/{namespace}/{kind.lower()}s", body=manifest)
    return eventually(
        lambda: (
            pods
            if len(pods := bed.pods(name)) == replicas
            and all(_running_requests(p) == quantities(REQUESTS) for p in pods)
            else None
        ),
        90,
        f"{replicas} running pod(s) of {name}",
    )


def _recommend(
    bed: Bed,
    name: str,
    target: dict[str, str] = TARGET,
    lower: dict[str, str] = LOWER,
) -> None:
    """Write a recommendation as vpa-fleet does (100m CPU is below LOWER: the updater acts
    at once where it acts at all)."""
    path = vpa_path(bed.namespace, name)
    vpa = parse_vpa(bed.kube.get(path))
    entry = RecommendedContainerResources(
        containerName="app",
        target=target,
        lowerBound=lower,
        upperBound=UPPER,
        uncappedTarget=target,
    )
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = desired_status(vpa, [entry], pods_matched=True, now=now)
    assert StatusWriter(bed.kube).write(vpa, status) is WriteResult.WRITTEN


def _infeasible(bed: Bed, name: str, count: int) -> list[JSON]:
    def pending() -> list[JSON] | None:
        pods = bed.pods(name)
        stuck = [
            p
            for p in pods
            if any(
                c["type"] == "PodResizePending" and c.get("reason") == "Infeasible"
                for c in p.get("status", {}).get("conditions") or []
            )
        ]
        return pods if len(stuck) >= count else None

    return eventually(pending, 20 * INTERVAL_S, f"{count} resize(s) of {name} answered Infeasible")


def _records(report: ActuationReport, workload: str) -> list[AuditRecord]:
    """The decisions about one workload (the namespace holds the other tests' too)."""
    return [r for r in report.records if r.workload_name == workload]


def _uid(obj: JSON) -> str:
    return str(obj["metadata"]["uid"])


def _parse_stamp(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def test_infeasible_resize_is_rolled_out_with_the_recommendation(bed: Bed) -> None:
    before = _uids(_deploy(bed, "stuck", replicas=2, mode="InPlace", answer=Answer.INFEASIBLE))
    _recommend(bed, "stuck")
    _infeasible(bed, "stuck", 1)
    # In InPlace mode the updater never evicts: without us the pods would stay as they are.
    assert _uids(bed.pods("stuck")) == before

    actuator = bed.actuator()
    try:
        report = bed.run(actuator)
    finally:
        actuator.stop()

    [record] = _records(report, "stuck")
    assert (record.action, record.trigger, record.dry_run) == (
        AuditAction.ROLLOUT,
        Trigger.INFEASIBLE.value,
        False,
    )
    assert _requests(_template(bed, "stuck")) == quantities(TARGET)
    replaced = eventually(
        lambda: (
            pods
            if len(pods := bed.pods("stuck")) == 2
            and not _uids(pods) & before
            and all(_running_requests(p) == quantities(TARGET) for p in pods)
            else None
        ),
        120,
        "both pods of stuck replaced by pods running the target",
    )
    assert all(_requests(p) == quantities(TARGET) for p in replaced)
    deployment, vpa = (
        bed.deployment("stuck"),
        bed.kube.get(vpa_path(bed.namespace, "stuck")),
    )
    for obj in (deployment, vpa):
        [event] = bed.events(ROLLED_OUT, _uid(obj))
        assert "is Infeasible" in event["message"] and "cpu 100m -> 250m" in event["message"]
    # The cooldown outlives the in-memory audit trail: the rollout is stamped on the workload.
    stamp = deployment["metadata"]["annotations"]["vpa-fleet.io/rolled-out-at"]
    assert abs(dt.datetime.now(dt.UTC) - _parse_stamp(stamp)) < dt.timedelta(minutes=10)


def test_no_rollout_while_a_disruption_budget_allows_none(bed: Bed) -> None:
    before = _uids(_deploy(bed, "guarded", replicas=2, mode="InPlace", answer=Answer.INFEASIBLE))
    bed.kube.request(
        "POST",
        f"/apis/policy/v1/namespaces/{bed.namespace}/poddisruptionbudgets",
        body={
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "guarded"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "guarded"}}},
        },
    )
    path = f"/apis/policy/v1/namespaces/{bed.namespace}/poddisruptionbudgets/guarded"
    eventually(
        lambda: (
            (status := bed.kube.get(path).get("status", {})).get("currentHealthy") == 2
            and status.get("disruptionsAllowed") == 0
        ),
        60,
        "the disruption controller computing the budget (2 healthy, 0 disruptions allowed)",
    )
    _recommend(bed, "guarded")
    _infeasible(bed, "guarded", 1)
    generation = bed.deployment("guarded")["metadata"]["generation"]

    actuator = bed.actuator()
    try:
        first = bed.run(actuator)
        second = bed.run(actuator)
    finally:
        actuator.stop()

    [record] = first.records
    assert (record.action, record.reason) == (AuditAction.SKIP, SkipReason.DISRUPTION_BUDGET.value)
    [again] = _records(second, "guarded")
    assert again.count == 2  # the same decision, merged in the audit
    assert bed.deployment("guarded")["metadata"]["generation"] == generation
    assert _requests(_template(bed, "guarded")) == quantities(REQUESTS)
    assert _uids(bed.pods("guarded")) == before
    vpa = bed.kube.get(vpa_path(bed.namespace, "guarded"))
    for obj in (bed.deployment("guarded"), vpa):
        [event] = bed.events(SKIPPED, _uid(obj))  # one Event, not one per pass
        assert event["type"] == "Warning"
        assert "PodDisruptionBudget guarded allows no disruption" in event["message"]
        assert event["count"] == 1


def test_dry_run_changes_nothing_and_records_the_plan(bed: Bed) -> None:
    before = _uids(_deploy(bed, "planned", replicas=2, mode="InPlace", answer=Answer.INFEASIBLE))
    _recommend(bed, "planned")
    _infeasible(bed, "planned", 1)
    generation = bed.deployment("planned")["metadata"]["generation"]

    actuator = bed.actuator(dry_run=True)
    try:
        report = bed.run(actuator)
    finally:
        actuator.stop()

    [record] = _records(report, "planned")
    assert (record.action, record.dry_run) == (AuditAction.ROLLOUT, True)
    [resources] = record.resources
    assert quantities(dict(resources.requests)) == quantities(TARGET)
    assert "would be rolled out (dry run)" in record.message
    assert [r for r in actuator.audit.records() if r.workload_name == "planned"] == [record]
    assert bed.deployment("planned")["metadata"]["generation"] == generation
    assert "vpa-fleet.io/rolled-out-at" not in (
        bed.deployment("planned")["metadata"].get("annotations") or {}
    )
    assert _requests(_template(bed, "planned")) == quantities(REQUESTS)
    assert _uids(bed.pods("planned")) == before
    [event] = bed.events(PLANNED, _uid(bed.deployment("planned")))
    assert "would be rolled out" in event["message"]


def test_jvm_memory_changes_through_a_restart_and_cpu_in_place(bed: Bed) -> None:
    before = _uids(_deploy(bed, "jvm", replicas=2, mode="InPlaceOrRecreate", command=JAVA))
    actuator = bed.actuator()
    try:
        _recommend(bed, "jvm")
        # Passes as `vpa-fleet run` makes them, until the actuator has acted (the updater
        # may resize a pod in place first: that is a trigger too).
        rollout = eventually(
            lambda: next(
                (r for r in _records(bed.run(actuator), "jvm") if r.action is AuditAction.ROLLOUT),
                None,
            ),
            60,
            "the actuator rolling out jvm",
        )
        assert rollout.trigger == Trigger.BOOT_MEMORY.value
        assert "JVM (-Xmx96m in command/args)" in rollout.message
        assert "its memory changes through a restart, its CPU in place" in rollout.message
        template = _template(bed, "jvm")
        assert template["spec"]["containers"][0]["resizePolicy"] == [
            {"resourceName": "cpu", "restartPolicy": "NotRequired"},
            {"resourceName": "memory", "restartPolicy": "RestartContainer"},
        ]
        # Memory through a restart: new pods run the recommended memory.
        restarted = eventually(
            lambda: (
                pods
                if len(pods := bed.pods("jvm")) == 2
                and not _uids(pods) & before
                and all(_running_requests(p) == quantities(TARGET) for p in pods)
                else None
            ),
            120,
            "both pods of jvm replaced, running the recommended memory",
        )
        for pod in restarted:
            policy = {
                p["resourceName"]: p["restartPolicy"]
                for p in pod["spec"]["containers"][0]["resizePolicy"]
            }
            assert policy == {"cpu": "NotRequired", "memory": "RestartContainer"}
        generation = bed.deployment("jvm")["metadata"]["generation"]

        # A CPU change: the stock updater resizes in place, the actuator leaves it be.
        cpu_target = {**TARGET, "cpu": "400m"}
        _recommend(bed, "jvm", target=cpu_target, lower={**LOWER, "cpu": "350m"})
        resized = eventually(
            lambda: (
                pods
                if _uids(pods := bed.pods("jvm")) == _uids(restarted)
                and all(_running_requests(p) == quantities(cpu_target) for p in pods)
                else None
            ),
            20 * INTERVAL_S,
            "the updater resizing jvm's CPU in place (same pods)",
        )
        assert all(p["metadata"]["annotations"].get("vpaInPlaceUpdated") == "true" for p in resized)
        report = bed.run(actuator)
        assert not [r for r in _records(report, "jvm") if r.action is AuditAction.ROLLOUT]
        assert bed.deployment("jvm")["metadata"]["generation"] == generation
    finally:
        actuator.stop()


def test_single_replica_is_restarted_into_the_admission_controller(bed: Bed) -> None:
    [pod] = _deploy(bed, "solo", replicas=1, mode="InPlaceOrRecreate")
    _recommend(bed, "solo")
    bed.updater.wait_loops(2)
    assert _uids(bed.pods("solo")) == {_uid(pod)}, "the updater left the single pod alone"

    actuator = bed.actuator(method=Method.RESTART_ANNOTATION)
    try:
        report = bed.run(actuator)
    finally:
        actuator.stop()

    [record] = _records(report, "solo")
    assert (record.action, record.trigger, record.reason) == (
        AuditAction.ROLLOUT,
        Trigger.BELOW_MIN_REPLICAS.value,
        Method.RESTART_ANNOTATION.value,
    )
    template = _template(bed, "solo")
    assert "kubectl.kubernetes.io/restartedAt" in template["metadata"]["annotations"]
    assert _requests(template) == quantities(REQUESTS), "the template keeps its resources"
    [new] = eventually(
        lambda: (
            pods
            if len(pods := bed.pods("solo")) == 1
            and _uid(pods[0]) != _uid(pod)
            and _running_requests(pods[0]) == quantities(TARGET)
            else None
        ),
        120,
        "the restarted pod of solo admitted with the target",
    )
    assert "cpu request" in new["metadata"]["annotations"]["vpaUpdates"]


def test_statefulset_rolling_update_is_rolled_out(bed: Bed) -> None:
    before = _uids(
        _deploy(bed, "db", replicas=2, mode="InPlace", answer=Answer.INFEASIBLE, kind="StatefulSet")
    )
    _recommend(bed, "db")
    _infeasible(bed, "db", 1)

    actuator = bed.actuator()
    try:
        [record] = _records(bed.run(actuator), "db")
    finally:
        actuator.stop()

    assert (record.workload_kind, record.action) == ("StatefulSet", AuditAction.ROLLOUT)
    template = bed.deployment("db", "StatefulSet")["spec"]["template"]
    assert _requests(template) == quantities(TARGET)
    eventually(
        lambda: (
            len(pods := bed.pods("db")) == 2
            and not _uids(pods) & before
            and all(_running_requests(p) == quantities(TARGET) for p in pods)
        ),
        180,
        "the StatefulSet controller replacing both pods of db with the target",
    )


def test_statefulset_on_delete_gets_its_template_but_keeps_its_pods(bed: Bed) -> None:
    before = _uids(
        _deploy(
            bed,
            "ledger",
            replicas=2,
            mode="InPlace",
            answer=Answer.INFEASIBLE,
            kind="StatefulSet",
            strategy="OnDelete",
        )
    )
    _recommend(bed, "ledger")
    _infeasible(bed, "ledger", 1)

    actuator = bed.actuator()
    try:
        [record] = _records(bed.run(actuator), "ledger")
    finally:
        actuator.stop()

    assert record.action is AuditAction.ROLLOUT
    assert "updateStrategy OnDelete: pods change when they are deleted, vpa-fleet deletes none" in (
        record.message
    )
    template = bed.deployment("ledger", "StatefulSet")["spec"]["template"]
    assert _requests(template) == quantities(TARGET)
    bed.updater.wait_loops(2)
    assert _uids(bed.pods("ledger")) == before, "no pod of an OnDelete StatefulSet is deleted"


def test_daemonset_is_reported_not_rolled(bed: Bed) -> None:
    pods = _deploy(
        bed, "agent", replicas=2, mode="InPlace", answer=Answer.INFEASIBLE, kind="DaemonSet"
    )
    before = _uids(pods)
    _recommend(bed, "agent")
    _infeasible(bed, "agent", 1)
    generation = bed.deployment("agent", "DaemonSet")["metadata"]["generation"]

    actuator = bed.actuator()
    try:
        [record] = _records(bed.run(actuator), "agent")
    finally:
        actuator.stop()

    assert (record.workload_kind, record.action, record.reason) == (
        "DaemonSet",
        AuditAction.SKIP,
        SkipReason.NOT_ROLLED.value,
    )
    assert "DaemonSets are reported, not rolled out" in record.message
    assert bed.deployment("agent", "DaemonSet")["metadata"]["generation"] == generation
    assert _uids(bed.pods("agent")) == before
    vpa = bed.kube.get(vpa_path(bed.namespace, "agent"))
    [event] = bed.events(SKIPPED, _uid(vpa))
    assert "DaemonSet" in event["message"]
