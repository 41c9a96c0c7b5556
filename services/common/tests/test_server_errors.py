"""Domain errors and unexpected exceptions become rich gRPC statuses, for every handler kind."""

from __future__ import annotations

import json
import logging
import re

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.common import errors
from services.common.interceptors import internal_error, status_from_error
from services.common.tests.echo import EchoClient, make_server

DOMAIN_ERRORS = [getattr(errors, name) for name in errors.__all__ if name not in ("ERROR_DOMAIN", "TistudioError")]


@pytest.fixture(scope="module")
def client():
    server = make_server()
    server.set_serving(True)
    with grpc.insecure_channel(server.address) as channel:
        yield EchoClient(channel)
    server.stop()


def _details(err: grpc.RpcError) -> tuple[error_details_pb2.ErrorInfo, error_details_pb2.BadRequest | None]:
    status = rpc_status.from_call(err)
    assert status is not None, "no google.rpc.Status in the trailers"
    info, bad_request = error_details_pb2.ErrorInfo(), None
    assert status.details[0].Unpack(info)
    if len(status.details) > 1:
        bad_request = error_details_pb2.BadRequest()
        assert status.details[1].Unpack(bad_request)
    return info, bad_request


def _spec(**kw: object) -> bytes:
    return json.dumps(kw).encode()


def test_status_from_error_is_pure_and_complete():
    status = status_from_error(errors.InvalidArgument("max_tokens must be > 0", field="options.max_tokens"))
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert status.message == "max_tokens must be > 0"
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    assert status.details[0].Unpack(info) and status.details[1].Unpack(bad)
    assert (info.reason, info.domain) == ("INVALID_ARGUMENT", errors.ERROR_DOMAIN)
    assert bad.field_violations[0].field == "options.max_tokens"
    assert len(status_from_error(errors.NotFound("gone")).details) == 1
    assert internal_error("abc").metadata == {"incident": "abc"}


@pytest.mark.parametrize("cls", DOMAIN_ERRORS, ids=lambda c: c.__name__)
def test_each_domain_error_maps_to_its_code(client, cls):
    with pytest.raises(grpc.RpcError) as err:
        client.fail(_spec(error=cls.__name__, message="fix this", metadata={"model": "blip"}), timeout=5)
    assert err.value.code() == cls.code
    info, bad = _details(err.value)
    assert info.reason == cls.reason
    assert info.domain == errors.ERROR_DOMAIN
    assert info.metadata["model"] == "blip"
    assert bad is None
    if cls is errors.Internal:  # raised on purpose: message kept, incident added
        assert re.fullmatch(r"fix this; incident [0-9a-f]{12}", err.value.details())
    else:
        assert err.value.details() == "fix this"


def test_custom_reason_and_field_violation(client):
    spec = _spec(error="InvalidArgument", message="must be > 0", field="options.max_tokens")
    with pytest.raises(grpc.RpcError) as err:
        client.fail(spec, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, bad = _details(err.value)
    violation = bad.field_violations[0]
    assert (violation.field, violation.description) == ("options.max_tokens", "must be > 0")


def test_unexpected_exception_is_internal_with_incident(client, caplog):
    with caplog.at_level(logging.ERROR, logger="services.common.interceptors"):
        with pytest.raises(grpc.RpcError) as err:
            client.fail(_spec(error="ZeroDivisionError", message="secret internal detail"), timeout=5)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    match = re.fullmatch(r"internal error; incident ([0-9a-f]{12})", err.value.details())
    assert match, err.value.details()
    info, _ = _details(err.value)
    assert info.reason == "INTERNAL" and info.metadata["incident"] == match.group(1)
    trailers = str(err.value.trailing_metadata())
    assert "secret" not in trailers and "Traceback" not in trailers
    logged = [r for r in caplog.records if getattr(r, "incident", None) == match.group(1)]
    assert logged and logged[0].exc_info[0] is ZeroDivisionError


def test_handler_abort_passes_through(client):
    with pytest.raises(grpc.RpcError) as err:
        client.fail(_spec(abort="DATA_LOSS", message="disk ate it"), timeout=5)
    assert err.value.code() == grpc.StatusCode.DATA_LOSS
    assert err.value.details() == "disk ate it"
    assert rpc_status.from_call(err.value) is None


def test_mid_stream_error_arrives_after_messages(client):
    received = []
    with pytest.raises(grpc.RpcError) as err:
        for message in client.count(_spec(n=2, then={"error": "ResourceExhausted"}), timeout=5):
            received.append(message)
    assert received == [b"0", b"1"]
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _details(err.value)[0].reason == "RESOURCE_EXHAUSTED"


def test_mid_stream_unexpected_exception(client):
    with pytest.raises(grpc.RpcError) as err:
        list(client.count(_spec(n=1, then={"error": "RuntimeError"}), timeout=5))
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "incident" in err.value.details()


def test_client_and_bidi_streaming_errors(client):
    assert client.concat(iter([b"a", b"b"]), timeout=5) == b"ab"
    with pytest.raises(grpc.RpcError) as err:
        client.concat(iter([b"a", _spec(error="NotFound")]), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    received = []
    with pytest.raises(grpc.RpcError) as err:
        for message in client.chat(iter([b"a", _spec(error="Aborted")]), timeout=5):
            received.append(message)
    assert received == [b"a"]
    assert err.value.code() == grpc.StatusCode.ABORTED
    assert _details(err.value)[0].reason == "ABORTED"
