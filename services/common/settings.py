"""Server settings, read once from the environment at start-up and passed in; nothing reads env vars later.

| variable                      | default                          | meaning                                   |
|-------------------------------|----------------------------------|-------------------------------------------|
| TISTUDIO_HOST                 | 127.0.0.1                        | interface for gRPC and metrics            |
| TISTUDIO_<SERVICE>_PORT       | caption 50051, trainer 50052,    | gRPC port; 0 picks a free one             |
|                               | preview 50053                    |                                           |
| TISTUDIO_<SERVICE>_METRICS_PORT | 9451 / 9452 / 9453             | Prometheus /metrics port; "off" disables  |
| TISTUDIO_REFLECTION           | on                               | gRPC server reflection on/off             |
| TISTUDIO_TLS_CERT, _KEY       | unset (plaintext)                | server certificate and key (PEM)          |
| TISTUDIO_TLS_CLIENT_CA        | unset                            | CA for client certificates: requires mTLS |
| TISTUDIO_AUTH_TOKENS(_FILE)   | unset (auth off)                 | bearer tokens, see `services.common.auth` |
| TISTUDIO_MAX_MESSAGE_BYTES    | 16777216 (16 MiB)                | largest message sent or received          |
| TISTUDIO_DRAIN_SECONDS        | 5                                | NOT_SERVING before stopping, for LBs      |
| TISTUDIO_GRACE_SECONDS        | 30                               | in-flight calls' time to finish on stop   |
| TISTUDIO_MAX_WORKERS          | 16                               | handler threads (concurrent RPCs)         |
| TISTUDIO_LOG_LEVEL            | INFO                             | DEBUG, INFO, WARNING, ERROR, CRITICAL     |
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from services.common.auth import Token, load_tokens
from services.common.errors import InvalidArgument
from services.common.tls import CERT_ENV, CLIENT_CA_ENV, KEY_ENV

__all__ = [
    "ServerSettings",
    "EnvReader",
    "grpc_channel_options",
    "positive_int",
    "positive_float",
    "DEFAULT_PORTS",
    "DEFAULT_METRICS_PORTS",
]

DEFAULT_PORTS = {"caption": 50051, "trainer": 50052, "preview": 50053}
DEFAULT_METRICS_PORTS = {"caption": 9451, "trainer": 9452, "preview": 9453}
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TRUE, _FALSE = ("on", "true", "1", "yes"), ("off", "false", "0", "no")

T = TypeVar("T")


def grpc_channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """gRPC options raising both message-size limits (the receive default of 4 MiB is too small for images)."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]


@dataclass(frozen=True)
class ServerSettings:
    """Everything a `ServiceServer` needs. Defaults suit tests (free port, no metrics endpoint);
    `from_env` applies the per-service production defaults."""

    host: str = "127.0.0.1"  # interface the gRPC and metrics servers bind; "0.0.0.0" in a container
    port: int = 0  # gRPC port; 0 lets the OS pick a free one (the bound port is on the server)
    metrics_port: int | None = None  # Prometheus /metrics HTTP port; 0 = free port, None = no endpoint
    reflection: bool = True  # serve gRPC reflection so grpcurl/Postman can list and call methods
    tls_cert: str | None = None  # PEM server certificate (chain); with tls_key switches TLS on
    tls_key: str | None = None  # PEM private key of tls_cert
    tls_client_ca: str | None = None  # PEM CA; when set, clients must present a cert it signed (mTLS)
    auth_tokens: tuple[Token, ...] = ()  # accepted bearer tokens; empty = auth off
    max_message_bytes: int = 16 * 1024 * 1024  # largest gRPC message either way (images, embeddings)
    drain_seconds: float = 5.0  # time between health NOT_SERVING and stopping, so LBs stop sending calls
    grace_seconds: float = 30.0  # time in-flight calls get to finish once the server stops; then cancelled
    max_workers: int = 16  # handler threads = concurrent RPCs (long streams hold one each)
    log_level: str = "INFO"  # root log level for configure_logging

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @classmethod
    def from_env(cls, service: str, env: Mapping[str, str] = os.environ) -> ServerSettings:
        """Read the settings of `service` ("caption", "trainer" or "preview") from `env`."""
        if service not in DEFAULT_PORTS:
            raise InvalidArgument(f"unknown service {service!r}; expected one of {', '.join(DEFAULT_PORTS)}")
        prefix = f"TISTUDIO_{service.upper()}"
        get = EnvReader(env)
        tls_cert, tls_key = get.text(CERT_ENV), get.text(KEY_ENV)
        tls_client_ca = get.text(CLIENT_CA_ENV)
        if (tls_cert is None) != (tls_key is None):
            raise InvalidArgument(f"set both {CERT_ENV} and {KEY_ENV} for TLS, or neither for plaintext")
        if tls_client_ca is not None and tls_cert is None:
            raise InvalidArgument(f"{CLIENT_CA_ENV} (mTLS) needs {CERT_ENV} and {KEY_ENV} as well")
        metrics_raw = env.get(f"{prefix}_METRICS_PORT", "").strip().lower()
        return cls(
            host=get.text("TISTUDIO_HOST") or "127.0.0.1",
            port=get.parse(f"{prefix}_PORT", DEFAULT_PORTS[service], _port, "a port number 0-65535 (0 = free)"),
            metrics_port=None
            if metrics_raw == "off"
            else get.parse(
                f"{prefix}_METRICS_PORT", DEFAULT_METRICS_PORTS[service], _port, "a port number 0-65535 or 'off'"
            ),
            reflection=get.parse("TISTUDIO_REFLECTION", True, on_off, "on/off, true/false, 1/0, yes/no"),
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_client_ca=tls_client_ca,
            auth_tokens=load_tokens(env),
            max_message_bytes=get.parse(
                "TISTUDIO_MAX_MESSAGE_BYTES", 16 * 1024 * 1024, positive_int, "a whole number of bytes > 0"
            ),
            drain_seconds=get.parse("TISTUDIO_DRAIN_SECONDS", 5.0, _seconds, "a number of seconds >= 0"),
            grace_seconds=get.parse("TISTUDIO_GRACE_SECONDS", 30.0, _seconds, "a number of seconds >= 0"),
            max_workers=get.parse("TISTUDIO_MAX_WORKERS", 16, positive_int, "a whole number > 0"),
            log_level=get.parse("TISTUDIO_LOG_LEVEL", "INFO", _level, ", ".join(_LOG_LEVELS)),
        )


class EnvReader:
    """Reads variables and turns a bad value into an InvalidArgument naming the variable and what it accepts."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def parse(self, name: str, default: T, convert: Callable[[str], T], accepted: str) -> T:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            return convert(raw)
        except ValueError:
            raise InvalidArgument(f"{name}={raw!r} is invalid; accepted: {accepted}") from None


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 65535:
        raise ValueError(raw)
    return value


def positive_int(raw: str) -> int:
    """An `EnvReader.parse` converter: a whole number above 0."""
    value = int(raw)
    if value <= 0:
        raise ValueError(raw)
    return value


def positive_float(raw: str) -> float:
    """An `EnvReader.parse` converter: a finite number above 0."""
    value = float(raw)
    if not 0 < value < float("inf"):  # also rejects NaN
        raise ValueError(raw)
    return value


def _seconds(raw: str) -> float:
    value = float(raw)
    if not value >= 0 or value == float("inf"):  # also rejects NaN
        raise ValueError(raw)
    return value


def on_off(raw: str) -> bool:
    """An `EnvReader.parse` converter: on/off, true/false, 1/0, yes/no."""
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValueError(raw)


def _level(raw: str) -> str:
    if raw.upper() not in _LOG_LEVELS:
        raise ValueError(raw)
    return raw.upper()
