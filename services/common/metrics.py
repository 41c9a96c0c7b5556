"""RPC metrics per server, and the HTTP endpoint that serves them.

Each `ServiceServer` owns a `CollectorRegistry` (never the process-global one) so several servers can live in
one test process without "duplicated timeseries" errors; services add their own metrics to the same registry.
Names follow go-grpc-prometheus so existing dashboards work. Labels are bounded: only methods a server
registered ever get a handler, so a client cannot mint label values by calling made-up method names.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from services.common.interceptors import rpc_type, split_method, wrap_handler

__all__ = ["RpcMetrics", "MetricsInterceptor", "start_metrics_http_server", "LATENCY_BUCKETS_SECONDS"]

# 1 ms (health checks) up to 10 min (a training job's event stream), roughly x2.5 per step.
LATENCY_BUCKETS_SECONDS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip

_LABELS = ("grpc_service", "grpc_method", "grpc_type")


class RpcMetrics:
    """The three RPC metric families, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.started = Counter("grpc_server_started_total", "RPCs started on the server.", _LABELS, registry=registry)
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, by final status code.",
            (*_LABELS, "grpc_code"),
            registry=registry,
        )
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC until its response (or response stream) ends.",
            _LABELS,
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=registry,
        )


def _final_code(context: grpc.ServicerContext, raised: bool) -> grpc.StatusCode:
    code = context.code()  # set by abort() (and so by the error interceptor) or set_code()
    if code is not None:
        return code
    if not context.is_active():
        # The client went away before the handler finished.
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            return grpc.StatusCode.DEADLINE_EXCEEDED
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN if raised else grpc.StatusCode.OK


class _Call:
    """One RPC's measurement, recorded exactly once: when the handler ends, or when gRPC ends the RPC."""

    def __init__(self, metrics: RpcMetrics, labels: tuple[str, str, str], context: grpc.ServicerContext):
        self._metrics = metrics
        self._labels = labels
        self._context = context
        self._lock = threading.Lock()
        self._done = False
        self._start = time.perf_counter()
        metrics.started.labels(*labels).inc()
        # A cancelled RPC's handler may never return (a stream gRPC stops pulling from); the termination
        # callback records those. Normal ends are recorded by the wrapper first, before the client sees
        # the status, so a client reading /metrics right after a call sees it counted.
        if not context.add_callback(lambda: self.finish(raised=False)):
            self.finish(raised=False)

    def finish(self, raised: bool, code: grpc.StatusCode | None = None) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        final = code or _final_code(self._context, raised)
        self._metrics.handled.labels(*self._labels, final.name).inc()
        self._metrics.handling.labels(*self._labels).observe(time.perf_counter() - self._start)


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts and times every RPC with its final status code. Must be the outermost interceptor."""

    def __init__(self, metrics: RpcMetrics) -> None:
        self._metrics = metrics

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        labels = (*split_method(handler_call_details.method), rpc_type(handler))
        return wrap_handler(handler, lambda b, s: self._measure(b, s, labels))

    def _measure(self, behavior: Callable[..., Any], response_streaming: bool, labels: tuple[str, str, str]):
        metrics = self._metrics
        if response_streaming:

            def measured_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                call = _Call(metrics, labels, context)
                try:
                    yield from behavior(request, context)
                except GeneratorExit:
                    # The stream was closed before its end: gRPC dropped it after a cancellation.
                    call.finish(raised=True, code=grpc.StatusCode.CANCELLED)
                    raise
                except BaseException:
                    call.finish(raised=True)
                    raise
                call.finish(raised=False)

            return measured_stream

        def measured(request: Any, context: grpc.ServicerContext) -> Any:
            call = _Call(metrics, labels, context)
            try:
                response = behavior(request, context)
            except BaseException:
                call.finish(raised=True)
                raise
            call.finish(raised=False)
            return response

        return measured


def start_metrics_http_server(registry: CollectorRegistry, host: str, port: int) -> tuple[int, Callable[[], None]]:
    """Serve `registry` at http://host:port/metrics in a daemon thread; port 0 picks a free port.

    Returns the bound port and a function that stops the server and closes its socket.
    """
    httpd, thread = start_http_server(port, addr=host, registry=registry)
    bound_port = int(httpd.server_port)

    def stop() -> None:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)

    return bound_port, stop
