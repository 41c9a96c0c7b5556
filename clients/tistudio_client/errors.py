"""The SDK's exception tree: every failure a caller of `tistudio_client` sees is a `TistudioError`.

Server errors arrive as a gRPC status whose trailers carry a `google.rpc.Status` with an `ErrorInfo` (domain
`tistudio`, a stable `reason`, string `metadata`) and, when a request field is at fault, a `BadRequest`
(see `services.common.interceptors`). `from_rpc_error` turns that back into one exception, picked by code:

| exception            | gRPC code                 | what to do                                        | retried    |
|----------------------|---------------------------|---------------------------------------------------|------------|
| TistudioError        | CANCELLED, UNKNOWN, other | base class: catch it to handle every error        | no         |
| ├ InvalidArgument    | INVALID_ARGUMENT          | fix the request; `field` names the field at fault | no         |
| ├ NotFound           | NOT_FOUND                 | the object, model or job does not exist           | no         |
| ├ AlreadyExists      | ALREADY_EXISTS            | pick another name or reuse the object             | no         |
| ├ FailedPrecondition | FAILED_PRECONDITION       | the system's state does not allow the call        | no         |
| ├ Aborted            | ABORTED                   | a concurrent change won; redo the sequence        | no         |
| ├ ResourceExhausted  | RESOURCE_EXHAUSTED        | out of memory, quota or queue; try later          | no         |
| ├ Unauthenticated    | UNAUTHENTICATED           | pass a valid `token`                              | no         |
| ├ PermissionDenied   | PERMISSION_DENIED         | the token is not allowed to call this method      | no         |
| ├ Unavailable        | UNAVAILABLE               | transient: the service is down or restarting      | idempotent |
| ├ DeadlineExceeded   | DEADLINE_EXCEEDED         | pass a larger `timeout`                           | watch: yes |
| ├ Internal           | INTERNAL, DATA_LOSS, ...  | a server bug; `incident` finds it in its log      | no         |
| ├ ConfigurationError | FAILED_PRECONDITION       | raised locally: set the address or store URL      | -          |
| └ TransferError      | its cause's               | raised locally: a file <-> store copy failed      | -          |

Every exception carries `code` (a `grpc.StatusCode`), `reason` (the ErrorInfo reason, e.g.
"OBJECT_NOT_FOUND"; the code's name when the status had none), `field` (first field violation or None),
`metadata` (dict of str), `details` (the unpacked detail messages) and `message` (what the server said).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

__all__ = [
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
    "DeadlineExceeded",
    "Internal",
    "ConfigurationError",
    "TransferError",
    "from_rpc_error",
]


class TistudioError(Exception):
    """Base of every SDK error. `str(err)` is the server's message, which says what to change."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str | None = None,
        field: str | None = None,
        metadata: Mapping[str, str] | None = None,
        details: Sequence[Any] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.reason = reason or self.code.name
        self.field = field
        self.metadata = dict(metadata or {})
        self.details = list(details)

    @property
    def incident(self) -> str | None:
        """For INTERNAL errors: the id under which the server logged the traceback."""
        return self.metadata.get("incident")

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code.name}, reason={self.reason!r})"


class InvalidArgument(TistudioError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(TistudioError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(TistudioError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(TistudioError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(TistudioError):
    code = grpc.StatusCode.ABORTED


class ResourceExhausted(TistudioError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(TistudioError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(TistudioError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(TistudioError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(TistudioError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Internal(TistudioError):
    code = grpc.StatusCode.INTERNAL


class ConfigurationError(TistudioError):
    """The client lacks something it needs (a service address, a store URL): nothing was sent."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class TransferError(TistudioError):
    """Copying between a local file and the store failed. `path` and `key` name both ends."""

    def __init__(self, message: str, *, path: str, key: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.path = path
        self.key = key


_BY_CODE: dict[grpc.StatusCode, type[TistudioError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        Aborted,
        ResourceExhausted,
        Unauthenticated,
        PermissionDenied,
        Unavailable,
        DeadlineExceeded,
        Internal,
    )
}
# Codes the services never send on purpose but gRPC itself may: treat them as server faults.
_BY_CODE[grpc.StatusCode.DATA_LOSS] = Internal
_BY_CODE[grpc.StatusCode.UNIMPLEMENTED] = Internal

_DETAIL_TYPES = (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.DebugInfo)


def from_rpc_error(error: grpc.RpcError) -> TistudioError:
    """The exception for a failed call, with reason, field and metadata read from its status details."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = (error.details() if hasattr(error, "details") else None) or str(code.name).lower()
    reason, field, metadata, details = None, None, {}, []
    try:
        status = rpc_status.from_call(error)
    except (ValueError, AttributeError):
        status = None  # trailers inconsistent with the code, or not a call: keep the code and message
    for packed in status.details if status is not None else ():
        detail = _unpack(packed)
        details.append(detail)
        if isinstance(detail, error_details_pb2.ErrorInfo) and reason is None:
            reason, metadata = detail.reason or None, dict(detail.metadata)
        elif isinstance(detail, error_details_pb2.BadRequest) and detail.field_violations and field is None:
            field = detail.field_violations[0].field or None
    cls = _BY_CODE.get(code, TistudioError)
    return cls(message, code=code, reason=reason, field=field, metadata=metadata, details=details)


def _unpack(packed: Any) -> Any:
    """The detail as its message type when it is one we know; the packed `Any` otherwise."""
    for detail_type in _DETAIL_TYPES:
        if packed.Is(detail_type.DESCRIPTOR):
            detail = detail_type()
            packed.Unpack(detail)
            return detail
    return packed
