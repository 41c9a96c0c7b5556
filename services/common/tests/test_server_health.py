"""Health and reflection of a ServiceServer, over real channels."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.common.tests.echo import SERVICE, make_server

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _check(channel: grpc.Channel, service: str) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def _list_services(channel: grpc.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    return {s.name for r in responses for s in r.list_services_response.service}


def test_health_follows_set_serving_and_stop():
    server = make_server()
    try:
        with grpc.insecure_channel(server.address) as channel:
            assert _check(channel, "") == NOT_SERVING
            assert _check(channel, SERVICE) == NOT_SERVING
            server.set_serving(True)
            assert _check(channel, "") == SERVING
            assert _check(channel, SERVICE) == SERVING
            server.set_serving(False)
            assert _check(channel, SERVICE) == NOT_SERVING
            server.set_serving(True)
            with pytest.raises(grpc.RpcError) as err:
                _check(channel, "no.such.Service")
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        server.stop()


def test_health_watch_streams_changes():
    # Watch is the library's non-blocking handler: the interceptors must leave it working.
    server = make_server()
    try:
        with grpc.insecure_channel(server.address) as channel:
            request = health_pb2.HealthCheckRequest(service=SERVICE)
            stream = health_pb2_grpc.HealthStub(channel).Watch(request, timeout=5)
            assert next(stream).status == NOT_SERVING
            server.set_serving(True)
            assert next(stream).status == SERVING
            stream.cancel()
    finally:
        server.stop()


def test_reflection_lists_services():
    server = make_server()
    try:
        with grpc.insecure_channel(server.address) as channel:
            assert _list_services(channel) == {
                SERVICE,
                "grpc.health.v1.Health",
                "grpc.reflection.v1alpha.ServerReflection",
            }
    finally:
        server.stop()


def test_reflection_off_is_unimplemented():
    server = make_server(reflection=False)
    try:
        with grpc.insecure_channel(server.address) as channel:
            with pytest.raises(grpc.RpcError) as err:
                _list_services(channel)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.stop()


def test_lifecycle_misuse_is_refused():
    server = make_server()
    try:
        with pytest.raises(RuntimeError):
            server.add_service("late.v1.Service", lambda s: None)
        with pytest.raises(RuntimeError):
            server.start()
    finally:
        server.stop()
    server.stop()  # idempotent


def test_two_servers_cannot_share_a_port():
    first = make_server()
    try:
        with pytest.raises(RuntimeError, match="cannot bind"):
            make_server(port=first.port)
    finally:
        first.stop()
