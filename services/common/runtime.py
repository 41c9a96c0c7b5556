"""Start-up and lifecycle of one service process, the same for caption, trainer and preview.

    settings from the environment (once) -> logging -> the store, checked -> the gRPC server, NOT_SERVING
    -> the ready file -> models loaded in the background -> SERVING -> ... SIGTERM -> graceful stop

A service contributes a `ServiceDefinition`: its name, its gRPC service, and a `build` function that returns the
servicer registration and the model loading to run before it turns SERVING. Everything else lives here once.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry

from services.common.errors import InvalidArgument, TistudioError
from services.common.files import write_text_atomic
from services.common.logs import configure_logging, route_library_logs
from services.common.server import ServiceServer
from services.common.settings import EnvReader, ServerSettings
from services.common.storage import Store, open_store

__all__ = [
    "RuntimeSettings",
    "ServiceContext",
    "ServiceParts",
    "ServiceDefinition",
    "RunningService",
    "start_service",
    "serve",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuntimeSettings:
    """What every service needs besides its server settings."""

    store_url: str  # TISTUDIO_STORE_URL: "file:///dir" or "s3://bucket/prefix" (S3 settings: see storage.url)
    cache_dir: Path  # TISTUDIO_CACHE_DIR: downloaded models and hash caches (default ~/.cache/tistudio)
    ready_file: Path | None  # TISTUDIO_READY_FILE: JSON with the bound ports, written once listening (for `up`)
    device: str = "cpu"  # TISTUDIO_DEVICE: "cpu", "cuda", "cuda:1", or "auto" (the default: cuda when present)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> RuntimeSettings:
        read = EnvReader(env)
        store_url = read.text("TISTUDIO_STORE_URL")
        if store_url is None:
            raise InvalidArgument(
                "TISTUDIO_STORE_URL is not set; set it to the shared store, "
                "e.g. file:///var/lib/tistudio or s3://bucket/prefix"
            )
        ready = read.text("TISTUDIO_READY_FILE")
        return cls(
            store_url=store_url,
            cache_dir=Path(read.text("TISTUDIO_CACHE_DIR") or Path.home() / ".cache" / "tistudio"),
            ready_file=Path(ready) if ready else None,
            device=_device(read.text("TISTUDIO_DEVICE") or "auto"),
        )


def _device(name: str) -> str:
    import torch  # here, not at import time: settings are read by processes that never touch a model

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InvalidArgument(
            f"TISTUDIO_DEVICE={name!r} is not a device; use auto, cpu, cuda or cuda:<index>",
            field="TISTUDIO_DEVICE",
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgument(
            f"TISTUDIO_DEVICE={name!r} but this machine has no usable CUDA GPU; use cpu or auto",
            field="TISTUDIO_DEVICE",
        )
    return name


@dataclass(frozen=True)
class ServiceContext:
    """What `ServiceDefinition.build` gets: settings, the checked store, and the metrics registry to add to."""

    name: str
    server: ServerSettings
    runtime: RuntimeSettings
    store: Store
    registry: CollectorRegistry
    env: Mapping[str, str]


@dataclass(frozen=True)
class ServiceParts:
    register: Callable[[grpc.Server], None]  # adds the servicer to the gRPC server
    load: Callable[[], None]  # loads the models; the service turns SERVING when it returns
    shutdown: Callable[[], None] = lambda: None  # runs after NOT_SERVING, before the drain (trainer saves state)


@dataclass(frozen=True)
class ServiceDefinition:
    name: str  # "caption", "trainer" or "preview"
    grpc_service: str  # full gRPC service name, e.g. "tistudio.caption.v1.CaptionService"
    build: Callable[[ServiceContext], ServiceParts]


class RunningService:
    """A started service: listening, loading its models in the background, SERVING once they are loaded."""

    def __init__(self, server: ServiceServer, parts: ServiceParts) -> None:
        self.server = server
        self.loaded = threading.Event()
        self.failed = threading.Event()
        # Loading runs after the server listens so that probes see NOT_SERVING (not connection refused) while
        # multi-gigabyte weights load; a failure stops the process rather than serving without models.
        threading.Thread(target=self._load, args=(parts,), name="model-load", daemon=True).start()

    def _load(self, parts: ServiceParts) -> None:
        try:
            parts.load()
        except Exception as exc:  # noqa: BLE001 - any load failure must stop the service, with the reason logged
            log.error("model loading failed, stopping: %s", exc, exc_info=not isinstance(exc, TistudioError))
            self.failed.set()
            self.server.stop(grace=0)
            return
        self.server.set_serving(True)
        self.loaded.set()
        log.info("serving")

    def wait(self) -> int:
        """Block until the server stops; the exit code is 1 when model loading failed, else 0."""
        self.server.wait()
        return 1 if self.failed.is_set() else 0


def start_service(definition: ServiceDefinition, env: Mapping[str, str] = os.environ) -> RunningService:
    """Read settings, check the store, start the server and the model loading. Raises TistudioError when the
    settings are invalid or the store is unreachable (before anything listens)."""
    server_settings = ServerSettings.from_env(definition.name, env)
    configure_logging(definition.name, server_settings.log_level)
    route_library_logs()
    runtime = RuntimeSettings.from_env(env)
    store = open_store(runtime.store_url, env=env)
    store.check()

    server = ServiceServer(definition.name, server_settings)
    context = ServiceContext(definition.name, server_settings, runtime, store, server.registry, env)
    parts = definition.build(context)
    server.add_service(definition.grpc_service, parts.register)
    server.on_shutdown(parts.shutdown)
    server.start()
    if runtime.ready_file is not None:
        _write_ready_file(runtime.ready_file, server)
    return RunningService(server, parts)


def serve(definition: ServiceDefinition, env: Mapping[str, str] = os.environ) -> int:
    """Run one service until SIGTERM/SIGINT (main thread only). Returns the process exit code."""
    try:
        running = start_service(definition, env)
    except TistudioError as exc:
        configure_logging(definition.name)
        log.error("start-up failed: %s", exc, extra={"reason": exc.reason})
        return 2
    running.server.install_signal_handlers()
    return running.wait()


def _write_ready_file(path: Path, server: ServiceServer) -> None:
    info = {"address": server.address, "port": server.port, "metrics_port": server.metrics_port, "pid": os.getpid()}
    write_text_atomic(path, json.dumps(info))
