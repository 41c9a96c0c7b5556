"""Bearer-token auth: loading tokens, and the interceptor's decisions over real channels."""

from __future__ import annotations

import hashlib
import json

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from services.common.auth import Token, load_tokens
from services.common.errors import InvalidArgument
from services.common.tests.echo import EchoClient, make_server

TOKENS = (
    Token("admin", "s3cret"),
    Token("reader", "r34d", allow=("/test.v1.EchoService/Echo",)),
    Token("hashed", secret_sha256=hashlib.sha256(b"h4sh").hexdigest(), allow=("/test.v1.EchoService/*",)),
)


@pytest.fixture(scope="module")
def channel():
    server = make_server(auth_tokens=TOKENS)
    server.set_serving(True)
    with grpc.insecure_channel(server.address) as channel:
        yield channel
    server.stop()


def _bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def _rejected(call, *args, metadata=None) -> tuple[grpc.RpcError, error_details_pb2.ErrorInfo]:
    with pytest.raises(grpc.RpcError) as err:
        result = call(*args, metadata=metadata, timeout=5)
        if not isinstance(result, bytes):
            list(result)  # a response stream fails when read
    info = error_details_pb2.ErrorInfo()
    assert rpc_status.from_call(err.value).details[0].Unpack(info)
    return err.value, info


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        _bearer("wrong"),
        [("authorization", "Basic s3cret")],
        [("authorization", "Bearer ")],
        _bearer("s3cret") * 2,
    ],
    ids=["missing", "unknown", "basic", "empty", "twice"],
)
def test_bad_or_missing_token_is_unauthenticated(channel, metadata):
    err, info = _rejected(EchoClient(channel).echo, b"hi", metadata=metadata)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert info.reason == "UNAUTHENTICATED"


def test_streaming_methods_are_checked_too(channel):
    err, _ = _rejected(EchoClient(channel).count, b'{"n": 1}')
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


def test_valid_tokens_pass(channel):
    client = EchoClient(channel)
    assert client.echo(b"hi", metadata=_bearer("s3cret"), timeout=5) == b"hi"
    assert client.echo(b"hi", metadata=[("authorization", "bearer r34d")], timeout=5) == b"hi"
    assert client.sleep(b"0", metadata=_bearer("h4sh"), timeout=5) == b"slept"  # token_sha256 form
    assert list(client.count(b'{"n": 2}', metadata=_bearer("s3cret"), timeout=5)) == [b"0", b"1"]


def test_token_outside_its_allow_list_is_permission_denied(channel):
    err, info = _rejected(EchoClient(channel).sleep, b"0", metadata=_bearer("r34d"))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info.reason == "PERMISSION_DENIED"
    assert dict(info.metadata) == {"token": "reader", "method": "/test.v1.EchoService/Sleep"}
    assert "r34d" not in str(err.trailing_metadata())


def test_health_and_reflection_need_no_token(channel):
    response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert response.status == health_pb2.HealthCheckResponse.SERVING
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    responses = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter([request]), timeout=5)
    assert any(r.list_services_response.service for r in responses)


def test_load_tokens_from_env_and_file(tmp_path):
    path = tmp_path / "tokens.json"
    digest = hashlib.sha256(b"h4sh").hexdigest()
    path.write_text(
        json.dumps(
            [
                {"name": "ci", "token_sha256": digest, "allow": ["/tistudio.caption.v1.CaptionService/*"]},
                {"name": "ops", "token": "0ps", "allow": ["*"]},
            ]
        )
    )
    tokens = load_tokens({"TISTUDIO_AUTH_TOKENS": "a:x, b:y:z", "TISTUDIO_AUTH_TOKENS_FILE": str(path)})
    assert [t.name for t in tokens] == ["a", "b", "ci", "ops"]
    assert tokens[1].secret == "y:z" and tokens[0].allow == ("*",)
    assert tokens[2].allows("/tistudio.caption.v1.CaptionService/Caption")
    assert not tokens[2].allows("/tistudio.trainer.v1.TrainerService/GetJob")
    assert "x" not in repr(tokens[0]) and digest not in repr(tokens[2])
    assert load_tokens({}) == ()


@pytest.mark.parametrize(
    "env",
    [
        {"TISTUDIO_AUTH_TOKENS": "nosecret"},
        {"TISTUDIO_AUTH_TOKENS": "a:x,a:y"},
        {"TISTUDIO_AUTH_TOKENS_FILE": "/nonexistent/tokens.json"},
    ],
)
def test_bad_token_config_is_invalid_argument(env):
    with pytest.raises(InvalidArgument, match="TISTUDIO_AUTH_TOKENS"):
        load_tokens(env)


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "x", "token": "t"},  # no allow list
        {"name": "x", "token": "t", "token_sha256": "00" * 32, "allow": ["*"]},
        {"name": "x", "token_sha256": "zz", "allow": ["*"]},
        {"name": "x", "token": "t", "allow": ["/pkg.Service/Get*"]},
        {"name": "", "token": "t", "allow": ["*"]},
    ],
)
def test_bad_token_file_entries(tmp_path, entry):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps([entry]))
    with pytest.raises(InvalidArgument, match="TISTUDIO_AUTH_TOKENS_FILE: entry 0"):
        load_tokens({"TISTUDIO_AUTH_TOKENS_FILE": str(path)})
