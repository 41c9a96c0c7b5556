"""The domain exception tree and its one mapping to gRPC status codes.

Domain code raises these; the error interceptor (`services.common.interceptors`) turns them into a gRPC status
with a `google.rpc.Status` carrying an `ErrorInfo` (domain `tistudio`, a stable `reason`, string metadata) and,
when the error names a request field, a `BadRequest` field violation. The SDK maps them back.

| exception            | gRPC code            | default reason        | meaning for the caller                        |
|----------------------|----------------------|-----------------------|-----------------------------------------------|
| InvalidArgument      | INVALID_ARGUMENT     | INVALID_ARGUMENT      | fix the request (the message says what)       |
| NotFound             | NOT_FOUND            | NOT_FOUND             | the named object, model or job does not exist |
| AlreadyExists        | ALREADY_EXISTS       | ALREADY_EXISTS        | pick another name or reuse the existing one   |
| FailedPrecondition   | FAILED_PRECONDITION  | FAILED_PRECONDITION   | the system is not in a state that allows it   |
| Aborted              | ABORTED              | ABORTED               | a concurrent change won; retry the sequence   |
| ResourceExhausted    | RESOURCE_EXHAUSTED   | RESOURCE_EXHAUSTED    | out of memory, quota or queue space           |
| Unauthenticated      | UNAUTHENTICATED      | UNAUTHENTICATED       | send a valid bearer token                     |
| PermissionDenied     | PERMISSION_DENIED    | PERMISSION_DENIED     | the token is valid but not allowed here       |
| Unavailable          | UNAVAILABLE          | UNAVAILABLE           | transient: retry with backoff                 |
| Internal (and any    | INTERNAL             | INTERNAL              | a bug: the message carries an incident id to  |
| unexpected exception)|                      |                       | find the traceback in the server log          |

Subclasses refine the reason (e.g. `InvalidStorageKey` -> INVALID_ARGUMENT / INVALID_STORAGE_KEY).
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

__all__ = [
    "ERROR_DOMAIN",
    "TistudioError",
    "InvalidArgument",
    "NotFound",
    "AlreadyExists",
    "FailedPrecondition",
    "Aborted",
    "ResourceExhausted",
    "Unauthenticated",
    "PermissionDenied",
    "Unavailable",
    "Internal",
]

ERROR_DOMAIN = "tistudio"


class TistudioError(Exception):
    """Base of every error a caller may see. `message` must tell the user what to change."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        field: str | None = None,
        metadata: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        # The request field at fault, as a dotted path ("options.max_tokens"): becomes a BadRequest violation.
        self.field = field
        self.metadata = {str(k): str(v) for k, v in (metadata or {}).items()}

    def __str__(self) -> str:
        return self.message


class InvalidArgument(TistudioError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"


class NotFound(TistudioError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class AlreadyExists(TistudioError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class FailedPrecondition(TistudioError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class Aborted(TistudioError):
    code = grpc.StatusCode.ABORTED
    reason = "ABORTED"


class ResourceExhausted(TistudioError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"


class Unauthenticated(TistudioError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDenied(TistudioError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class Unavailable(TistudioError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"


class Internal(TistudioError):
    code = grpc.StatusCode.INTERNAL
    reason = "INTERNAL"
