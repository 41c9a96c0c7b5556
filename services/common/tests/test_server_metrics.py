"""RPC metrics carry the final status code and are served over HTTP; each server has its own registry."""

from __future__ import annotations

import json
import time
import urllib.request

import grpc
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from services.common.auth import Token
from services.common.metrics import start_metrics_http_server
from services.common.tests.echo import SERVICE, EchoClient, make_server


def _scrape(port: int) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _key(name: str, method: str, kind: str, code: str | None = None) -> tuple[str, frozenset]:
    labels = {"grpc_service": SERVICE, "grpc_method": method, "grpc_type": kind}
    if code is not None:
        labels["grpc_code"] = code
    return name, frozenset(labels.items())


def test_handled_total_and_histogram_over_http():
    server = make_server(metrics_port=0)
    try:
        assert server.metrics_port and server.metrics_port > 0
        with grpc.insecure_channel(server.address) as channel:
            client = EchoClient(channel)
            client.echo(b"a", timeout=5)
            client.echo(b"b", timeout=5)
            with pytest.raises(grpc.RpcError):
                client.fail(json.dumps({"error": "NotFound"}).encode(), timeout=5)
            with pytest.raises(grpc.RpcError):
                client.fail(json.dumps({"abort": "DATA_LOSS"}).encode(), timeout=5)
            assert list(client.count(b'{"n": 3}', timeout=5)) == [b"0", b"1", b"2"]
            with pytest.raises(grpc.RpcError):
                list(client.count(b'{"n": 1, "then": {"error": "Unavailable"}}', timeout=5))
        samples = _scrape(server.metrics_port)
    finally:
        server.stop()
    assert samples[_key("grpc_server_started_total", "Echo", "UNARY")] == 2
    assert samples[_key("grpc_server_handled_total", "Echo", "UNARY", "OK")] == 2
    assert samples[_key("grpc_server_handled_total", "Fail", "UNARY", "NOT_FOUND")] == 1
    assert samples[_key("grpc_server_handled_total", "Fail", "UNARY", "DATA_LOSS")] == 1
    assert samples[_key("grpc_server_handled_total", "Count", "SERVER_STREAM", "OK")] == 1
    assert samples[_key("grpc_server_handled_total", "Count", "SERVER_STREAM", "UNAVAILABLE")] == 1
    assert samples[_key("grpc_server_handling_seconds_count", "Echo", "UNARY")] == 2
    assert samples[_key("grpc_server_handling_seconds_count", "Count", "SERVER_STREAM")] == 2


def test_streams_are_timed_to_their_end_and_cancellations_counted():
    server = make_server()
    registry = server.registry
    labels = {"grpc_service": SERVICE, "grpc_method": "Count", "grpc_type": "SERVER_STREAM"}
    try:
        with grpc.insecure_channel(server.address) as channel:
            client = EchoClient(channel)
            assert len(list(client.count(b'{"n": 3, "sleep": 0.1}', timeout=5))) == 3
            # The finished stream took >= 0.3 s: timed to its end, not to the handler's first return.
            assert registry.get_sample_value("grpc_server_handling_seconds_count", labels) == 1
            assert registry.get_sample_value("grpc_server_handling_seconds_bucket", {**labels, "le": "0.25"}) == 0
            stream = client.count(b'{"n": 50, "sleep": 0.05}', timeout=5)
            next(stream)
            stream.cancel()
        deadline = time.monotonic() + 3
        while registry.get_sample_value("grpc_server_handled_total", {**labels, "grpc_code": "CANCELLED"}) is None:
            assert time.monotonic() < deadline, "cancelled stream never counted"
            time.sleep(0.02)
    finally:
        server.stop()
    assert registry.get_sample_value("grpc_server_handled_total", {**labels, "grpc_code": "OK"}) == 1
    assert registry.get_sample_value("grpc_server_handling_seconds_count", labels) == 2


def test_deadline_exceeded_is_counted():
    server = make_server()
    labels = {"grpc_service": SERVICE, "grpc_method": "Sleep", "grpc_type": "UNARY"}
    try:
        with grpc.insecure_channel(server.address) as channel:
            with pytest.raises(grpc.RpcError) as err:
                EchoClient(channel).sleep(b"0.4", timeout=0.1)
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        deadline = time.monotonic() + 3
        expired = {**labels, "grpc_code": "DEADLINE_EXCEEDED"}
        while server.registry.get_sample_value("grpc_server_handled_total", expired) is None:
            assert time.monotonic() < deadline, "expired call never counted"
            time.sleep(0.02)
        time.sleep(0.4)  # the handler returns after the deadline: still counted once
        assert server.registry.get_sample_value("grpc_server_handling_seconds_count", labels) == 1
    finally:
        server.stop()


def test_auth_rejections_are_counted_with_their_code():
    server = make_server(auth_tokens=(Token("t", "secret"),))
    try:
        with grpc.insecure_channel(server.address) as channel:
            with pytest.raises(grpc.RpcError):
                EchoClient(channel).echo(b"x", timeout=5)
    finally:
        server.stop()
    labels = {"grpc_service": SERVICE, "grpc_method": "Echo", "grpc_type": "UNARY", "grpc_code": "UNAUTHENTICATED"}
    assert server.registry.get_sample_value("grpc_server_handled_total", labels) == 1


def test_metrics_http_server_reports_bound_port_and_stops():
    registry = CollectorRegistry()
    port, stop = start_metrics_http_server(registry, "127.0.0.1", 0)
    assert port > 0
    assert _scrape(port) == {}
    stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1)
