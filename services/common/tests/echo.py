"""A fake "test.v1.EchoService" for the server tests: raw-bytes messages, no protos to compile.

Requests that steer behaviour are JSON: {"error": "NotFound", "message": ..., "field": ..., "metadata": {...}}
raises that class from `services.common.errors` (or a builtin like "ValueError"); {"abort": "DATA_LOSS"}
makes the handler call `context.abort` itself.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Iterator

import grpc

from services.common import errors
from services.common.server import ServiceServer
from services.common.settings import ServerSettings

SERVICE = "test.v1.EchoService"


def _raise(spec: dict, context: grpc.ServicerContext) -> None:
    if "abort" in spec:
        context.abort(grpc.StatusCode[spec["abort"]], spec.get("message", "aborted by handler"))
    name = spec["error"]
    cls = getattr(errors, name, None)
    if cls is not None:
        raise cls(spec.get("message", f"{name} raised"), field=spec.get("field"), metadata=spec.get("metadata"))
    raise getattr(builtins, name)(spec.get("message", "secret internal detail"))


def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


def fail(request: bytes, context: grpc.ServicerContext) -> bytes:
    _raise(json.loads(request), context)
    return b"unreachable"


def sleep(request: bytes, context: grpc.ServicerContext) -> bytes:
    time.sleep(float(request))
    return b"slept"


def count(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    """{"n": 3, "then": {...error spec...}, "sleep": 0.0}: yields b"0".."n-1", then raises if asked."""
    spec = json.loads(request)
    for i in range(spec["n"]):
        time.sleep(spec.get("sleep", 0.0))
        yield str(i).encode()
    if "then" in spec:
        _raise(spec["then"], context)


def concat(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
    parts = []
    for request in requests:
        if request.startswith(b"{"):
            _raise(json.loads(request), context)
        parts.append(request)
    return b"".join(parts)


def chat(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    for request in requests:
        if request.startswith(b"{"):
            _raise(json.loads(request), context)
        yield request


HANDLER = grpc.method_handlers_generic_handler(
    SERVICE,
    {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
        "Count": grpc.unary_stream_rpc_method_handler(count),
        "Concat": grpc.stream_unary_rpc_method_handler(concat),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
    },
)


def register(server: grpc.Server) -> None:
    server.add_generic_rpc_handlers((HANDLER,))


def make_server(**settings: object) -> ServiceServer:
    """A started server with the echo service; short drain and grace so tests stay fast."""
    server = ServiceServer("echo", ServerSettings(**{"drain_seconds": 0.05, "grace_seconds": 2.0, **settings}))
    server.add_service(SERVICE, register)
    server.start()
    return server


class EchoClient:
    """Callables for each method over `channel`, messages as bytes."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.echo = channel.unary_unary(f"/{SERVICE}/Echo")
        self.fail = channel.unary_unary(f"/{SERVICE}/Fail")
        self.sleep = channel.unary_unary(f"/{SERVICE}/Sleep")
        self.count = channel.unary_stream(f"/{SERVICE}/Count")
        self.concat = channel.stream_unary(f"/{SERVICE}/Concat")
        self.chat = channel.stream_stream(f"/{SERVICE}/Chat")
