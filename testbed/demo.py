"""Sample workloads on the testbed, with Prometheus history for the pods they really run.

`DEMO` is the small set `python -m testbed up` deploys; `scaled_demo()` makes many
single-container Deployments for benchmarks. `deploy()` creates namespaces, workloads and
their VPAs through the API server, waits until every pod is Running and returns the pods'
names; `start_demo()` then starts Prometheus with history generated for exactly those pods,
so that Prometheus series map to real pods by (namespace, pod, container).

The manifests built here (pod templates KWOK runs, workloads, VPAs) are also what the
integration tests create.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar, get_args

import numpy as np

from recommender.kube.rest import JSON, KubeApiError, KubeClient
from testbed.process import TestbedError
from testbed.prometheus import PrometheusInstance, start_prometheus_with_history
from testbed.series import MI, ContainerSpec, Shape, SyntheticHistory, WorkloadSpec, container

Kind = Literal["Deployment", "StatefulSet", "DaemonSet"]
KINDS: tuple[Kind, ...] = get_args(Kind)

VPA_FLEET = "vpa-fleet"
VPA_API = "/apis/autoscaling.k8s.io/v1"
# The label every simulated node carries (testbed.cluster.node_manifest).
KWOK_NODE_SELECTOR = {"type": "kwok"}
# Memory limits are this many times the request; CPU has no limit.
MEMORY_LIMIT_FACTOR = 2
DEPLOY_TIMEOUT_S = 300.0
# Concurrent requests while creating objects and listing pods.
WORKERS = 8

_COLLECTIONS: dict[Kind, str] = {
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "DaemonSet": "daemonsets",
}

T = TypeVar("T")


@dataclass(frozen=True)
class DemoVpa:
    """The VPA created for a workload (named after it, targeting it).

    `recommender` is the name in `spec.recommenders`; None leaves `spec.recommenders` out,
    which makes the VPA the default recommender's.
    """

    recommender: str | None = VPA_FLEET
    update_mode: str = "InPlaceOrRecreate"


@dataclass(frozen=True)
class DemoWorkload:
    """A workload to deploy: its pods run `containers` (usage shape and requests for the
    history, requests and limits for the pod template) and carry the label `app: <name>`.

    `replicas` is ignored for a DaemonSet, which runs one pod per node. `vpa` is the VPA
    created for it, None for no VPA at all.
    """

    kind: Kind
    namespace: str
    name: str
    replicas: int
    containers: tuple[ContainerSpec, ...]
    vpa: DemoVpa | None = DemoVpa()

    def __post_init__(self) -> None:
        where = f"{self.kind} {self.namespace}/{self.name}"
        if self.kind not in KINDS:
            raise ValueError(f"{where}: kind must be one of {', '.join(KINDS)}")
        if self.replicas < 0:
            raise ValueError(f"{where}: replicas must not be negative, got {self.replicas}")
        names = [c.name for c in self.containers]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"{where}: needs containers with distinct names, got {names}")

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name

    def manifest(self) -> JSON:
        """The Deployment, StatefulSet or DaemonSet."""
        template = pod_template(self.name, [container_from_spec(c) for c in self.containers])
        replicas = None if self.kind == "DaemonSet" else self.replicas
        return workload_manifest(
            self.kind, self.name, template, replicas=replicas, namespace=self.namespace
        )

    def vpa_manifest(self) -> JSON | None:
        if self.vpa is None:
            return None
        return vpa_manifest(
            self.namespace,
            self.name,
            self.kind,
            recommender=self.vpa.recommender,
            update_mode=self.vpa.update_mode,
        )

    def vpa_label(self) -> str:
        """Which recommender the VPA names, for listings."""
        if self.vpa is None:
            return "(no VPA)"
        return self.vpa.recommender or "(no spec.recommenders)"


# Two namespaces: Deployments with one and several replicas, a sidecar, OOM kills, a
# StatefulSet, a DaemonSet (one pod per node), and VPAs for us, for another recommender
# and for the default one.
DEMO: tuple[DemoWorkload, ...] = (
    DemoWorkload(
        "Deployment",
        "shop",
        "web",
        3,
        (
            container("web", 0.40, 300, 0.5, 512, cpu_shape="diurnal"),
            container("envoy", 0.05, 60, 0.1, 128, cpu_shape="diurnal"),
        ),
    ),
    DemoWorkload(
        "Deployment",
        "shop",
        "cart",
        2,
        (container("cart", 0.20, 200, 0.25, 256, cpu_shape="spiky", mem_shape="diurnal", ooms=2),),
    ),
    DemoWorkload("StatefulSet", "shop", "redis", 1, (container("redis", 0.10, 1024, 0.2, 1536),)),
    DemoWorkload(
        "DaemonSet", "shop", "node-agent", 0, (container("node-agent", 0.02, 48, 0.05, 64),)
    ),  # one pod per node
    DemoWorkload(
        "Deployment",
        "shop",
        "legacy",
        1,
        (container("legacy", 0.15, 400, 0.5, 1024, mem_shape="diurnal"),),
        vpa=DemoVpa("custom-recommender"),
    ),
    DemoWorkload(
        "Deployment",
        "shop",
        "payments",
        2,
        (container("payments", 0.25, 350, 0.3, 512, cpu_shape="diurnal"),),
        vpa=DemoVpa(recommender=None),
    ),
    DemoWorkload(
        "Deployment",
        "batch",
        "etl",
        2,
        (container("etl", 1.50, 2048, 1.0, 2048, cpu_shape="spiky", mem_shape="spiky", ooms=1),),
    ),
    DemoWorkload(
        "Deployment",
        "batch",
        "reports",
        2,
        (container("reports", 0.30, 512, 0.5, 768, cpu_shape="diurnal", mem_shape="diurnal"),),
    ),
)


_SHAPES: tuple[Shape, ...] = ("steady", "diurnal", "spiky")


def scaled_demo(namespaces: int, workloads: int, seed: int = 0) -> tuple[DemoWorkload, ...]:
    """`workloads` single-container, one-replica Deployments `app-0000`, `app-0001`, ... in
    namespaces `ns-00`, `ns-01`, ... (round robin, so the counts differ by one at most), each
    with a VPA naming vpa-fleet.

    Usage shapes, means, requests and the odd OOM kill are drawn per workload from `seed` and
    its index, so a workload looks the same whatever the totals. The mean CPU request is about
    0.15 cores and the mean memory request about 300 MiB: at the testbed's 250 pods per node,
    1,000 workloads need at least 4 nodes (better 5).
    """
    if namespaces < 1:
        raise ValueError(f"namespaces must be at least 1, got {namespaces}")
    if workloads < 0:
        raise ValueError(f"workloads must not be negative, got {workloads}")
    ns_width = max(2, len(str(namespaces - 1)))
    name_width = max(4, len(str(workloads - 1)))
    result: list[DemoWorkload] = []
    for i in range(workloads):
        rng = np.random.default_rng([seed, i])
        cpu_shape = _SHAPES[int(rng.choice(3, p=[0.4, 0.4, 0.2]))]
        memory_shape = _SHAPES[int(rng.choice(3, p=[0.5, 0.35, 0.15]))]
        cpu = float(np.clip(np.exp(rng.normal(math.log(0.05), 1.0)), 0.002, 2.0))
        memory_mi = float(np.clip(np.exp(rng.normal(math.log(128), 0.8)), 16, 4096))
        # Requests between a bit under and well over the mean usage, in round units.
        cpu_request = max(10, math.ceil(cpu * rng.uniform(0.6, 3.0) * 200) * 5) / 1000
        memory_request_mi = max(16, math.ceil(memory_mi * rng.uniform(0.8, 2.5)))
        ooms = int(rng.integers(1, 3)) if rng.random() < 0.05 else 0
        container = ContainerSpec(
            "app",
            cpu_cores=cpu,
            memory_bytes=round(memory_mi * MI),
            cpu_request_cores=cpu_request,
            memory_request_bytes=memory_request_mi * MI,
            cpu_shape=cpu_shape,
            memory_shape=memory_shape,
            oom_kills=ooms,
        )
        namespace = f"ns-{i % namespaces:0{ns_width}d}"
        result.append(
            DemoWorkload("Deployment", namespace, f"app-{i:0{name_width}d}", 1, (container,))
        )
    return tuple(result)


def with_namespace_prefix(
    workloads: Iterable[DemoWorkload], prefix: str
) -> tuple[DemoWorkload, ...]:
    """The workloads moved to namespaces `<prefix><namespace>` (e.g. unique ones for a test)."""
    return tuple(dataclasses.replace(w, namespace=prefix + w.namespace) for w in workloads)


# Manifests


def cpu_quantity(cores: float) -> str:
    """Cores as a Kubernetes quantity in whole millicores: 0.25 -> "250m", 2.0 -> "2"."""
    milli = round(cores * 1000)
    if milli < 1:
        raise ValueError(f"{cores} cores is less than 1m")
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def memory_quantity(value: int) -> str:
    """Bytes as a Kubernetes quantity, in the largest binary unit that divides them."""
    for suffix, unit in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if value and value % unit == 0:
            return f"{value // unit}{suffix}"
    return str(value)


def container_manifest(
    name: str,
    *,
    requests: Mapping[str, str],
    limits: Mapping[str, str] | None = None,
    image: str | None = None,
) -> JSON:
    """A container with the given requests and limits (quantity strings)."""
    resources: JSON = {"requests": dict(requests)}
    if limits:
        resources["limits"] = dict(limits)
    return {
        "name": name,
        "image": image or f"registry.example/{name}:1",
        "resources": resources,
    }


def container_from_spec(spec: ContainerSpec) -> JSON:
    """The container of a ContainerSpec: its requests, and a memory limit of
    MEMORY_LIMIT_FACTOR x the request."""
    return container_manifest(
        spec.name,
        requests={
            "cpu": cpu_quantity(spec.cpu_request_cores),
            "memory": memory_quantity(spec.memory_request_bytes),
        },
        limits={"memory": memory_quantity(MEMORY_LIMIT_FACTOR * spec.memory_request_bytes)},
    )


def pod_template(app: str, containers: Sequence[JSON]) -> JSON:
    """A pod template labelled `app: <app>` that schedules onto the KWOK nodes."""
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": list(containers), "nodeSelector": dict(KWOK_NODE_SELECTOR)},
    }


def workload_manifest(
    kind: str,
    name: str,
    template: JSON,
    *,
    replicas: int | None = None,
    namespace: str | None = None,
) -> JSON:
    """A Deployment, StatefulSet or DaemonSet of `template`, selecting `app: <name>`."""
    if kind not in KINDS:
        raise ValueError(f"unknown workload kind {kind!r}; one of {', '.join(KINDS)}")
    spec: JSON = {"selector": {"matchLabels": {"app": name}}, "template": template}
    if replicas is not None:
        spec["replicas"] = replicas
    if kind == "StatefulSet":
        spec["serviceName"] = name
    metadata: JSON = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": metadata, "spec": spec}


def vpa_manifest(
    namespace: str,
    name: str,
    target_kind: str,
    *,
    target_name: str | None = None,
    recommender: str | None = VPA_FLEET,
    update_mode: str = "InPlaceOrRecreate",
) -> JSON:
    """A VPA `name` for the apps/v1 workload `target_name` (default: `name`); `recommender`
    None leaves `spec.recommenders` out."""
    spec: JSON = {
        "targetRef": {"apiVersion": "apps/v1", "kind": target_kind, "name": target_name or name},
        "updatePolicy": {"updateMode": update_mode},
    }
    if recommender is not None:
        spec["recommenders"] = [{"name": recommender}]
    return {
        "apiVersion": "autoscaling.k8s.io/v1",
        "kind": "VerticalPodAutoscaler",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


# Deploying


def _parallel(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run the calls on WORKERS threads; results in order, the first failure re-raised."""
    if len(calls) <= 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = [pool.submit(call) for call in calls]
        return [f.result() for f in futures]


def _create(kube: KubeClient, path: str, body: JSON, what: str) -> None:
    try:
        kube.request("POST", path, body=body)
    except KubeApiError as error:
        raise TestbedError(f"creating {what} failed: {error}") from error


def _create_namespace(kube: KubeClient, namespace: str) -> None:
    try:
        kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
    except KubeApiError as error:
        if not error.conflict:  # an existing namespace is used as it is
            raise TestbedError(f"creating namespace {namespace} failed: {error}") from error


def _create_workload(kube: KubeClient, workload: DemoWorkload) -> None:
    namespace = workload.namespace
    collection = _COLLECTIONS[workload.kind]
    _create(
        kube,
        f"/apis/apps/v1/namespaces/{namespace}/{collection}",
        workload.manifest(),
        f"{workload.kind} {namespace}/{workload.name}",
    )
    vpa = workload.vpa_manifest()
    if vpa is not None:
        _create(
            kube,
            f"{VPA_API}/namespaces/{namespace}/verticalpodautoscalers",
            vpa,
            f"VPA {namespace}/{workload.name}",
        )


def _wait_for_service_accounts(
    kube: KubeClient, namespaces: Iterable[str], deadline: float
) -> None:
    """Pods are refused until their namespace's `default` ServiceAccount exists; creating
    workloads before would only make their controllers back off and retry."""
    missing = set(namespaces)
    while True:
        accounts, _ = kube.list_all(
            "/api/v1/serviceaccounts", fieldSelector="metadata.name=default"
        )
        missing -= {a["metadata"]["namespace"] for a in accounts}
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TestbedError(
                f"no default ServiceAccount in namespaces {sorted(missing)}: "
                "is kube-controller-manager running?"
            )
        time.sleep(0.2)


def _items(kube: KubeClient, path: str) -> list[JSON]:
    items, _ = kube.list_all(path)
    return items


def _ready(pod: JSON) -> bool:
    status = pod.get("status", {})
    return status.get("phase") == "Running" and all(
        cs.get("ready") for cs in status.get("containerStatuses") or []
    )


@dataclass
class _Progress:
    """Where the wait stands: running pods per workload, and what is still missing."""

    running: dict[tuple[str, str], list[str]]
    waiting: list[str]


def _progress(kube: KubeClient, workloads: Sequence[DemoWorkload]) -> _Progress:
    namespaces = sorted({w.namespace for w in workloads})
    with_daemonsets = sorted({w.namespace for w in workloads if w.kind == "DaemonSet"})
    pod_lists = _parallel(
        [partial(_items, kube, f"/api/v1/namespaces/{ns}/pods") for ns in namespaces]
    )
    daemonset_lists = _parallel(
        [
            partial(_items, kube, f"/apis/apps/v1/namespaces/{ns}/daemonsets")
            for ns in with_daemonsets
        ]
    )
    pods: dict[tuple[str, str], list[JSON]] = defaultdict(list)
    for namespace, items in zip(namespaces, pod_lists, strict=True):
        for pod in items:
            app = pod["metadata"].get("labels", {}).get("app")
            if app is not None and not pod["metadata"].get("deletionTimestamp"):
                pods[namespace, app].append(pod)
    # A DaemonSet runs as many pods as its controller has counted nodes for it.
    desired: dict[tuple[str, str], int | None] = {}
    for namespace, items in zip(with_daemonsets, daemonset_lists, strict=True):
        for ds in items:
            status = ds.get("status", {})
            observed = status.get("observedGeneration", 0) >= ds["metadata"].get("generation", 1)
            count = status.get("desiredNumberScheduled")
            desired[namespace, ds["metadata"]["name"]] = count if observed else None

    running: dict[tuple[str, str], list[str]] = {}
    waiting: list[str] = []
    for w in workloads:
        expected = desired.get(w.key) if w.kind == "DaemonSet" else w.replicas
        mine = pods.get(w.key, [])
        ready = sorted(p["metadata"]["name"] for p in mine if _ready(p))
        if expected is not None and len(mine) == expected and len(ready) == expected:
            running[w.key] = ready
            continue
        of = "?" if expected is None else str(expected)
        line = f"{w.kind} {w.namespace}/{w.name}: {len(ready)} of {of} Running"
        pending = [p for p in mine if not _ready(p)]
        if pending:
            pod = pending[0]
            reasons = [
                f"{c.get('reason', '')}: {c.get('message', '')}"
                for c in pod.get("status", {}).get("conditions") or []
                if c.get("status") != "True" and c.get("message")
            ]
            phase = pod.get("status", {}).get("phase", "?")
            line += f"; {pod['metadata']['name']} is {phase} {'; '.join(reasons)}".rstrip()
        waiting.append(line)
    return _Progress(running, waiting)


def deploy(
    kube: KubeClient,
    workloads: Sequence[DemoWorkload],
    *,
    namespace_prefix: str = "",
    timeout_s: float = DEPLOY_TIMEOUT_S,
) -> dict[tuple[str, str], list[str]]:
    """Create the namespaces, workloads and VPAs, wait until every pod is Running and ready,
    and return the pod names (sorted) by (namespace, workload name).

    With `namespace_prefix` every namespace is `<prefix><namespace>`, and so are the keys of
    the result. Existing namespaces are used as they are; an existing workload or VPA is an
    error. Raises TestbedError naming what is still missing after `timeout_s`.
    """
    workloads = with_namespace_prefix(workloads, namespace_prefix)
    counts = Counter(w.key for w in workloads)
    duplicates = sorted(f"{ns}/{name}" for (ns, name), n in counts.items() if n > 1)
    if duplicates:
        raise ValueError(f"workloads named twice in a namespace: {', '.join(duplicates)}")
    if not workloads:
        return {}
    deadline = time.monotonic() + timeout_s
    namespaces = sorted({w.namespace for w in workloads})
    _parallel([partial(_create_namespace, kube, ns) for ns in namespaces])
    _wait_for_service_accounts(kube, namespaces, deadline)
    _parallel([partial(_create_workload, kube, w) for w in workloads])

    pause = 0.2
    while True:
        progress = _progress(kube, workloads)
        if not progress.waiting:
            return {w.key: progress.running[w.key] for w in workloads}
        if time.monotonic() > deadline:
            shown = "\n  ".join(progress.waiting[:10])
            more = len(progress.waiting) - 10
            raise TestbedError(
                f"{len(progress.waiting)} of {len(workloads)} workloads not Running after "
                f"{timeout_s:.0f} s:\n  {shown}" + (f"\n  ... and {more} more" if more > 0 else "")
            )
        time.sleep(pause)
        pause = min(2.0, pause * 1.5)


def history_spec(
    workloads: Iterable[DemoWorkload], pods: Mapping[tuple[str, str], Sequence[str]]
) -> tuple[WorkloadSpec, ...]:
    """History specs for the workloads with the names of the pods they run (from deploy())."""
    specs: list[WorkloadSpec] = []
    for w in workloads:
        names = tuple(pods[w.key])
        specs.append(WorkloadSpec(w.namespace, w.name, len(names), w.containers, names))
    return tuple(specs)


@dataclass
class Demo:
    """Deployed workloads and a running Prometheus with history for their pods.

    `pods` is deploy()'s result; `workloads` are as deployed (namespace prefix applied);
    `timings` (seconds) has `deploy_s` and Prometheus' own (`generate_s`, `backfill_s`,
    `start_s`). `stop()` stops Prometheus; the workloads stay.
    """

    prometheus: PrometheusInstance
    history: SyntheticHistory
    pods: dict[tuple[str, str], list[str]]
    workloads: tuple[DemoWorkload, ...]
    timings: dict[str, float] = field(default_factory=dict)

    def stop(self) -> None:
        self.prometheus.stop()

    def __enter__(self) -> Demo:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_demo(
    workdir: Path,
    kube: KubeClient,
    workloads: Sequence[DemoWorkload] = DEMO,
    *,
    days: float = 8,
    step_s: int = 60,
    seed: int = 0,
    namespace_prefix: str = "",
    timeout_s: float = DEPLOY_TIMEOUT_S,
    end: datetime | float | None = None,
) -> Demo:
    """Deploy the workloads, then start Prometheus (data and logs in `workdir`) with `days` of
    history at `step_s` seconds ending at `end` (default now) for exactly the pods they run.

    The default, DEMO over 8 days at 60 s on three nodes, writes an OpenMetrics file of about
    220 MB before the backfill (a few seconds in all); 1,000 workloads of scaled_demo() want
    something like `days=1, step_s=300`.
    """
    workloads = with_namespace_prefix(workloads, namespace_prefix)
    started = time.monotonic()
    pods = deploy(kube, workloads, timeout_s=timeout_s)
    deploy_s = time.monotonic() - started
    spec = history_spec(workloads, pods)
    prometheus, history = start_prometheus_with_history(workdir, spec, days, step_s, end, seed=seed)
    return Demo(prometheus, history, pods, workloads, {"deploy_s": deploy_s, **prometheus.timings})


def inventory(
    workloads: Iterable[DemoWorkload], pods: Mapping[tuple[str, str], Sequence[str]]
) -> list[dict[str, Any]]:
    """One JSON-able row per workload: namespace, kind, name, pods, vpa (what it names)."""
    return [
        {
            "namespace": w.namespace,
            "kind": w.kind,
            "name": w.name,
            "pods": list(pods.get(w.key, [])),
            "vpa": w.vpa_label(),
        }
        for w in workloads
    ]


def format_inventory(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows of inventory() as an aligned table."""
    header = ("NAMESPACE", "KIND", "NAME", "PODS", "VPA RECOMMENDER")
    table = [header] + [
        (r["namespace"], r["kind"], r["name"], str(len(r["pods"])), r["vpa"]) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + "  "
        + row[-1]
        for row in table
    )
