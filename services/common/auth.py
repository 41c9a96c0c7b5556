"""Optional bearer-token auth: `authorization: Bearer <token>` checked against configured tokens.

Off when no token is configured. Tokens come from `TISTUDIO_AUTH_TOKENS` ("name:secret,name2:secret2",
each allowed every method) and/or the JSON file named by `TISTUDIO_AUTH_TOKENS_FILE`:

    [{"name": "ci", "token_sha256": "<hex sha256 of the secret>", "allow": ["/tistudio.caption.v1.CaptionService/*"]},
     {"name": "ops", "token": "<secret in clear>", "allow": ["*"]}]

Allow entries are "*", "/pkg.Service/*" or an exact "/pkg.Service/Method". Health and reflection are always
exempt: Kubernetes gRPC probes and grpcurl's discovery cannot send tokens.

The interceptor only decides; the decision travels as a domain error (`Unauthenticated`,
`PermissionDenied`) raised inside the handler, so the error interceptor builds the status the one usual way.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import grpc

from services.common.errors import InvalidArgument, PermissionDenied, TistudioError, Unauthenticated
from services.common.interceptors import wrap_handler

__all__ = ["Token", "AuthInterceptor", "load_tokens", "EXEMPT_SERVICES", "TOKENS_ENV", "TOKENS_FILE_ENV"]

TOKENS_ENV = "TISTUDIO_AUTH_TOKENS"
TOKENS_FILE_ENV = "TISTUDIO_AUTH_TOKENS_FILE"

EXEMPT_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Token:
    """One accepted token. Give `secret` in clear or only its `secret_sha256` (hex); repr shows neither."""

    name: str  # shown in logs and in PERMISSION_DENIED metadata, never the secret
    secret: str | None = field(default=None, repr=False)
    allow: tuple[str, ...] = ("*",)  # method patterns: "*", "/pkg.Service/*", "/pkg.Service/Method"
    secret_sha256: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidArgument("an auth token needs a non-empty name")
        if (self.secret is None) == (self.secret_sha256 is None):
            raise InvalidArgument(f"auth token {self.name!r}: give exactly one of a secret or its sha256")
        if self.secret is not None and not self.secret:
            raise InvalidArgument(f"auth token {self.name!r}: the secret is empty")
        if self.secret_sha256 is not None:
            try:
                ok = len(bytes.fromhex(self.secret_sha256)) == 32
            except ValueError:
                ok = False
            if not ok:
                raise InvalidArgument(f"auth token {self.name!r}: token_sha256 must be 64 hex characters")
        object.__setattr__(self, "allow", tuple(self.allow))
        for pattern in self.allow:
            if not _valid_pattern(pattern):
                raise InvalidArgument(
                    f"auth token {self.name!r}: allow entry {pattern!r} must be '*', '/pkg.Service/*' "
                    "or '/pkg.Service/Method'"
                )

    @property
    def digest(self) -> bytes:
        if self.secret_sha256 is not None:
            return bytes.fromhex(self.secret_sha256)
        return hashlib.sha256(self.secret.encode()).digest()

    def allows(self, method: str) -> bool:
        for pattern in self.allow:
            if pattern == "*" or pattern == method:
                return True
            if pattern.endswith("/*") and method.startswith(pattern[:-1]):
                return True
        return False


def _valid_pattern(pattern: str) -> bool:
    if pattern == "*":
        return True
    service, sep, method = pattern[1:].partition("/")
    return (
        pattern.startswith("/")
        and bool(sep and service and method)
        and "/" not in method
        and "*" not in service
        and (method == "*" or "*" not in method)
    )


def load_tokens(env: Mapping[str, str] = os.environ) -> tuple[Token, ...]:
    """Read the tokens from `TISTUDIO_AUTH_TOKENS` and `TISTUDIO_AUTH_TOKENS_FILE`; empty means auth off."""
    tokens: list[Token] = []
    pairs = [p.strip() for p in env.get(TOKENS_ENV, "").split(",") if p.strip()]
    for i, pair in enumerate(pairs):
        name, sep, secret = pair.partition(":")
        if not sep or not name.strip() or not secret:
            # The entry itself may be a secret: name only its position.
            raise InvalidArgument(f"{TOKENS_ENV}: entry {i + 1} must be 'name:secret' (comma-separated)")
        tokens.append(Token(name.strip(), secret))
    path = env.get(TOKENS_FILE_ENV, "").strip()
    if path:
        tokens.extend(_read_token_file(path))
    names = [t.name for t in tokens]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidArgument(
            f"{TOKENS_ENV} / {TOKENS_FILE_ENV}: token names must be unique; repeated: {', '.join(duplicates)}"
        )
    return tuple(tokens)


def _read_token_file(path: str) -> list[Token]:
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"{TOKENS_FILE_ENV}: cannot read {path}: {exc}") from exc
    if not isinstance(entries, list):
        raise InvalidArgument(f"{TOKENS_FILE_ENV}: {path} must hold a JSON list of token objects")
    tokens = []
    for i, entry in enumerate(entries):
        allow = entry.get("allow") if isinstance(entry, dict) else None
        if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
            raise InvalidArgument(
                f'{TOKENS_FILE_ENV}: entry {i} in {path} needs "name", "token" or "token_sha256", '
                'and "allow": a list of method patterns (use ["*"] for all)'
            )
        try:
            name, secret, digest = str(entry.get("name", "")), entry.get("token"), entry.get("token_sha256")
            tokens.append(Token(name, secret, tuple(allow), digest))
        except InvalidArgument as exc:
            raise InvalidArgument(f"{TOKENS_FILE_ENV}: entry {i} in {path}: {exc.message}") from None
    return tokens


class AuthInterceptor(grpc.ServerInterceptor):
    """Rejects calls without an accepted token. Place it inside the error interceptor."""

    def __init__(self, tokens: Sequence[Token]) -> None:
        if not tokens:
            raise ValueError("AuthInterceptor needs at least one token; leave it out to switch auth off")
        self._tokens = tuple((t, t.digest) for t in tokens)

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        handler = continuation(handler_call_details)
        if handler is None or method.lstrip("/").rpartition("/")[0] in EXEMPT_SERVICES:
            return handler
        error = self._check(method, handler_call_details.invocation_metadata or ())
        if error is None:
            return handler
        return wrap_handler(handler, lambda behavior, streaming: _raiser(error, streaming))

    def _check(self, method: str, metadata: Sequence[tuple[str, str | bytes]]) -> TistudioError | None:
        values = [v for k, v in metadata if k == "authorization"]
        scheme, _, presented = (values[0] if len(values) == 1 and isinstance(values[0], str) else "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            _log.warning("rpc rejected: no bearer token", extra={"method": method})
            return Unauthenticated("send an 'authorization: Bearer <token>' header with a valid token")
        digest = hashlib.sha256(presented.strip().encode()).digest()
        match = None
        # Compare against every token, not stopping at the first hit, so timing says nothing about which
        # token (or how many) exist.
        for token, expected in self._tokens:
            if hmac.compare_digest(digest, expected) and match is None:
                match = token
        if match is None:
            _log.warning("rpc rejected: unknown token", extra={"method": method})
            return Unauthenticated("the bearer token is not valid for this server")
        if not match.allows(method):
            _log.warning("rpc rejected: token not allowed", extra={"method": method, "token": match.name})
            return PermissionDenied(
                f"token {match.name!r} is not allowed to call {method}",
                metadata={"token": match.name, "method": method},
            )
        return None


def _raiser(error: TistudioError, response_streaming: bool):
    # The replacement behavior raises where a handler would, so the error interceptor maps it.
    def deny(request, context):
        raise error

    if response_streaming:

        def deny_stream(request, context):
            raise error
            yield  # pragma: no cover - makes this a generator like the behavior it replaces

        return deny_stream
    return deny
