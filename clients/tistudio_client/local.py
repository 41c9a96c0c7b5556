"""Run the three services on loopback as child processes: what `tistudio up` and the demo use.

Each child is `python -m services.<name>` with the environment the service reads at start-up. Children bind free
ports (or the ones asked for) and report them through a ready file, so nothing races for a port.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tistudio_client.health import SERVICE_NAMES, ServiceHealth, check_service

__all__ = ["TrioConfig", "LocalTrio", "StartupError"]

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """A service did not come up; the message carries the end of its log."""


@dataclass(frozen=True)
class TrioConfig:
    store_url: str  # the shared store, e.g. file:///abs/dir
    caption_model: str  # BLIP model reference the caption service loads at start-up
    sd_model: str = ""  # Stable Diffusion model the trainer and preview preload ("" = none)
    clip_model: str = ""  # CLIPModel the preview service scores savepoints with ("" = Evaluate needs one per request)
    host: str = "127.0.0.1"
    ports: Mapping[str, int] = field(default_factory=lambda: {name: 0 for name in SERVICE_NAMES})  # 0 = free
    metrics: bool = True  # serve /metrics (on free ports when the gRPC ports are free ones)
    cache_dir: str = ""  # "" = each service's default
    log_dir: Path | None = None  # one log file per service; None = inherit this process's stdout
    extra_env: Mapping[str, str] = field(default_factory=dict)  # anything else, e.g. TISTUDIO_AUTH_TOKENS


class LocalTrio:
    """Start with `start()` (or `with LocalTrio(config) as trio:`); `addresses` maps name -> host:port."""

    def __init__(self, config: TrioConfig) -> None:
        self.config = config
        self.addresses: dict[str, str] = {}
        self.metrics_ports: dict[str, int | None] = {}
        self._processes: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, IO[bytes]] = {}
        self._ready_dir = Path(tempfile.mkdtemp(prefix="tistudio-up-"))

    def __enter__(self) -> LocalTrio:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        self._spawn("caption")
        self._spawn("preview")
        # The trainer asks the preview service for previews, so it starts once the preview's port is known.
        preview = self._await_ready("preview", deadline)
        self._spawn("trainer", {"TISTUDIO_PREVIEW_ADDRESS": preview["address"]})
        for name in SERVICE_NAMES:
            info = self._await_ready(name, deadline)
            self.addresses[name] = info["address"]
            self.metrics_ports[name] = info["metrics_port"]

    def kill(self, name: str) -> int:
        """SIGKILL one service, as a crash or an evicted pod would end it: no drain, no last savepoint."""
        process = self._processes[name]
        process.kill()
        code = process.wait()
        (self._ready_dir / f"{name}.json").unlink(missing_ok=True)
        handle = self._logs.pop(name, None)
        if handle is not None:
            handle.close()  # restart opens the log again, in append mode
        return code

    def restart(self, name: str, timeout: float = 120.0) -> str:
        """Start a stopped or killed service again (on a new free port when its port was 0); its new address."""
        deadline = time.monotonic() + timeout
        extra = {"TISTUDIO_PREVIEW_ADDRESS": self.addresses["preview"]} if name == "trainer" else None
        self._spawn(name, extra)
        info = self._await_ready(name, deadline)
        self.addresses[name] = info["address"]
        self.metrics_ports[name] = info["metrics_port"]
        return self.addresses[name]

    def wait_serving(self, timeout: float = 120.0) -> dict[str, ServiceHealth]:
        """Poll health until all three are SERVING (models loaded); raise StartupError when one never is."""
        deadline = time.monotonic() + timeout
        while True:
            health = {name: check_service(name, address) for name, address in self.addresses.items()}
            if all(h.serving for h in health.values()):
                return health
            for name, process in self._processes.items():
                if process.poll() is not None:
                    raise StartupError(f"{name} exited with code {process.returncode}{self._log_tail(name)}")
            if time.monotonic() > deadline:
                waiting = ", ".join(f"{n}={h.status}" for n, h in health.items() if not h.serving)
                raise StartupError(f"services not SERVING after {timeout:.0f} s: {waiting}")
            time.sleep(0.2)

    def stop(self, timeout: float = 60.0) -> dict[str, int]:
        """SIGTERM every child (they drain and stop gracefully) and return their exit codes."""
        for process in self._processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = {}
        for name, process in self._processes.items():
            try:
                codes[name] = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", name, timeout)
                process.kill()
                codes[name] = process.wait()
        for handle in self._logs.values():
            handle.close()
        self._processes.clear()
        self._logs.clear()
        return codes

    def _spawn(self, name: str, extra: Mapping[str, str] | None = None) -> None:
        config = self.config
        prefix = f"TISTUDIO_{name.upper()}"
        env = {
            **os.environ,
            **config.extra_env,
            "TISTUDIO_STORE_URL": config.store_url,
            "TISTUDIO_HOST": config.host,
            f"{prefix}_PORT": str(config.ports.get(name, 0)),
            f"{prefix}_METRICS_PORT": "0" if config.metrics else "off",
            "TISTUDIO_READY_FILE": str(self._ready_dir / f"{name}.json"),
            "TISTUDIO_CAPTION_MODEL": config.caption_model,
            "TISTUDIO_SD_MODEL": config.sd_model,
            "TISTUDIO_CLIP_MODEL": config.clip_model,
            "PYTHONUNBUFFERED": "1",
            **(extra or {}),
        }
        if config.cache_dir:
            env["TISTUDIO_CACHE_DIR"] = config.cache_dir
        stdout: IO[bytes] | None = None
        if config.log_dir is not None:
            config.log_dir.mkdir(parents=True, exist_ok=True)
            stdout = self._logs[name] = open(config.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop
        self._processes[name] = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"], env=env, stdout=stdout, stderr=subprocess.STDOUT
        )

    def _await_ready(self, name: str, deadline: float) -> dict:
        ready_file = self._ready_dir / f"{name}.json"
        process = self._processes[name]
        while not ready_file.exists():
            if process.poll() is not None:
                self.stop()
                code = process.returncode
                raise StartupError(f"{name} exited with code {code} before listening{self._log_tail(name)}")
            if time.monotonic() > deadline:
                self.stop()
                raise StartupError(f"{name} did not start listening in time{self._log_tail(name)}")
            time.sleep(0.05)
        return json.loads(ready_file.read_text())

    def _log_tail(self, name: str, lines: int = 20) -> str:
        if self.config.log_dir is None:
            return " (see its log above)"
        path = self.config.log_dir / f"{name}.log"
        tail = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
        return ":\n" + "\n".join(tail) if tail else ""
