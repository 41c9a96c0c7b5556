"""The one place where exceptions become gRPC statuses, and the handler-wrapping helper all interceptors use.

`ErrorInterceptor` turns a `TistudioError` into its code (table in `services.common.errors`) with a
`google.rpc.Status` in the trailers carrying an `ErrorInfo` (and a `BadRequest` when the error names a field).
Anything else is a bug: the caller gets INTERNAL with an incident id, the log gets the traceback under that id.
Aborts made by handlers themselves (`context.abort`) pass through untouched.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.common.errors import ERROR_DOMAIN, Internal, TistudioError

__all__ = [
    "ErrorInterceptor",
    "status_from_error",
    "internal_error",
    "wrap_handler",
    "split_method",
    "rpc_type",
]

_log = logging.getLogger(__name__)

# A behavior wrapper gets (behavior, response_streaming) and returns a behavior of the same shape.
BehaviorWrapper = Callable[[Callable[..., Any], bool], Callable[..., Any]]


def internal_error(incident: str) -> Internal:
    """The error an unexpected exception is replaced with: no detail of the bug, only the id to find it."""
    return Internal(f"internal error; incident {incident}", metadata={"incident": incident})


def status_from_error(exc: TistudioError) -> status_pb2.Status:
    """Build the rich status a domain error travels as. Pure: no logging, no ids made up here."""
    info = error_details_pb2.ErrorInfo(reason=exc.reason, domain=ERROR_DOMAIN, metadata=exc.metadata)
    details = [_pack(info)]
    if exc.field:
        violation = error_details_pb2.BadRequest.FieldViolation(field=exc.field, description=exc.message)
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[violation])))
    return status_pb2.Status(code=exc.code.value[0], message=exc.message, details=details)


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def split_method(full_method: str) -> tuple[str, str]:
    """ "/pkg.Service/Method" -> ("pkg.Service", "Method")."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


def rpc_type(handler: grpc.RpcMethodHandler) -> str:
    """The grpc_type label value, named as go-grpc-prometheus does so dashboards carry over."""
    if handler.request_streaming:
        return "BIDI_STREAM" if handler.response_streaming else "CLIENT_STREAM"
    return "SERVER_STREAM" if handler.response_streaming else "UNARY"


def wrap_handler(handler: grpc.RpcMethodHandler | None, wrap: BehaviorWrapper) -> grpc.RpcMethodHandler | None:
    """Rebuild `handler` with its behavior passed through `wrap`, whatever its streaming kind.

    Handlers marked `experimental_non_blocking` (the library health service's Watch) take a third
    `send_response_callback` argument and return before the stream ends; wrapping would hide the mark from
    gRPC and break them, so they are returned unchanged (they are exempt from auth and raise no domain errors).
    """
    if handler is None:
        return None
    kinds = {
        (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
        (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
        (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
        (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
    }
    attr, build = kinds[(handler.request_streaming, handler.response_streaming)]
    behavior = getattr(handler, attr)
    if getattr(behavior, "experimental_non_blocking", False):
        return handler
    return build(
        wrap(behavior, handler.response_streaming),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _is_own_abort(exc: BaseException, context: grpc.ServicerContext) -> bool:
    # `context.abort()` records the status on the context and raises a bare `Exception()`; gRPC then sends
    # the recorded status. There is no public type for it, so recognise it by that shape plus a code set.
    return type(exc) is Exception and not exc.args and context.code() is not None


class ErrorInterceptor(grpc.ServerInterceptor):
    """Maps every exception escaping a handler (or a response stream, mid-way) to a rich gRPC status."""

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        return wrap_handler(continuation(handler_call_details), lambda b, s: _guard(b, s, method))


def _guard(behavior: Callable[..., Any], response_streaming: bool, method: str) -> Callable[..., Any]:
    if response_streaming:

        def guarded_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                yield from behavior(request, context)
            except Exception as exc:  # noqa: BLE001 - every escape must become a status
                _abort(exc, context, method)

        return guarded_stream

    def guarded(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return behavior(request, context)
        except Exception as exc:  # noqa: BLE001
            _abort(exc, context, method)

    return guarded


def _abort(exc: Exception, context: grpc.ServicerContext, method: str) -> None:
    """Always raises: the handler's own abort again, or a new abort carrying the mapped status."""
    if _is_own_abort(exc, context):
        raise exc  # the handler chose its status itself
    if not context.is_active():
        # The client is gone (cancelled, or its deadline passed) and will read no status. End the call
        # quietly with the reason it ended, rather than let gRPC log a server error.
        expired = context.time_remaining() <= 0
        code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
        _log.info("rpc ended after the client left", extra={"method": method, "code": code.name, "error": repr(exc)})
        context.abort(code, "the client left before the call ended")
    if isinstance(exc, TistudioError) and exc.code != grpc.StatusCode.INTERNAL:
        _log.info(
            "rpc failed",
            extra={"method": method, "code": exc.code.name, "reason": exc.reason, "error": exc.message},
        )
        error: TistudioError = exc
    else:
        incident = uuid.uuid4().hex[:12]
        _log.error(
            "rpc failed with an internal error",
            exc_info=exc,
            extra={"method": method, "code": "INTERNAL", "incident": incident},
        )
        if isinstance(exc, TistudioError):
            # An Internal raised on purpose: keep its message and reason, add the id that finds the traceback.
            error = Internal(
                f"{exc.message}; incident {incident}",
                reason=exc.reason,
                field=exc.field,
                metadata={**exc.metadata, "incident": incident},
            )
        else:
            error = internal_error(incident)
    context.abort_with_status(rpc_status.to_status(status_from_error(error)))
