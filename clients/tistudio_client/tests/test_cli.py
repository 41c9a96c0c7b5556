"""The `tistudio` command: `up` starts the trio, `health` reports it, `serve` refuses bad settings."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TISTUDIO = [sys.executable, "-m", "tistudio_client.cli"]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*TISTUDIO, *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture
def trio(tmp_path, tiny_models):
    """`tistudio up` on free ports; yields {name: address} once it says all three are SERVING."""
    process = subprocess.Popen(
        [
            *TISTUDIO,
            "up",
            "--store",
            str(tmp_path / "store"),
            "--caption-model",
            str(tiny_models["blip"]),
            "--sd-model",
            str(tiny_models["sd"]),
            "--ports",
            "0,0,0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "TISTUDIO_DRAIN_SECONDS": "0", "TISTUDIO_CACHE_DIR": str(tmp_path / "cache")},
    )
    addresses: dict[str, str] = {}
    deadline = time.monotonic() + 120
    for line in process.stdout:
        if match := re.match(r"(caption|trainer|preview)\s+(\S+:\d+)", line):
            addresses[match[1]] = match[2]
        if "all three SERVING" in line or time.monotonic() > deadline:
            break
    assert set(addresses) == {"caption", "trainer", "preview"}, "tistudio up did not report three addresses"
    yield process, addresses
    if process.poll() is None:
        process.kill()
    process.wait()
    process.stdout.close()


def test_up_then_health_then_clean_stop(trio):
    process, addresses = trio
    flags = [arg for name, address in addresses.items() for arg in (f"--{name}", address)]

    result = _run("health", *flags, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert {entry["status"] for entry in report.values()} == {"SERVING"}
    assert "tistudio.trainer.v1.TrainerService" in report["trainer"]["services"]

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0

    result = _run("health", *flags, "--timeout", "1")
    assert result.returncode == 1
    assert result.stdout.count("UNREACHABLE") == 3


def test_serve_without_a_captioner_exits_2_naming_the_variable(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TISTUDIO_")},
        "TISTUDIO_STORE_URL": Path(tmp_path).as_uri(),
        "TISTUDIO_CAPTION_PORT": "0",
        "TISTUDIO_CAPTION_METRICS_PORT": "off",
    }
    result = _run("serve", "caption", env=env)
    assert result.returncode == 2
    assert "TISTUDIO_CAPTION_MODEL is not set" in result.stdout


def test_up_rejects_malformed_ports():
    result = _run("up", "--caption-model", "x", "--ports", "1,2")
    assert result.returncode == 2
    assert "--ports" in result.stderr
