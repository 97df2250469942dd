"""A thin JSON client over the Kubernetes API: the `kubernetes` package provides the
configuration (kubeconfig, context, in-cluster, TLS, auth); requests and answers stay plain
JSON, parsed into our own models at the edge. That avoids the generated client's per-object
model construction (slow for thousands of pods) and its lossy time serialisation."""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes import client, config

from recommender.kube.ratelimit import RateLimiter

log = logging.getLogger(__name__)

JSON = dict[str, Any]

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


class KubeApiError(RuntimeError):
    """A request the API server refused; carries the HTTP status and the server's message."""

    def __init__(self, method: str, path: str, status: int, reason: str, message: str) -> None:
        super().__init__(f"{method} {path}: {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def gone(self) -> bool:
        """410: a watch's resourceVersion is older than what the server still keeps."""
        return self.status == 410

    @property
    def unreachable(self) -> bool:
        """No answer at all: connection refused or reset, TLS failure, timeout (status 0)."""
        return self.status == 0

    @property
    def retryable(self) -> bool:
        """Throttled or a server-side failure: worth another try later."""
        return self.status == 429 or self.status >= 500


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """An ApiClient from a kubeconfig file (and context), or in-cluster when `kubeconfig` is
    None and a service account is mounted, else from the default kubeconfig."""
    if kubeconfig is None and context is None:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            return client.ApiClient()
        except config.ConfigException:
            pass
    api = config.new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
    assert isinstance(api, client.ApiClient)
    return api


@dataclass
class KubeClient:
    """JSON requests against one API server."""

    api: client.ApiClient
    timeout_s: float = 30.0
    limiter: RateLimiter | None = None
    """Client-side rate limit of every request (a watch counts once, when it starts)."""
    requests: Counter[str] = field(default_factory=Counter)
    """Requests sent, by method (WATCH for watches)."""
    _count_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, object] | None,
        body: object,
        content_type: str,
        timeout: float | tuple[float, float] | None,
    ) -> Any:
        if self.limiter is not None:
            self.limiter.acquire()
        with self._count_lock:
            self.requests["WATCH" if query and query.get("watch") == "true" else method] += 1
        headers = {"Accept": "application/json", "Content-Type": content_type}
        params = [(k, _query_value(v)) for k, v in (query or {}).items() if v is not None]
        method, url, headers, body, _ = self.api.param_serialize(
            method=method,
            resource_path=path,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        if params:
            url += "?" + urlencode(params)
        return self.api.call_api(
            method, url, header_params=headers, body=body, _request_timeout=timeout
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, object] | None = None,
        body: object = None,
        content_type: str = "application/json",
    ) -> JSON:
        """One request; the decoded JSON answer, or KubeApiError for any non-2xx status and
        for no answer at all (status 0, `unreachable`)."""
        try:
            response = self._send(
                method,
                path,
                query=query,
                body=body,
                content_type=content_type,
                timeout=self.timeout_s,
            )
        except (urllib3.exceptions.HTTPError, client.ApiException) as error:
            if isinstance(error, client.ApiException) and error.status:
                raise
            reason = getattr(error, "reason", None) or error
            raise KubeApiError(method, path, 0, "Unreachable", str(reason)) from error
        data = response.read()
        if not 200 <= response.status < 300:
            raise _error(method, path, response.status, response.reason, data)
        decoded: JSON = json.loads(data) if data else {}
        return decoded

    def get(self, path: str, **query: object) -> JSON:
        return self.request("GET", path, query=query)

    def list_all(
        self, path: str, *, page_size: int = 500, **query: object
    ) -> tuple[list[JSON], str]:
        """Every item of a collection, in pages; returns the items and the list's
        resourceVersion (where a watch starts to miss nothing)."""
        items: list[JSON] = []
        token: str | None = None
        while True:
            page = self.get(path, limit=page_size, **{"continue": token}, **query)
            items.extend(page.get("items") or [])
            token = page.get("metadata", {}).get("continue")
            if not token:
                return items, str(page.get("metadata", {}).get("resourceVersion", ""))

    def watch(
        self, path: str, resource_version: str, *, timeout_s: int = 300, **query: object
    ) -> Iterator[JSON]:
        """Watch events (`{"type": ..., "object": ...}`) from `resource_version`, with
        bookmarks, until the server closes the stream after about `timeout_s`."""
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": timeout_s,
            **query,
        }
        response = self._send(
            "GET",
            path,
            query=query,
            body=None,
            content_type="application/json",
            timeout=(10.0, timeout_s + 30.0),
        )
        if response.status != 200:
            raise _error("WATCH", path, response.status, response.reason, response.read())
        raw = response.response
        try:
            buffer = b""
            for chunk in raw.stream(64 * 1024, decode_content=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        event: JSON = json.loads(line)
                        if event.get("type") == "ERROR":
                            status = event.get("object", {})
                            raise KubeApiError(
                                "WATCH",
                                path,
                                int(status.get("code", 500)),
                                str(status.get("reason", "")),
                                str(status.get("message", "")),
                            )
                        yield event
        finally:
            raw.release_conn()


def _query_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _error(
    method: str, path: str, status: int, reason: str | None, data: bytes | None
) -> KubeApiError:
    message = ""
    if data:
        try:
            message = str(json.loads(data).get("message", ""))
        except (ValueError, AttributeError):
            message = data[:500].decode(errors="replace")
    return KubeApiError(method, path, status, reason or "", message)
