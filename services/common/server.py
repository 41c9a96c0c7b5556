"""`ServiceServer`: the gRPC server every tistudio service runs in, with health, reflection, metrics,
errors-to-status, optional auth and TLS, and a graceful stop.

`services.common.runtime` drives it for every service:

    server = ServiceServer("caption", ServerSettings.from_env("caption"))
    server.add_service(CAPTION_SERVICE_NAME, lambda s: add_CaptionServiceServicer_to_server(servicer, s))
    server.start(); server.install_signal_handlers()
    load_models(); server.set_serving(True)
    server.wait()

Lifecycle: health starts NOT_SERVING (models are not loaded yet) and turns SERVING on `set_serving(True)`.
`stop()` (or SIGTERM/SIGINT) turns health NOT_SERVING for good, runs the `on_shutdown` callbacks, waits
`drain_seconds` for load balancers to notice, then gives in-flight calls `grace` seconds before cancelling.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from services.common.auth import AuthInterceptor
from services.common.interceptors import ErrorInterceptor
from services.common.metrics import MetricsInterceptor, RpcMetrics, start_metrics_http_server
from services.common.settings import ServerSettings, grpc_channel_options
from services.common.tls import server_credentials

__all__ = ["ServiceServer"]

_log = logging.getLogger(__name__)


class ServiceServer:
    """One gRPC server for one service. Not restartable: build a new one after `stop()`."""

    def __init__(self, name: str, settings: ServerSettings, *, registry: CollectorRegistry | None = None) -> None:
        self.name = name
        self.settings = settings
        self.registry = registry if registry is not None else CollectorRegistry()  # services add metrics here
        self.port = 0  # bound gRPC port, known after start()
        self.address = ""  # "host:port" clients dial, known after start()
        self.metrics_port: int | None = None  # bound /metrics port after start(); None when disabled
        self._rpc_metrics = RpcMetrics(self.registry)
        self._services: list[tuple[str, Callable[[grpc.Server], None]]] = []
        self._shutdown_callbacks: list[Callable[[], None]] = []
        self._health = health.HealthServicer(experimental_non_blocking=True)
        self._server: grpc.Server | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stop_metrics: Callable[[], None] | None = None
        self._lock = threading.Lock()  # guards start/stop transitions; held for the whole stop
        self._stopping = False
        self._stopped = threading.Event()

    def add_service(self, full_name: str, register: Callable[[grpc.Server], None]) -> None:
        """Register a servicer: `full_name` is the proto service name (for health and reflection),
        `register` adds it to the grpc.Server (the generated `add_XServicer_to_server`). Before `start()`."""
        if self._server is not None or self._stopping:
            raise RuntimeError(f"add_service({full_name!r}) must come before start()")
        if full_name in self.service_names:
            raise ValueError(f"service {full_name!r} was already added")
        self._services.append((full_name, register))

    def on_shutdown(self, callback: Callable[[], None]) -> None:
        """Run `callback` on stop, after health turns NOT_SERVING and before the drain (save state here)."""
        self._shutdown_callbacks.append(callback)

    @property
    def service_names(self) -> list[str]:
        return [name for name, _ in self._services]

    def start(self) -> None:
        """Bind the port, start serving with health NOT_SERVING, and start the /metrics endpoint."""
        s = self.settings
        with self._lock:
            if self._server is not None or self._stopping:
                raise RuntimeError(f"{self.name} server was already started")
            interceptors: list[grpc.ServerInterceptor] = [MetricsInterceptor(self._rpc_metrics), ErrorInterceptor()]
            if s.auth_tokens:
                # Innermost: its rejections are raised as domain errors, mapped by the error interceptor
                # and counted by the metrics interceptor with their final code, like any other failure.
                interceptors.append(AuthInterceptor(s.auth_tokens))
            self._executor = ThreadPoolExecutor(max_workers=s.max_workers, thread_name_prefix=f"{self.name}-rpc")
            # so_reuseport=0: a second server on a taken port must fail, not silently share it. Connections are
            # closed after 5 minutes (calls in flight get an hour to finish) so that round-robin clients re-resolve
            # and spread over replicas added since they connected.
            options = [
                *grpc_channel_options(s.max_message_bytes),
                ("grpc.so_reuseport", 0),
                ("grpc.max_connection_age_ms", 5 * 60 * 1000),
                ("grpc.max_connection_age_grace_ms", 60 * 60 * 1000),
            ]
            server = grpc.server(self._executor, interceptors=interceptors, options=options)
            for _, register in self._services:
                register(server)
            health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
            for service in ("", *self.service_names):
                self._health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
            if s.reflection:
                names = (*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME)
                reflection.enable_server_reflection(names, server)
            try:
                self.port = self._bind(server)
                if s.metrics_port is not None:
                    self.metrics_port, self._stop_metrics = start_metrics_http_server(
                        self.registry, s.host, s.metrics_port
                    )
                server.start()
            except BaseException:
                server.stop(None)
                self._executor.shutdown(wait=False)
                raise
            self.address = f"{_bracket(s.host)}:{self.port}"
            self._server = server
        _log.info(
            "server started",
            extra={
                "address": self.address,
                "services": self.service_names,
                "metrics_port": self.metrics_port,
                "tls": s.tls,
                "mtls": s.tls_client_ca is not None,
                "auth": bool(s.auth_tokens),
                "reflection": s.reflection,
            },
        )

    def _bind(self, server: grpc.Server) -> int:
        s = self.settings
        address = f"{_bracket(s.host)}:{s.port}"
        try:
            if s.tls_cert is not None and s.tls_key is not None:
                port = server.add_secure_port(address, server_credentials(s.tls_cert, s.tls_key, s.tls_client_ca))
            else:
                port = server.add_insecure_port(address)
        except RuntimeError as exc:  # recent grpcio raises instead of returning 0
            raise RuntimeError(f"cannot bind gRPC on {address}: {exc}") from exc
        if port == 0:
            raise RuntimeError(f"cannot bind gRPC on {address}: port taken or host not local")
        return port

    def set_serving(self, serving: bool) -> None:
        """Health of the whole server ("") and of every added service; ignored once stopping."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", *self.service_names):
            self._health.set(service, status)
        _log.info("health changed", extra={"serving": serving and not self._stopping})

    def stop(self, grace: float | None = None) -> None:
        """Graceful stop; `grace` overrides settings.grace_seconds. Idempotent: a second caller waits for
        the first stop to finish and returns."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            if self._server is None:  # never started: nothing to drain, no state worth saving
                self._stopped.set()
                return
            started = time.monotonic()
            _log.info("server stopping", extra={"drain_seconds": self.settings.drain_seconds})
            # Permanent NOT_SERVING: later set_serving(True) calls are ignored by the health servicer.
            self._health.enter_graceful_shutdown()
            for callback in self._shutdown_callbacks:
                try:
                    callback()
                except Exception:  # noqa: BLE001 - one failing callback must not block the stop
                    _log.exception("on_shutdown callback failed", extra={"callback": repr(callback)})
            time.sleep(self.settings.drain_seconds)
            self._server.stop(self.settings.grace_seconds if grace is None else grace).wait()
            if self._stop_metrics is not None:
                self._stop_metrics()
            if self._executor is not None:
                # Handlers of cancelled calls may still run; do not wait for them, just free the pool.
                self._executor.shutdown(wait=False, cancel_futures=True)
            _log.info("server stopped", extra={"seconds": round(time.monotonic() - started, 3)})
            self._stopped.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT start `stop()` in a thread (a handler must not block). Main thread only."""
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("install_signal_handlers() must be called from the main thread")

        def stop_on_signal(signum: int) -> None:
            _log.info("signal received, stopping", extra={"signal": signal.Signals(signum).name})
            self.stop()

        def handle(signum: int, frame: object) -> None:
            # Only start a thread here: even logging could deadlock on a lock the interrupted code holds.
            threading.Thread(target=stop_on_signal, args=(signum,), name=f"{self.name}-stop").start()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def wait(self) -> None:
        """Block until the server has stopped."""
        # Short timed waits keep the main thread responsive to signals on every platform.
        while not self._stopped.wait(0.5):
            pass

    def __enter__(self) -> ServiceServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _bracket(host: str) -> str:
    # An IPv6 literal needs brackets in "host:port" addresses.
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
