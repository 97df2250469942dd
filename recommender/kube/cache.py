"""A list-then-watch cache of one kind of object, like client-go's reflector and store:
one paginated LIST, then a WATCH from its resourceVersion that keeps the store current.
A watch that falls too far behind (410 Gone) relists; a dropped connection resumes from the
last resourceVersion seen (bookmarks keep it fresh). No per-object GETs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from recommender.kube.rest import JSON, KubeApiError, KubeClient

log = logging.getLogger(__name__)

Key = tuple[str, str]
"""(namespace, name); namespace is empty for cluster-scoped objects."""

Handler = Callable[[str, JSON], None]
"""Called with the event type (ADDED, MODIFIED, DELETED) and the object, after the store
has been updated. Handlers must be quick: they run on the watch thread."""


def object_key(obj: JSON) -> Key:
    metadata = obj.get("metadata", {})
    return str(metadata.get("namespace", "")), str(metadata.get("name", ""))


@dataclass
class ListWatchCache:
    """Objects at `path` (e.g. `/apis/autoscaling.k8s.io/v1/verticalpodautoscalers`)."""

    client: KubeClient
    path: str
    page_size: int = 500
    watch_timeout_s: int = 300
    label_selector: str | None = None
    field_selector: str | None = None
    handlers: list[Handler] = field(default_factory=list)
    transform: Callable[[JSON], JSON] | None = None
    """Applied to every object before it is stored (keep only the fields you read: a full
    pod is several KB of JSON)."""
    _store: dict[Key, JSON] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _resource_version: str = field(default="", init=False)
    _synced: threading.Event = field(default_factory=threading.Event, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    relists: int = field(default=0, init=False)

    def _selectors(self) -> dict[str, object]:
        return {"labelSelector": self.label_selector, "fieldSelector": self.field_selector}

    def relist(self) -> None:
        """Replace the store with a fresh LIST; handlers see the differences."""
        items, resource_version = self.client.list_all(
            self.path, page_size=self.page_size, **self._selectors()
        )
        if self.transform is not None:
            items = [self.transform(item) for item in items]
        fresh = {object_key(item): item for item in items}
        with self._lock:
            old, self._store = self._store, fresh
            self._resource_version = resource_version
        self.relists += 1
        for key, obj in fresh.items():
            previous = old.get(key)
            if previous is None:
                self._notify("ADDED", obj)
            elif _version(previous) != _version(obj):
                self._notify("MODIFIED", obj)
        for key, obj in old.items():
            if key not in fresh:
                self._notify("DELETED", obj)
        self._synced.set()

    def apply(self, event: JSON) -> None:
        """Apply one watch event to the store."""
        kind, obj = event.get("type"), event.get("object", {})
        if kind == "BOOKMARK":
            with self._lock:
                self._resource_version = _version(obj)
            return
        if kind not in {"ADDED", "MODIFIED", "DELETED"}:
            log.warning("ignoring watch event of type %r on %s", kind, self.path)
            return
        if self.transform is not None:
            obj = self.transform(obj)
        with self._lock:
            if kind == "DELETED":
                self._store.pop(object_key(obj), None)
            else:
                self._store[object_key(obj)] = obj
            self._resource_version = _version(obj)
        self._notify(str(kind), obj)

    def watch_once(self) -> None:
        """One watch request, from the last resourceVersion, until the server ends it."""
        for event in self.client.watch(
            self.path, self._resource_version, timeout_s=self.watch_timeout_s, **self._selectors()
        ):
            self.apply(event)
            if self._stop.is_set():
                return

    def run(self) -> None:
        """List, then watch until `stop()`; errors are logged and retried with backoff."""
        backoff_s = 0.5
        while not self._stop.is_set():
            try:
                if not self._synced.is_set():
                    self.relist()
                self.watch_once()
                backoff_s = 0.5
            except KubeApiError as error:
                if error.gone:
                    log.info("watch of %s expired (%s); listing again", self.path, error.message)
                    self._synced.clear()
                    continue
                log.warning(
                    "watch of %s failed: %s; retrying in %.1f s", self.path, error, backoff_s
                )
                self._stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2, 30.0)
            except Exception as error:  # connection drops, timeouts: resume from the last version
                if self._stop.is_set():
                    return
                log.warning(
                    "watch of %s broke: %s; resuming in %.1f s", self.path, error, backoff_s
                )
                self._stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2, 30.0)

    def start(self) -> None:
        """Run in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name=f"watch {self.path}", daemon=True)
        self._thread.start()

    def wait_synced(self, timeout_s: float) -> bool:
        return self._synced.wait(timeout_s)

    def stop(self) -> None:
        """Ask the watch to end; it returns at the next event or when its request times out."""
        self._stop.set()

    def items(self) -> list[JSON]:
        with self._lock:
            return list(self._store.values())

    def get(self, namespace: str, name: str) -> JSON | None:
        with self._lock:
            return self._store.get((namespace, name))

    @property
    def resource_version(self) -> str:
        with self._lock:
            return self._resource_version

    def _notify(self, kind: str, obj: JSON) -> None:
        for handler in self.handlers:
            try:
                handler(kind, obj)
            except Exception:
                log.exception("handler for %s failed on %s %s", self.path, kind, object_key(obj))


def _version(obj: JSON) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))
