"""Service start-up: settings, the store check, NOT_SERVING until models load, load failures."""

from __future__ import annotations

import socket
import threading

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.errors import InvalidArgument
from services.common.runtime import RuntimeSettings, ServiceDefinition, ServiceParts, serve, start_service
from services.common.storage import StoreUnavailable
from services.common.tests import echo

SERVICE = echo.SERVICE


def _env(tmp_path, **extra: str) -> dict[str, str]:
    return {
        "TISTUDIO_STORE_URL": (tmp_path / "store").as_uri(),
        "TISTUDIO_CACHE_DIR": str(tmp_path / "cache"),
        "TISTUDIO_CAPTION_PORT": "0",
        "TISTUDIO_CAPTION_METRICS_PORT": "off",
        "TISTUDIO_DRAIN_SECONDS": "0",
        **extra,
    }


def _definition(load) -> ServiceDefinition:
    def build(context):
        return ServiceParts(register=echo.register, load=load)

    return ServiceDefinition(name="caption", grpc_service=SERVICE, build=build)


def _health(address: str, service: str) -> str:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def test_not_serving_until_models_are_loaded(tmp_path):
    release = threading.Event()
    running = start_service(_definition(lambda: release.wait(10)), _env(tmp_path))
    try:
        address = running.server.address
        assert _health(address, "") == "NOT_SERVING"
        assert _health(address, SERVICE) == "NOT_SERVING"
        release.set()
        assert running.loaded.wait(5)
        assert _health(address, "") == "SERVING"
        assert _health(address, SERVICE) == "SERVING"
    finally:
        running.server.stop(grace=0)
    assert running.wait() == 0


def test_a_failed_model_load_stops_the_service_with_exit_code_1(tmp_path):
    def load():
        raise InvalidArgument("TISTUDIO_CAPTION_MODEL points at nothing")

    running = start_service(_definition(load), _env(tmp_path))
    assert running.wait() == 1
    assert not running.loaded.is_set()


def test_unreachable_s3_store_fails_start_up_naming_endpoint_and_bucket(tmp_path, capsys):
    with socket.socket() as probe:  # a loopback port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = _env(
        tmp_path,
        TISTUDIO_STORE_URL="s3://tistudio-missing/prefix",
        TISTUDIO_S3_ENDPOINT=f"http://127.0.0.1:{port}",
        TISTUDIO_S3_ACCESS_KEY="key",
        TISTUDIO_S3_SECRET_KEY="secret",
    )
    definition = _definition(lambda: None)
    with pytest.raises(StoreUnavailable) as caught:
        start_service(definition, env)
    assert f"127.0.0.1:{port}" in str(caught.value) and "tistudio-missing" in str(caught.value)

    assert serve(definition, env) == 2
    assert "tistudio-missing" in capsys.readouterr().out


def test_missing_store_url_is_a_clear_error(tmp_path):
    env = _env(tmp_path)
    del env["TISTUDIO_STORE_URL"]
    with pytest.raises(InvalidArgument, match="TISTUDIO_STORE_URL is not set"):
        start_service(_definition(lambda: None), env)


@pytest.mark.parametrize(("value", "expected"), [(None, "cpu"), ("auto", "cpu"), ("cpu", "cpu")])
def test_device_defaults_to_cuda_only_where_there_is_one(tmp_path, value, expected, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    env = _env(tmp_path) if value is None else _env(tmp_path, TISTUDIO_DEVICE=value)
    assert RuntimeSettings.from_env(env).device == expected


@pytest.mark.parametrize("value", ["cuda", "gpu0"])
def test_an_unusable_device_is_a_clear_error(tmp_path, value, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InvalidArgument, match="TISTUDIO_DEVICE") as caught:
        RuntimeSettings.from_env(_env(tmp_path, TISTUDIO_DEVICE=value))
    assert "cpu" in str(caught.value)
