"""Invariants of the actuator's core, over random inputs."""

from __future__ import annotations

import datetime as dt
import itertools
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.actuator.audit import AuditAction, AuditLog, AuditRecord
from recommender.actuator.inputs import WorkloadRef
from recommender.actuator.plan import Candidate, Context, Policy, decide, find, memory_floor
from tests.unit.actuator.builders import NOW, budget, pod, vpa, workload

MI = 1024**2
memory = st.integers(min_value=1, max_value=64 * 1024).map(lambda m: Fraction(m * MI))
peaks = st.none() | st.integers(min_value=1, max_value=64 * 1024 * MI)
margins = st.floats(min_value=0, max_value=2, allow_nan=False)


@given(current=memory, target=memory, peak=peaks, margin=margins)
def test_memory_never_drops_below_peak_plus_margin(
    current: Fraction, target: Fraction, peak: int | None, margin: float
) -> None:
    new = memory_floor(current, target, peak, margin)
    if target >= current:
        assert new == target  # increases are applied as recommended
        return
    assert target <= new <= current  # a decrease, never below the target nor above current
    if peak is None:
        assert new == current  # without a known peak, no decrease
    else:
        floor = Fraction(peak) * (1 + Fraction(margin).limit_denominator(10_000))
        assert new >= min(current, floor)


namespaces = st.sampled_from(["a", "b", "c"])
names = st.sampled_from(["w1", "w2", "w3", "w4"])


@st.composite
def candidates(draw: st.DrawFn) -> Candidate:
    namespace, name = draw(namespaces), draw(names)
    the_vpa = vpa(name, namespace)
    pods = (pod(f"{name}-1", namespace, app=name, pending="Infeasible"),)
    found = find(the_vpa, pods, NOW, Policy())
    assert found is not None
    blocked = draw(st.booleans())
    return Candidate(
        vpa=the_vpa,
        finding=found,
        owner=WorkloadRef("Deployment", namespace, name),
        workload=workload(name, namespace),
        budgets=(budget(app=name, allowed=0),) if blocked else (),
        pods=pods,
    )


@settings(max_examples=200, deadline=None)
@given(
    batch=st.lists(candidates(), max_size=12, unique_by=lambda c: c.owner),
    rolling=st.lists(
        st.builds(WorkloadRef, st.just("Deployment"), namespaces, st.sampled_from(["x", "y"])),
        max_size=4,
    ),
    per_cluster=st.integers(min_value=0, max_value=5),
    per_namespace=st.integers(min_value=0, max_value=3),
    dry_run=st.booleans(),
)
def test_limits_and_budgets_always_hold(
    batch: list[Candidate],
    rolling: list[WorkloadRef],
    per_cluster: int,
    per_namespace: int,
    dry_run: bool,
) -> None:
    policy = Policy(
        max_rollouts_per_cluster=per_cluster,
        max_rollouts_per_namespace=per_namespace,
        dry_run=dry_run,
    )
    decisions = decide(batch, Context(now=NOW, policy=policy, rolling=rolling))
    rollouts = [d for d in decisions if d.rollout]
    under_way = set(rolling)
    assert len(rollouts) + len(under_way) <= max(per_cluster, len(under_way))
    for namespace in "abc":
        here = sum(1 for d in rollouts if d.workload.namespace == namespace)
        before = sum(1 for r in under_way if r.namespace == namespace)
        assert here + before <= max(per_namespace, before)
    by_workload = {c.owner: c for c in batch}
    for decision in rollouts:
        assert not by_workload[decision.workload].budgets, "rolled out despite a zero budget"
        assert decision.dry_run is dry_run
    assert len({d.workload for d in decisions}) == len(decisions), "one decision per workload"
    # Dry-run plans exactly what a real run would do.
    real = decide(
        batch,
        Context(now=NOW, policy=Policy(**{**policy.__dict__, "dry_run": False}), rolling=rolling),
    )
    assert [(d.workload, d.action, d.reason, d.changes) for d in decisions] == [
        (d.workload, d.action, d.reason, d.changes) for d in real
    ]


@given(st.lists(st.tuples(names, st.sampled_from(["skip", "rollout"]), st.booleans()), max_size=30))
def test_audit_log_merges_repeats_and_keeps_order(events: list[tuple[str, str, bool]]) -> None:
    log = AuditLog(capacity=10)
    for index, (name, action, dry_run) in enumerate(events):
        log.add(
            AuditRecord(
                time=NOW + dt.timedelta(seconds=index),
                cluster="c",
                namespace="shop",
                workload_kind="Deployment",
                workload_name=name,
                vpa=name,
                action=AuditAction(action),
                trigger="Infeasible",
                reason="r",
                message="m",
                dry_run=dry_run,
            )
        )
    records = log.records()
    assert len(records) <= 10
    assert [r.time for r in records] == sorted(r.time for r in records)
    assert sum(r.count for r in records) <= len(events)
    for previous, current in itertools.pairwise(records):
        if previous.workload == current.workload:
            assert not previous.same_decision(current)
