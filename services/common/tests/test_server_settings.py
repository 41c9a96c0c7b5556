"""ServerSettings.from_env and the JSON log format."""

from __future__ import annotations

import json
import logging

import pytest

from services.common.errors import InvalidArgument
from services.common.logs import configure_logging
from services.common.settings import ServerSettings, grpc_channel_options


@pytest.mark.parametrize(
    ("service", "port", "metrics_port"), [("caption", 50051, 9451), ("trainer", 50052, 9452), ("preview", 50053, 9453)]
)
def test_defaults_per_service(service, port, metrics_port):
    settings = ServerSettings.from_env(service, {})
    assert (settings.host, settings.port, settings.metrics_port) == ("127.0.0.1", port, metrics_port)
    assert settings.reflection and not settings.tls and settings.auth_tokens == ()
    assert settings.max_message_bytes == 16 * 1024 * 1024
    assert (settings.drain_seconds, settings.grace_seconds, settings.max_workers) == (5.0, 30.0, 16)
    assert settings.log_level == "INFO"


def test_environment_overrides():
    env = {
        "TISTUDIO_HOST": "0.0.0.0",
        "TISTUDIO_TRAINER_PORT": "0",
        "TISTUDIO_TRAINER_METRICS_PORT": "off",
        "TISTUDIO_CAPTION_PORT": "1234",  # another service's variable: ignored
        "TISTUDIO_REFLECTION": "off",
        "TISTUDIO_TLS_CERT": "/certs/tls.crt",
        "TISTUDIO_TLS_KEY": "/certs/tls.key",
        "TISTUDIO_TLS_CLIENT_CA": "/certs/ca.crt",
        "TISTUDIO_AUTH_TOKENS": "ci:abc",
        "TISTUDIO_MAX_MESSAGE_BYTES": "1048576",
        "TISTUDIO_DRAIN_SECONDS": "0.5",
        "TISTUDIO_GRACE_SECONDS": "60",
        "TISTUDIO_MAX_WORKERS": "4",
        "TISTUDIO_LOG_LEVEL": "debug",
    }
    s = ServerSettings.from_env("trainer", env)
    assert (s.host, s.port, s.metrics_port, s.reflection) == ("0.0.0.0", 0, None, False)
    assert (s.tls_cert, s.tls_key, s.tls_client_ca) == ("/certs/tls.crt", "/certs/tls.key", "/certs/ca.crt")
    assert [t.name for t in s.auth_tokens] == ["ci"]
    assert (s.max_message_bytes, s.drain_seconds, s.grace_seconds, s.max_workers) == (1048576, 0.5, 60.0, 4)
    assert s.log_level == "DEBUG"
    assert "abc" not in repr(s)
    assert grpc_channel_options(s.max_message_bytes) == [
        ("grpc.max_receive_message_length", 1048576),
        ("grpc.max_send_message_length", 1048576),
    ]


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"TISTUDIO_CAPTION_PORT": "http"}, "TISTUDIO_CAPTION_PORT"),
        ({"TISTUDIO_CAPTION_PORT": "70000"}, "TISTUDIO_CAPTION_PORT"),
        ({"TISTUDIO_CAPTION_METRICS_PORT": "no"}, "'off'"),
        ({"TISTUDIO_REFLECTION": "maybe"}, "on/off"),
        ({"TISTUDIO_MAX_MESSAGE_BYTES": "0"}, "TISTUDIO_MAX_MESSAGE_BYTES"),
        ({"TISTUDIO_DRAIN_SECONDS": "-1"}, "TISTUDIO_DRAIN_SECONDS"),
        ({"TISTUDIO_GRACE_SECONDS": "nan"}, "TISTUDIO_GRACE_SECONDS"),
        ({"TISTUDIO_MAX_WORKERS": "1.5"}, "TISTUDIO_MAX_WORKERS"),
        ({"TISTUDIO_LOG_LEVEL": "LOUD"}, "DEBUG, INFO"),
        ({"TISTUDIO_TLS_CERT": "/c.crt"}, "TISTUDIO_TLS_KEY"),
        ({"TISTUDIO_TLS_CLIENT_CA": "/ca.crt"}, "TISTUDIO_TLS_CERT"),
    ],
)
def test_invalid_values_name_the_variable(env, names):
    with pytest.raises(InvalidArgument, match=names):
        ServerSettings.from_env("caption", env)


def test_unknown_service():
    with pytest.raises(InvalidArgument, match="caption, trainer, preview"):
        ServerSettings.from_env("painter", {})


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


def test_json_log_lines(capsys, restore_logging):
    configure_logging("caption", "INFO")
    configure_logging("caption", "DEBUG")  # idempotent: still one line per record
    log = logging.getLogger("tistudio.test")
    log.debug("loaded", extra={"model": "blip", "seconds": 1.5})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert first["msg"] == "loaded" and first["level"] == "DEBUG" and first["service"] == "caption"
    assert first["logger"] == "tistudio.test" and first["model"] == "blip" and first["seconds"] == 1.5
    assert first["ts"].endswith("+00:00") and "T" in first["ts"]
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exc"]
    with pytest.raises(ValueError):
        configure_logging("caption", "LOUD")
