"""Leader election on a real Lease: one holder at a time, takeover only after expiry."""

from __future__ import annotations

import datetime as dt

from kubernetes import client

from recommender.kube.lease import LeaseElector
from recommender.kube.rest import KubeClient
from tests.integration.kube_helpers import unique_namespace


class _Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 11, 29, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def test_one_holder_at_a_time_and_takeover_after_expiry(kube_api: client.ApiClient) -> None:
    namespace = unique_namespace(kube_api, "lease")
    clock = _Clock()
    a = LeaseElector(KubeClient(kube_api), namespace, "vpa-fleet", "replica-a", clock=clock)
    b = LeaseElector(KubeClient(kube_api), namespace, "vpa-fleet", "replica-b", clock=clock)

    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    clock.now += dt.timedelta(seconds=10)
    assert a.try_acquire_or_renew()  # renewed at t+10
    clock.now += dt.timedelta(seconds=10)
    assert not b.try_acquire_or_renew()  # t+20 < t+10+15: still held
    assert a.holder() == "replica-a"

    clock.now += dt.timedelta(seconds=30)  # a stopped renewing
    assert b.try_acquire_or_renew()
    assert not a.try_acquire_or_renew()
    lease = client.CoordinationV1Api(kube_api).read_namespaced_lease("vpa-fleet", namespace)
    assert lease.spec.holder_identity == "replica-b"
    assert lease.spec.lease_transitions == 1


def test_release_lets_the_other_replica_in_at_once(kube_api: client.ApiClient) -> None:
    namespace = unique_namespace(kube_api, "lease")
    a = LeaseElector(KubeClient(kube_api), namespace, "vpa-fleet", "replica-a")
    b = LeaseElector(KubeClient(kube_api), namespace, "vpa-fleet", "replica-b")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    a.release()
    assert a.holder() is None
    assert b.try_acquire_or_renew()


def test_a_stale_read_loses_the_race(kube_api: client.ApiClient) -> None:
    namespace = unique_namespace(kube_api, "lease")
    clock = _Clock()
    a = LeaseElector(
        KubeClient(kube_api), namespace, "l", "replica-a", lease_duration_s=5, clock=clock
    )
    b = LeaseElector(
        KubeClient(kube_api), namespace, "l", "replica-b", lease_duration_s=5, clock=clock
    )
    assert a.try_acquire_or_renew()
    clock.now += dt.timedelta(seconds=60)
    stale = b._read()
    assert b.try_acquire_or_renew()  # b takes the expired lease
    assert stale is not None
    stale["spec"]["holderIdentity"] = "replica-c"
    assert not b._replace(stale), "a write based on an old resourceVersion must be refused"
    assert b.holder() == "replica-b"
