"""The gRPC server on a real loopback port: the token guards every call but health checks,
reflection lists the service, the actuator's audit records page newest first, FleetStatus
reports each cluster's lag. (The cluster-backed calls are in tests/integration/test_api.py.)"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from recommender.actuator.audit import AuditAction, AuditLog, AuditRecord, ContainerResources
from recommender.api.client import ClientError, InspectionClient
from recommender.api.generated.vpafleet.v1 import inspection_pb2 as pb
from recommender.api.generated.vpafleet.v1 import inspection_pb2_grpc as pb_grpc
from recommender.api.server import (
    SERVICE_NAME,
    InspectionService,
    RunningServer,
    StatusBoard,
    start_server,
)
from recommender.fleet.status import ActorStatus, ClusterStatus, FleetStatus, ShardStatus

TOKEN = "s3cret-token"
NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


def _record(minutes: int, namespace: str, name: str) -> AuditRecord:
    return AuditRecord(
        time=NOW + dt.timedelta(minutes=minutes),
        cluster="eu-1",
        namespace=namespace,
        workload_kind="Deployment",
        workload_name=name,
        vpa=name,
        action=AuditAction.ROLLOUT,
        trigger="Infeasible",
        reason="patch",
        message="resize infeasible on node",
        dry_run=True,
        resources=(ContainerResources("app", {"cpu": "250m", "memory": "256Mi"}),),
    )


@pytest.fixture
def served() -> Iterator[tuple[RunningServer, StatusBoard]]:
    audit = AuditLog()
    audit.extend(
        [_record(1, "shop", "web"), _record(2, "shop", "cart"), _record(3, "batch", "etl")]
    )
    board = StatusBoard()
    board.record_tick("eu-1", NOW - dt.timedelta(seconds=42), vpas=7, errors=1)
    service = InspectionService({}, audit=audit.records, board=board, clock=lambda: NOW)
    server = start_server(service, "127.0.0.1:0", token=TOKEN)
    try:
        yield server, board
    finally:
        server.stop(0)


def _address(server: RunningServer) -> str:
    return f"127.0.0.1:{server.port}"


def test_calls_without_the_right_token_are_refused(
    served: tuple[RunningServer, StatusBoard],
) -> None:
    server, _ = served
    for token in (None, "wrong"):
        with InspectionClient(_address(server), token=token) as client:
            with pytest.raises(ClientError, match="UNAUTHENTICATED"):
                client.fleet_status()
            with pytest.raises(ClientError, match="UNAUTHENTICATED"):
                list(client.actions())
    with grpc.insecure_channel(_address(server)) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.RpcError) as refused:
            next(iter(stub.ServerReflectionInfo(iter([request]))))
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_health_answers_without_a_token(served: tuple[RunningServer, StatusBoard]) -> None:
    server, _ = served
    with grpc.insecure_channel(_address(server)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_service(served: tuple[RunningServer, StatusBoard]) -> None:
    server, _ = served
    with grpc.insecure_channel(_address(server)) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = list(
            stub.ServerReflectionInfo(
                iter([request]), metadata=(("authorization", f"Bearer {TOKEN}"),)
            )
        )
    names = {s.name for s in answer.list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names


def test_actions_page_newest_first_and_filter(served: tuple[RunningServer, StatusBoard]) -> None:
    server, _ = served
    with InspectionClient(_address(server), token=TOKEN) as client:
        actions = list(client.actions())
        assert [a.name for a in actions] == ["etl", "cart", "web"]
        assert actions[0].requests == {"app": "cpu=250m,memory=256Mi"}
        assert actions[0].dry_run and actions[0].action == "rollout"
        assert actions[0].time == "2026-11-29T12:03:00Z"
        assert [a.name for a in client.actions(namespace="shop")] == ["cart", "web"]
    with grpc.insecure_channel(_address(server)) as channel:
        stub = pb_grpc.InspectionStub(channel)
        metadata = (("authorization", f"Bearer {TOKEN}"),)
        first = stub.ListActions(pb.ListActionsRequest(page_size=2), metadata=metadata)
        assert [a.name for a in first.actions] == ["etl", "cart"] and first.next_page_token
        second = stub.ListActions(
            pb.ListActionsRequest(page_size=2, page_token=first.next_page_token),
            metadata=metadata,
        )
        assert [a.name for a in second.actions] == ["web"] and not second.next_page_token


def test_fleet_status_reports_the_lag_of_each_cluster(
    served: tuple[RunningServer, StatusBoard],
) -> None:
    server, board = served
    board.record_shards({"shard-0": ["eu-1/shop"], "shard-1": ["eu-1/batch"]})
    with InspectionClient(_address(server), token=TOKEN) as client:
        status = client.fleet_status()
    (cluster,) = status.clusters
    assert (cluster.name, cluster.lag_seconds, cluster.vpas, cluster.errors) == ("eu-1", 42.0, 7, 1)
    assert [(a.name, list(a.shards)) for a in status.actors] == [
        ("shard-0", ["eu-1/shop"]),
        ("shard-1", ["eu-1/batch"]),
    ]


def test_an_unknown_cluster_is_not_found(served: tuple[RunningServer, StatusBoard]) -> None:
    server, _ = served
    with (
        InspectionClient(_address(server), token=TOKEN) as client,
        pytest.raises(ClientError, match="NOT_FOUND: cluster 'nope' not served"),
    ):
        client.explain("shop", "web", cluster="nope")


def test_in_fleet_mode_the_status_is_the_coordinator_s() -> None:
    taken = NOW
    status = FleetStatus(
        taken_at=taken,
        ticks=4,
        last_tick=taken - dt.timedelta(seconds=30),
        actors=(
            ActorStatus("shard-0", ("eu-1/shop", "us-1/batch"), taken, ()),
            ActorStatus("shard-1", ("eu-1/batch",), None, ("dead",)),
        ),
        clusters=(
            ClusterStatus("eu-1", 2, taken, None, ()),
            ClusterStatus("us-1", 1, None, "connection refused", ("shard-0",)),
        ),
        shards=(
            ShardStatus("eu-1", "batch", "shard-1", taken - dt.timedelta(seconds=90), 90.0, "x"),
            ShardStatus("eu-1", "shop", "shard-0", taken - dt.timedelta(seconds=30), 30.0, None),
            ShardStatus("us-1", "batch", "shard-0", None, None, None),
        ),
    )
    answers: list[FleetStatus | None] = [None, status]
    board = StatusBoard(mode="fleet", fleet=lambda: answers.pop(0))
    assert board.message(["eu-1", "us-1"], NOW).mode == "fleet"  # actors not up yet
    message = board.message(["eu-1", "us-1"], NOW)
    assert (message.mode, message.ticks, message.last_tick) == ("fleet", 4, "2026-11-29T11:59:30Z")
    eu, us = message.clusters
    assert (eu.name, eu.lag_seconds, eu.errors, eu.shards) == ("eu-1", 90.0, 1, 2)
    assert eu.last_tick == "2026-11-29T11:58:30Z"
    assert (us.lag_seconds, us.discovery_error, list(us.busy_on)) == (
        -1.0,
        "connection refused",
        ["shard-0"],
    )
    assert [(s.cluster, s.namespace, s.actor, s.lag_seconds) for s in message.shards] == [
        ("eu-1", "batch", "shard-1", 90.0),
        ("eu-1", "shop", "shard-0", 30.0),
        ("us-1", "batch", "shard-0", -1.0),
    ]
    assert [(a.name, a.last_answer, list(a.errors)) for a in message.actors] == [
        ("shard-0", "2026-11-29T12:00:00Z", []),
        ("shard-1", "", ["dead"]),
    ]


def test_bad_paging_is_an_invalid_argument_naming_it(
    served: tuple[RunningServer, StatusBoard],
) -> None:
    server, _ = served
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    with grpc.insecure_channel(_address(server)) as channel:
        stub = pb_grpc.InspectionStub(channel)
        for request, detail in (
            (pb.ListRecommendationsRequest(page_token="%%%"), "page_token '%%%' is not valid"),
            (pb.ListRecommendationsRequest(page_size=-1), "page_size -1 is negative"),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                stub.ListRecommendations(request, metadata=metadata, timeout=5)
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert refused.value.details() == detail


def test_no_vpa_at_all_is_an_empty_list(served: tuple[RunningServer, StatusBoard]) -> None:
    server, _ = served
    with InspectionClient(_address(server), token=TOKEN) as client:
        assert list(client.recommendations()) == []
