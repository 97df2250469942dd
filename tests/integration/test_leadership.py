"""The run command's Leadership on a real Lease: one replica leads, the other waits, and a
clean stop hands over at once."""

from __future__ import annotations

import uuid

from kubernetes import client

from recommender.kube.lease import LeaseElector
from recommender.kube.rest import KubeClient
from recommender.loop.service import Leadership
from tests.integration.kube_helpers import eventually, unique_namespace


def test_one_leads_the_other_takes_over_on_stop(kube_api: client.ApiClient) -> None:
    namespace = unique_namespace(kube_api, "leadership")
    kube = KubeClient(kube_api)
    name = f"lease-{uuid.uuid4().hex[:6]}"
    first = Leadership(LeaseElector(kube, namespace, name, "first", 30), 0.2)
    second = Leadership(LeaseElector(kube, namespace, name, "second", 30), 0.2)
    first.start()
    try:
        assert first.leading.wait(20)
        second.start()
        try:
            assert not second.leading.wait(1.5)  # the Lease is held and renewed
            first.stop()
            assert not first.leading.is_set()
            # Released, not expired: the second replica leads long before 30 s.
            assert second.leading.wait(10)
            holder = eventually(
                lambda: kube.get(
                    f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
                )["spec"].get("holderIdentity"),
                10,
                "a holder",
            )
            assert holder == "second"
        finally:
            second.stop()
    finally:
        first.stop()
