"""A client of the inspection API for the CLI: bearer token, TLS (optionally with a CA file
and a client certificate), pages followed to the end, errors turned into one clear line."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from recommender.api.generated.vpafleet.v1 import inspection_pb2 as pb
from recommender.api.generated.vpafleet.v1 import inspection_pb2_grpc as pb_grpc


class ClientError(RuntimeError):
    """The server refused or failed a call; the message names the server and the status."""


@dataclass(frozen=True)
class ClientTls:
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: Path | None) -> bytes | None:
            return path.read_bytes() if path else None

        return grpc.ssl_channel_credentials(
            read(self.ca_file), read(self.key_file), read(self.cert_file)
        )


class InspectionClient:
    """Calls to one server; use as a context manager or call `close`."""

    def __init__(
        self, server: str, *, token: str | None = None, tls: ClientTls | None = None
    ) -> None:
        self.server = server
        self._channel = (
            grpc.secure_channel(server, tls.credentials())
            if tls is not None
            else grpc.insecure_channel(server)
        )
        self._stub = pb_grpc.InspectionStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def __enter__(self) -> InspectionClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Any, request: Any, timeout_s: float = 60.0) -> Any:
        try:
            return method(request, metadata=self._metadata, timeout=timeout_s)
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else None
            details = error.details() if hasattr(error, "details") else str(error)
            name = code.name if code is not None else "ERROR"
            raise ClientError(f"{self.server}: {name}: {details}") from None

    def recommendations(
        self, *, cluster: str = "", namespace: str = "", label_selector: str = ""
    ) -> Iterator[pb.Recommendation]:
        token = ""
        while True:
            page: pb.ListRecommendationsResponse = self._call(
                self._stub.ListRecommendations,
                pb.ListRecommendationsRequest(
                    cluster=cluster,
                    namespace=namespace,
                    label_selector=label_selector,
                    page_token=token,
                ),
            )
            yield from page.recommendations
            token = page.next_page_token
            if not token:
                return

    def recommendation(self, namespace: str, name: str, cluster: str = "") -> pb.Recommendation:
        result: pb.Recommendation = self._call(
            self._stub.GetRecommendation,
            pb.GetRecommendationRequest(cluster=cluster, namespace=namespace, name=name),
        )
        return result

    def explain(
        self, namespace: str, name: str, container: str = "", cluster: str = ""
    ) -> pb.Explanation:
        result: pb.Explanation = self._call(
            self._stub.Explain,
            pb.ExplainRequest(cluster=cluster, namespace=namespace, name=name, container=container),
        )
        return result

    def actions(self, *, cluster: str = "", namespace: str = "") -> Iterator[pb.Action]:
        token = ""
        while True:
            page: pb.ListActionsResponse = self._call(
                self._stub.ListActions,
                pb.ListActionsRequest(cluster=cluster, namespace=namespace, page_token=token),
            )
            yield from page.actions
            token = page.next_page_token
            if not token:
                return

    def fleet_status(self) -> pb.FleetStatusResponse:
        result: pb.FleetStatusResponse = self._call(self._stub.FleetStatus, pb.FleetStatusRequest())
        return result
