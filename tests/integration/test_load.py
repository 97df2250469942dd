"""The load benchmark's probe (bench/load.py) at a small scale on the testbed: every VPA is
written, the client stays within its rate limit, and pods are listed and watched, never read
one by one (the full scale and its figures: docs/reliability.md)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid

import pytest

from bench.load import apiserver_requests, probe
from recommender.kube.rest import KubeClient, load_api_client
from testbed.cluster import ControlPlane
from testbed.demo import scaled_demo, start_demo

VPAS, REPLICAS, NAMESPACES = 40, 5, 4
QPS, BURST = 20.0, 10


def test_a_tick_over_many_pods_lists_and_watches_within_its_rate_limit(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> None:
    kube = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    workloads = tuple(
        dataclasses.replace(w, replicas=REPLICAS) for w in scaled_demo(NAMESPACES, VPAS)
    )
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    demo = start_demo(
        tmp_path_factory.mktemp("load"),
        kube,
        workloads,
        days=0.1,
        step_s=300,
        namespace_prefix=f"ld{uuid.uuid4().hex[:4]}-",
        end=now - dt.timedelta(minutes=10),
    )
    try:
        namespaces = sorted({w.namespace for w in demo.workloads})
        before = apiserver_requests(control_plane)
        began = time.monotonic()
        figures = probe(
            kubeconfig=str(control_plane.kubeconfig),
            prometheus_url=demo.prometheus.url,
            namespaces=namespaces,
            days=0.1,
            qps=QPS,
            burst=BURST,
            now=now,
        )
        elapsed = time.monotonic() - began
        server = apiserver_requests(control_plane) - before
    finally:
        demo.stop()
    bootstrap, steady = figures["bootstrap"], figures["steady"]
    assert (bootstrap["vpas"], bootstrap["writes"], bootstrap["errors"]) == (VPAS, VPAS, 0)
    assert (steady["writes"], steady["unchanged"]) == (0, VPAS)
    assert figures["checkpointed"] == VPAS
    sent = figures["requests"]
    # The token bucket's guarantee, whatever the machine's speed.
    assert sum(sent.values()) <= BURST + QPS * elapsed
    # Pods: one LIST and one WATCH per namespace; no read of a single pod, by us or for us.
    assert sent["GET"] < VPAS, sent
    assert server[("GET", "pods")] == 0
    assert server[("LIST", "pods")] >= NAMESPACES
    assert server[("PATCH", "verticalpodautoscalers/status")] >= VPAS
