"""Resolving a VPA's `targetRef` to the label selector of its pods, with the stock
recommender's rules and messages (upstream `pkg/target/fetcher.go`,
`controller_fetcher.go:FindTopMostWellKnownOrScalable`, `input/cluster_feeder.go:getSelector`):

- well-known controllers give their own selector; any other kind must serve a `/scale`
  subresource whose `status.selector` is used;
- the target must be the top-most well-known or scalable controller of its owner chain;
- when either fails, the VPA selects no pod and gets a ConfigUnsupported condition whose
  message is upstream's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from recommender.kube.rest import JSON, KubeApiError, KubeClient
from recommender.vpa.objects import TargetRef, VerticalPodAutoscaler
from recommender.vpa.targets import (
    WELL_KNOWN_CONTROLLERS,
    Selector,
    SelectorError,
    parse_selector,
    workload_selector,
)

# Where the well-known controllers live (group/version, plural).
_WELL_KNOWN_PATHS = {
    "Deployment": ("apps/v1", "deployments"),
    "StatefulSet": ("apps/v1", "statefulsets"),
    "DaemonSet": ("apps/v1", "daemonsets"),
    "ReplicaSet": ("apps/v1", "replicasets"),
    "ReplicationController": ("v1", "replicationcontrollers"),
    "Job": ("batch/v1", "jobs"),
    "CronJob": ("batch/v1", "cronjobs"),
}


PREFETCH_MIN_TARGETS = 3
"""From this many VPAs targeting one kind in a namespace, that kind is listed, not read one
by one."""


class TargetError(Exception):
    """Why a targetRef cannot be used; the message is what upstream reports."""


class NoScaleError(TargetError):
    """The kind serves no `/scale` subresource."""


@dataclass(frozen=True)
class Resolution:
    """The pods a VPA selects, or why it selects none (a ConfigUnsupported message)."""

    selector: Selector
    config_unsupported: str | None = None


@dataclass(frozen=True)
class _Controller:
    api_version: str
    kind: str
    name: str


def _api_root(api_version: str) -> str:
    return f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"


@dataclass
class TargetResolver:
    """Resolves targetRefs against one API server. Discovery answers and the objects read are
    kept for the resolver's life: make one per pass, so that a controller read for its
    selector is not read again for its owner chain."""

    kube: KubeClient
    _discovery: dict[str, dict[str, tuple[str, bool]]] = field(default_factory=dict)
    _objects: dict[str, JSON | None] = field(default_factory=dict)

    def prefetch(self, namespace: str, vpas: Iterable[VerticalPodAutoscaler]) -> None:
        """Read the well-known controllers many of `vpas` target with one LIST per kind
        instead of one GET per VPA (a namespace of 50 Deployments with a VPA each: one call)."""
        wanted: dict[str, set[str]] = defaultdict(set)
        for vpa in vpas:
            ref = vpa.spec.target_ref
            if ref is not None and ref.kind in _WELL_KNOWN_PATHS:
                wanted[ref.kind].add(ref.name)
        for kind, names in wanted.items():
            if len(names) < PREFETCH_MIN_TARGETS:
                continue
            api_version, plural = _WELL_KNOWN_PATHS[kind]
            collection = f"{_api_root(api_version)}/namespaces/{namespace}/{plural}"
            items, _ = self.kube.list_all(collection)
            found = {str(item.get("metadata", {}).get("name", "")): item for item in items}
            for name in names:
                self._objects[f"{collection}/{name}"] = found.get(name)

    def _read(self, path: str) -> JSON | None:
        """The object at `path`, None when it does not exist; each path is read once."""
        if path not in self._objects:
            try:
                self._objects[path] = self.kube.get(path)
            except KubeApiError as error:
                if not error.not_found:
                    raise
                self._objects[path] = None
        return self._objects[path]

    def resolve(self, vpa: VerticalPodAutoscaler) -> Resolution:
        namespace = vpa.metadata.namespace
        try:
            selector = self._selector(namespace, vpa.spec.target_ref)
        except (TargetError, SelectorError) as error:
            return Resolution(Selector.nothing(), f"Cannot read targetRef. Reason: {error}")
        ref = vpa.spec.target_ref
        assert ref is not None
        target = f"{ref.api_version}.{ref.kind}/{ref.name}"
        key = _Controller(ref.api_version, ref.kind, ref.name)
        try:
            top = self._top_most(namespace, key)
        except (TargetError, KubeApiError) as error:
            return Resolution(
                Selector.nothing(),
                f"Error checking if target {target} is a topmost well-known or scalable "
                f"controller: {error}",
            )
        if top is None:
            return Resolution(
                Selector.nothing(),
                f"Unknown error during checking if target {target} is a topmost well-known "
                "or scalable controller",
            )
        if top != key:
            return Resolution(
                Selector.nothing(),
                f"The target {target} has a parent controller but it should point to a "
                "topmost well-known or scalable controller",
            )
        return Resolution(selector)

    def _selector(self, namespace: str, ref: TargetRef | None) -> Selector:
        if ref is None:
            raise TargetError("targetRef not defined. If this is a v1beta1 object, switch to v1")
        if ref.kind in WELL_KNOWN_CONTROLLERS:
            obj = self._get_well_known(namespace, ref.kind, ref.name)
            if obj is None:
                raise TargetError(f"{ref.kind} {namespace}/{ref.name} does not exist")
            return workload_selector(ref.kind, obj)
        try:
            scale = self._get_scale(namespace, ref.api_version, ref.kind, ref.name)
        except (TargetError, KubeApiError) as error:
            raise TargetError(
                f"unhandled targetRef {ref.api_version} / {ref.kind} / {ref.name}, "
                f"last error {error}"
            ) from error
        text = str(scale.get("status", {}).get("selector", ""))
        if not text:
            raise TargetError(
                f"resource {namespace}/{ref.name} has an empty selector for scale sub-resource"
            )
        return parse_selector(text, f"{ref.kind} {namespace}/{ref.name} /scale")

    def _get_well_known(self, namespace: str, kind: str, name: str) -> JSON | None:
        api_version, plural = _WELL_KNOWN_PATHS[kind]
        return self._read(f"{_api_root(api_version)}/namespaces/{namespace}/{plural}/{name}")

    def _resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        """(plural, serves /scale) of a kind, from API discovery."""
        if api_version not in self._discovery:
            listing = self.kube.get(_api_root(api_version))
            names = {r["name"] for r in listing.get("resources", [])}
            self._discovery[api_version] = {
                r["kind"]: (r["name"], f"{r['name']}/scale" in names)
                for r in listing.get("resources", [])
                if "/" not in r["name"]
            }
        try:
            return self._discovery[api_version][kind]
        except KeyError:
            raise TargetError(f"no kind {kind!r} is served in {api_version}") from None

    def _object_path(self, namespace: str, api_version: str, kind: str, name: str) -> str:
        if kind in _WELL_KNOWN_PATHS:
            api_version, plural = _WELL_KNOWN_PATHS[kind]
        else:
            plural, _ = self._resource(api_version, kind)
        return f"{_api_root(api_version)}/namespaces/{namespace}/{plural}/{name}"

    def _get_scale(self, namespace: str, api_version: str, kind: str, name: str) -> JSON:
        _, scalable = self._resource(api_version, kind)
        if not scalable:
            raise NoScaleError(f"{kind} in {api_version} has no scale subresource")
        return self.kube.get(self._object_path(namespace, api_version, kind, name) + "/scale")

    def _well_known_or_scalable(self, namespace: str, key: _Controller) -> bool:
        if key.kind in WELL_KNOWN_CONTROLLERS:
            return True
        try:
            self._get_scale(namespace, key.api_version, key.kind, key.name)
        except (TargetError, KubeApiError):
            return False
        return True

    def _parent(self, namespace: str, key: _Controller) -> _Controller | None:
        """The controller owning `key`, as upstream reads it: a well-known controller's own
        ownerReferences, any other kind's through its `/scale` subresource (which is all the
        RBAC a recommender needs); a kind without `/scale` ends the chain."""
        if key.kind in WELL_KNOWN_CONTROLLERS:
            obj = self._read(self._object_path(namespace, key.api_version, key.kind, key.name))
            if obj is None:
                raise TargetError(f"{key.kind} {namespace}/{key.name} does not exist")
        else:
            obj = self._scale_of_owner(namespace, key)
            if obj is None:
                return None
        for owner in obj.get("metadata", {}).get("ownerReferences") or []:
            if owner.get("controller"):
                return _Controller(owner["apiVersion"], owner["kind"], owner["name"])
        return None

    def _scale_of_owner(self, namespace: str, key: _Controller) -> JSON | None:
        unhandled = f"Unhandled targetRef {key.api_version} / {key.kind} / {key.name}, last error"
        if key.kind == "Node":  # pods owned by nodes: never a controller, never fetched
            raise TargetError(f"{unhandled} node is not a valid owner")
        try:
            return self._get_scale(namespace, key.api_version, key.kind, key.name)
        except NoScaleError:
            return None
        except KubeApiError as error:
            if error.not_found:
                return None
            raise TargetError(f"{unhandled} {error}") from error
        except TargetError as error:
            raise TargetError(f"{unhandled} {error}") from error

    def _top_most(self, namespace: str, key: _Controller) -> _Controller | None:
        top = key if self._well_known_or_scalable(namespace, key) else None
        visited = {key}
        while (owner := self._parent(namespace, key)) is not None:
            if self._well_known_or_scalable(namespace, owner):
                top = owner
            if owner in visited:
                raise TargetError("cycle detected in ownership chain")
            visited.add(owner)
            key = owner
        return top
