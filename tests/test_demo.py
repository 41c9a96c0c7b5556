"""End to end, through the client only: `make demo`'s job starts the trio, sees it SERVING, stops it cleanly."""

from __future__ import annotations

import json
import subprocess
import sys


def test_demo_brings_up_three_serving_services_and_stops_them_cleanly(tmp_path, tiny_models):
    models = tiny_models["sd"].parent
    out = tmp_path / "demo-out"
    result = subprocess.run(
        [sys.executable, "-m", "tistudio_client.demo", "--models", str(models), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "health.json").read_text())
    assert {h["name"]: h["status"] for h in report["health"]} == {
        "caption": "SERVING",
        "trainer": "SERVING",
        "preview": "SERVING",
    }
    assert report["exit_codes"] == {"caption": 0, "trainer": 0, "preview": 0}
    for name in ("caption", "trainer", "preview"):
        lines = (out / "logs" / f"{name}.log").read_text().splitlines()
        assert lines and all(json.loads(line)["service"] == name for line in lines)
