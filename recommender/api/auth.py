"""Bearer-token authentication of the gRPC API: every call but the standard health check must
carry `authorization: Bearer <token>`; others are refused with UNAUTHENTICATED before any
handler runs. The token is compared in constant time and never logged."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

HEALTH_PREFIX = "/grpc.health.v1.Health/"
"""Health checks answer without a token: probes (kubelet's gRPC probe) send none."""


class TokenError(ValueError):
    """The token file cannot be used; the message names it."""


def read_token(path: Path) -> str:
    """The token in a file (surrounding whitespace dropped); TokenError when unreadable or
    empty."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise TokenError(f"api.token_file {path}: cannot be read ({error})") from None
    if not token:
        raise TokenError(f"api.token_file {path}: is empty")
    return token


def _refusal(
    handler: grpc.RpcMethodHandler[Any, Any] | None, details: str
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same shape as `handler` that only aborts with UNAUTHENTICATED."""

    def abort(_request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, details)

    if handler is not None and handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    if handler is not None and handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if handler is not None and handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Lets through calls with the right bearer token (and health checks)."""

    def __init__(self, token: str) -> None:
        if not token:
            raise TokenError("the API token must not be empty")
        self._expected = f"Bearer {token}".encode()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        if method.startswith(HEALTH_PREFIX):
            return continuation(handler_call_details)
        given = ""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                given = value if isinstance(value, str) else value.decode("latin-1")
        if given and hmac.compare_digest(given.encode(), self._expected):
            return continuation(handler_call_details)
        why = "wrong bearer token" if given else "missing authorization: Bearer <token>"
        return _refusal(continuation(handler_call_details), why)
