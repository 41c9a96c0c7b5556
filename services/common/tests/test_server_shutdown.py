"""Graceful stop: health first, callbacks, drain, in-flight calls finish; the same on a real SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.tests.echo import EchoClient, make_server

REPO_ROOT = Path(__file__).resolve().parents[3]
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _health(channel: grpc.Channel) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status


def test_stop_drains_and_lets_in_flight_calls_finish():
    server = make_server(drain_seconds=0.3)
    server.set_serving(True)
    seen_in_callback = []
    with grpc.insecure_channel(server.address) as channel:
        server.on_shutdown(lambda: seen_in_callback.append(_health(channel)))
        client = EchoClient(channel)
        slow = client.sleep.future(b"1.0", timeout=10)
        time.sleep(0.2)  # the call is now in the handler
        stopper = threading.Thread(target=server.stop, kwargs={"grace": 5.0})
        stopper.start()
        time.sleep(0.1)  # inside the drain: still serving calls, but health says go away
        assert _health(channel) == NOT_SERVING
        server.set_serving(True)  # too late: stays NOT_SERVING
        assert _health(channel) == NOT_SERVING
        assert slow.result(timeout=10) == b"slept"
        stopper.join(timeout=10)
        assert not stopper.is_alive()
        assert seen_in_callback == [NOT_SERVING]
        with pytest.raises(grpc.RpcError) as err:
            client.echo(b"late", timeout=2)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    server.stop()  # idempotent
    server.wait()  # returns at once once stopped


def test_calls_past_the_grace_period_are_cancelled():
    server = make_server(drain_seconds=0.0)
    failing_callback_ran = []

    def failing_callback():
        failing_callback_ran.append(True)
        raise RuntimeError("the trainer could not save")

    server.on_shutdown(failing_callback)
    with grpc.insecure_channel(server.address) as channel:
        slow = EchoClient(channel).sleep.future(b"1.5", timeout=10)
        time.sleep(0.2)
        started = time.monotonic()
        server.stop(grace=0.1)  # a failing callback does not prevent the stop
        assert time.monotonic() - started < 1.0
        with pytest.raises(grpc.RpcError) as err:
            slow.result(timeout=5)
        assert err.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    assert failing_callback_ran == [True]


SCRIPT = """
import logging
from services.common.logs import configure_logging
from services.common.server import ServiceServer
from services.common.settings import ServerSettings
from services.common.tests import echo

configure_logging("echo", "INFO")
server = ServiceServer("echo", ServerSettings(drain_seconds=0.2, grace_seconds=5.0))
server.add_service(echo.SERVICE, echo.register)
server.on_shutdown(lambda: logging.getLogger("script").info("saving state"))
server.start()
server.install_signal_handlers()
server.set_serving(True)
print("PORT", server.port, flush=True)
server.wait()
"""


@pytest.mark.timeout(60)
def test_sigterm_stops_gracefully(tmp_path):
    script = tmp_path / "serve_echo.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        try:
            lines = []
            for line in proc.stdout:
                lines.append(line)
                if line.startswith("PORT "):
                    break
            assert lines and lines[-1].startswith("PORT "), "".join(lines)
            port = int(lines[-1].split()[1])
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                slow = EchoClient(channel).sleep.future(b"1.0", timeout=15)
                time.sleep(0.3)
                proc.send_signal(signal.SIGTERM)
                assert slow.result(timeout=15) == b"slept"
            output, _ = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, output
        assert '"msg": "saving state"' in output
        assert '"msg": "server stopped"' in output
