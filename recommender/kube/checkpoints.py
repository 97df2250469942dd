"""Recommender checkpoints in the cluster: one `RecommenderCheckpoint` (vpa-fleet.io/v1alpha1,
crds/recommendercheckpoints.vpa-fleet.io.yaml) per VPA, so that history survives restarts.

The object is named after its VPA, lives in the VPA's namespace, carries the label
`vpa-fleet.io/recommender: <recommender>` and an ownerReference to the VPA, so Kubernetes'
garbage collector deletes it with the VPA; `collect_garbage` also deletes the checkpoints of VPAs
this recommender no longer serves. The state itself is `analytics.snapshot`'s JSON form
(with each container's hourly profile when the recommender keeps one).

Objects travel as plain JSON (`KubeClient`). Throttling (429) and server errors (5xx) are
retried a few times with backoff; a replace that loses a race (409) re-reads and tries again.
Corrupt objects found by `load` are reported, never raised; a corrupt hourly profile is
reported too, and the checkpoint loads without it.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Final, TypeVar

from analytics.model_params import ModelParams
from analytics.snapshot import (
    AggregateSnapshot,
    SnapshotError,
    snapshot_from_json,
    snapshot_to_json,
)
from recommender.kube.rest import JSON, KubeApiError, KubeClient

log = logging.getLogger(__name__)

T = TypeVar("T")

GROUP: Final = "vpa-fleet.io"
VERSION: Final = "v1alpha1"
KIND: Final = "RecommenderCheckpoint"
PLURAL: Final = "recommendercheckpoints"
API_VERSION: Final = f"{GROUP}/{VERSION}"
RECOMMENDER_LABEL: Final = "vpa-fleet.io/recommender"
CHECKPOINT_FORMAT_VERSION: Final = 1
"""Version of the object's layout (`spec.formatVersion`); the only one read back."""

VPA_API_VERSION: Final = "autoscaling.k8s.io/v1"
VPA_KIND: Final = "VerticalPodAutoscaler"

_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")


def checkpoint_path(namespace: str | None = None, name: str | None = None) -> str:
    """The checkpoints of every namespace, of one namespace, or one checkpoint."""
    base = f"/apis/{API_VERSION}"
    if namespace is None:
        return f"{base}/{PLURAL}"
    path = f"{base}/namespaces/{namespace}/{PLURAL}"
    return path if name is None else f"{path}/{name}"


def format_time(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with microseconds, as `spec.historyEnd` holds it."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Checkpoint:
    """The saved state of one VPA: its containers' snapshots and the end of their history.

    `history_end` must be timezone-aware; it is kept in UTC. `problems`: what was left out
    when it was read without refusing the rest (a container's hourly profile that does not
    decode).
    """

    namespace: str
    vpa_name: str
    vpa_uid: str
    recommender: str
    history_end: dt.datetime
    aggregates: tuple[AggregateSnapshot, ...]
    problems: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.history_end.utcoffset() is None:
            raise ValueError(f"history_end must be timezone-aware, got {self.history_end}")
        object.__setattr__(self, "history_end", self.history_end.astimezone(dt.UTC))

    @property
    def key(self) -> tuple[str, str]:
        """(namespace, VPA name)."""
        return self.namespace, self.vpa_name


class CheckpointError(ValueError):
    """A checkpoint object that cannot be read; the message names the object and the field."""


@dataclass
class CheckpointStore:
    """Saves, loads and garbage-collects the checkpoints of one recommender (by name).

    `params` are the model parameters of the store the checkpoints are imported into: states
    of other histogram half-lives are reported by `load` as problems.
    """

    kube: KubeClient
    recommender: str
    params: ModelParams = field(default_factory=ModelParams)
    attempts: int = 4
    backoff_s: float = 0.5
    # Metadata of the objects this store last wrote, to replace them without a read first.
    _written: dict[tuple[str, str], JSON] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not _LABEL_VALUE.match(self.recommender):
            raise ValueError(
                f"recommender name {self.recommender!r} is not a valid label value "
                "(at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric)"
            )

    @property
    def selector(self) -> str:
        """The label selector of this recommender's checkpoints."""
        return f"{RECOMMENDER_LABEL}={self.recommender}"

    # -- save ------------------------------------------------------------------------------------

    def save(self, checkpoint: Checkpoint) -> None:
        """Create the checkpoint's object, or replace it.

        ValueError for a checkpoint of another recommender or without the VPA's uid;
        KubeApiError when the API server refuses it (or keeps failing).
        """
        if checkpoint.recommender != self.recommender:
            raise ValueError(
                f"checkpoint of {checkpoint.namespace}/{checkpoint.vpa_name} names recommender "
                f"{checkpoint.recommender!r}, this store saves for {self.recommender!r}"
            )
        if not checkpoint.vpa_uid:
            raise ValueError(
                f"checkpoint of {checkpoint.namespace}/{checkpoint.vpa_name} has no VPA uid "
                "(needed for its ownerReference)"
            )
        key = checkpoint.key
        what = f"{KIND} {key[0]}/{key[1]}"
        spec = _spec(checkpoint)
        path = checkpoint_path(*key)
        # Known objects are replaced, unknown ones created, without a read first: a read
        # happens only when the API server says the guess was wrong (409 or 404).
        metadata = self._written.get(key)
        for attempt in range(1, self.attempts + 1):
            last = attempt == self.attempts
            try:
                if metadata is None:
                    body = _new_object(checkpoint, self.recommender, spec)
                    collection = checkpoint_path(key[0])
                    written = self._retrying(
                        f"create {what}", partial(self.kube.request, "POST", collection, body=body)
                    )
                else:
                    body = _replacement(metadata, checkpoint, self.recommender, spec)
                    written = self._retrying(
                        f"replace {what}", partial(self.kube.request, "PUT", path, body=body)
                    )
            except KubeApiError as error:
                # 409: it exists (create) or changed meanwhile (replace): read it, replace it;
                # 404 on replace: deleted meanwhile: create it.
                replacing = metadata is not None
                if last or not (error.conflict or (replacing and error.not_found)):
                    self._written.pop(key, None)
                    raise
                log.info("%s changed meanwhile (%s); reading it again", what, error.reason)
                current = self._retrying(f"read {what}", lambda: self._read(path))
                metadata = None if current is None else current.get("metadata", {})
                continue
            self._written[key] = _kept_metadata(written.get("metadata", {}))
            return
        raise AssertionError("unreachable")

    def _read(self, path: str) -> JSON | None:
        try:
            return self.kube.get(path)
        except KubeApiError as error:
            if error.not_found:
                return None
            raise

    # -- load ------------------------------------------------------------------------------------

    def load(self, namespaces: Collection[str] | None = None) -> tuple[list[Checkpoint], list[str]]:
        """This recommender's checkpoints (of the given namespaces, or all), sorted by key,
        and a human-readable problem for each object that could not be read (and for each
        part left out of one that was: a corrupt hourly profile)."""
        checkpoints: list[Checkpoint] = []
        problems: list[str] = []
        for item in self._list(namespaces):
            try:
                checkpoint = self.parse(item)
            except CheckpointError as error:
                problems.append(str(error))
                continue
            checkpoints.append(checkpoint)
            problems.extend(checkpoint.problems)
            self._written[checkpoint.key] = _kept_metadata(item.get("metadata", {}))
        checkpoints.sort(key=lambda c: c.key)
        return checkpoints, problems

    def parse(self, item: JSON) -> Checkpoint:
        """A checkpoint object as read from the API server; CheckpointError naming the field.
        A container's hourly profile that does not decode is left out and named in
        `Checkpoint.problems`."""
        metadata = item.get("metadata")
        metadata = metadata if isinstance(metadata, dict) else {}
        namespace, name = metadata.get("namespace"), metadata.get("name")
        if not isinstance(namespace, str) or not isinstance(name, str):
            raise CheckpointError(
                f"{KIND} without a namespace and name: metadata is {_brief(metadata)}"
            )
        where = f"{KIND} {namespace}/{name}"
        spec = item.get("spec")
        if not isinstance(spec, dict):
            raise CheckpointError(f"{where}: spec: missing or not an object")

        def text(field_name: str, *, required: bool = True) -> str:
            value = spec.get(field_name)
            if value is None and not required:
                return ""
            if not isinstance(value, str) or (required and not value):
                problem = "missing" if value is None else f"must be a string, got {_brief(value)}"
                raise CheckpointError(f"{where}: spec.{field_name}: {problem}")
            return value

        version = spec.get("formatVersion")
        if isinstance(version, bool) or not isinstance(version, int):
            problem = "missing" if version is None else f"must be an integer, got {_brief(version)}"
            raise CheckpointError(f"{where}: spec.formatVersion: {problem}")
        if version != CHECKPOINT_FORMAT_VERSION:
            raise CheckpointError(
                f"{where}: spec.formatVersion: {version} is not supported "
                f"(only {CHECKPOINT_FORMAT_VERSION})"
            )
        vpa_name = text("vpaName")
        if vpa_name != name:
            raise CheckpointError(
                f"{where}: spec.vpaName: {vpa_name!r} is not the object's name {name!r}"
            )
        recommender = text("recommender")
        if recommender != self.recommender:
            raise CheckpointError(
                f"{where}: spec.recommender: {recommender!r} does not match its label "
                f"{RECOMMENDER_LABEL}={self.recommender}"
            )
        history_end = _parse_time(text("historyEnd"), f"{where}: spec.historyEnd")
        containers = spec.get("containers", [])
        problems: list[str] = []
        try:
            aggregates = snapshot_from_json(
                containers, f"{where}: spec.containers", self.params, problems
            )
        except SnapshotError as error:
            raise CheckpointError(str(error)) from None
        return Checkpoint(
            namespace=namespace,
            vpa_name=vpa_name,
            vpa_uid=text("vpaUID", required=False),
            recommender=recommender,
            history_end=history_end,
            aggregates=aggregates,
            problems=tuple(problems),
        )

    def _list(self, namespaces: Collection[str] | None) -> list[JSON]:
        paths = (
            [checkpoint_path()]
            if namespaces is None
            else [checkpoint_path(n) for n in sorted(set(namespaces))]
        )
        items: list[JSON] = []
        for path in paths:
            page, _ = self._retrying(
                f"list {PLURAL}", partial(self.kube.list_all, path, labelSelector=self.selector)
            )
            items.extend(page)
        return items

    # -- garbage collection ----------------------------------------------------------------------

    def collect_garbage(
        self, live: Mapping[tuple[str, str], str], namespaces: Collection[str] | None = None
    ) -> int:
        """Delete this recommender's checkpoints (of the given namespaces, or all) whose VPA is
        not in `live` ((namespace, name) -> uid of the VPAs still ours) or has another uid.

        Returns how many were deleted. A checkpoint rewritten or deleted meanwhile is left alone.
        """
        deleted = 0
        for item in self._list(namespaces):
            metadata = item.get("metadata", {})
            namespace, name = metadata.get("namespace"), metadata.get("name")
            if not isinstance(namespace, str) or not isinstance(name, str):
                continue
            recorded = _recorded_uid(item)
            if recorded and live.get((namespace, name)) == recorded:
                continue
            if self._delete(namespace, name, metadata):
                deleted += 1
        return deleted

    def _delete(self, namespace: str, name: str, metadata: JSON) -> bool:
        self._written.pop((namespace, name), None)
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {
                "uid": metadata.get("uid"),
                "resourceVersion": metadata.get("resourceVersion"),
            },
        }
        what = f"{KIND} {namespace}/{name}"
        try:
            self._retrying(
                f"delete {what}",
                lambda: self.kube.request("DELETE", checkpoint_path(namespace, name), body=body),
            )
        except KubeApiError as error:
            if error.not_found:
                return False
            if error.conflict:
                log.info("%s changed since it was listed; not deleted", what)
                return False
            raise
        log.info("deleted %s: its VPA is gone or no longer ours", what)
        return True

    # -- retries ---------------------------------------------------------------------------------

    def _retrying(self, what: str, request: Callable[[], T]) -> T:
        """`request()`, retried with backoff while the API server throttles or fails."""
        for attempt in range(1, self.attempts + 1):
            try:
                return request()
            except KubeApiError as error:
                if not error.retryable or attempt == self.attempts:
                    raise
                delay = self.backoff_s * 2 ** (attempt - 1)
                log.warning("%s: %s; retrying in %.1f s", what, error, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")


def _spec(checkpoint: Checkpoint) -> JSON:
    return {
        "vpaName": checkpoint.vpa_name,
        "vpaUID": checkpoint.vpa_uid,
        "recommender": checkpoint.recommender,
        "historyEnd": format_time(checkpoint.history_end),
        "formatVersion": CHECKPOINT_FORMAT_VERSION,
        "containers": snapshot_to_json(checkpoint.aggregates),
    }


def _owner(checkpoint: Checkpoint) -> JSON:
    return {
        "apiVersion": VPA_API_VERSION,
        "kind": VPA_KIND,
        "name": checkpoint.vpa_name,
        "uid": checkpoint.vpa_uid,
    }


def _new_object(checkpoint: Checkpoint, recommender: str, spec: JSON) -> JSON:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": checkpoint.vpa_name,
            "namespace": checkpoint.namespace,
            "labels": {RECOMMENDER_LABEL: recommender},
            "ownerReferences": [_owner(checkpoint)],
        },
        "spec": spec,
    }


def _kept_metadata(metadata: JSON) -> JSON:
    """What a replacement carries over: everything but the server's field bookkeeping."""
    return {k: v for k, v in metadata.items() if k != "managedFields"}


def _replacement(metadata: JSON, checkpoint: Checkpoint, recommender: str, spec: JSON) -> JSON:
    """The object as it was (labels, annotations, other owners kept), with our label, the
    VPA as owner (in place of any earlier VPA) and the new spec; the resourceVersion read makes
    the write fail with 409 if the object changed meanwhile."""
    kept = _kept_metadata(metadata)
    others = [
        owner
        for owner in kept.get("ownerReferences") or []
        if not (
            owner.get("kind") == VPA_KIND
            and owner.get("apiVersion", "").startswith("autoscaling.k8s.io/")
        )
    ]
    kept["labels"] = {**(kept.get("labels") or {}), RECOMMENDER_LABEL: recommender}
    kept["ownerReferences"] = [_owner(checkpoint), *others]
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": kept, "spec": spec}


def _recorded_uid(item: JSON) -> str:
    """The uid of the VPA a checkpoint was saved for: its spec's, else its VPA owner's."""
    spec = item.get("spec")
    if isinstance(spec, dict) and isinstance(spec.get("vpaUID"), str) and spec["vpaUID"]:
        return str(spec["vpaUID"])
    for owner in item.get("metadata", {}).get("ownerReferences") or []:
        if owner.get("kind") == VPA_KIND and isinstance(owner.get("uid"), str):
            return str(owner["uid"])
    return ""


def _parse_time(text: str, where: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CheckpointError(f"{where}: {text!r} is not an RFC 3339 time") from None
    if moment.utcoffset() is None:
        raise CheckpointError(f"{where}: {text!r} has no time zone")
    return moment.astimezone(dt.UTC)


def _brief(value: object) -> str:
    shown = repr(value)
    return f"{type(value).__name__} {shown[:37] + '...' if len(shown) > 40 else shown}"
