"""`make demo` as a user runs it: the trio up on the toy world's models, the whole workflow through the SDK, every
output where the demo says, captions that are right, and a clean stop."""

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
    embedding = sorted(p.relative_to(out / "embedding").as_posix() for p in (out / "embedding").rglob("*.*"))
    assert embedding == ["h3artdemo.pt", "h3artdemo.safetensors", "h3artdemo/learned_embeds.safetensors"]
    assert sorted(p.name for p in (out / "previews").iterdir()) == [f"{s:06d}" for s in range(50, 301, 50)]
    assert sorted(p.name for p in (out / "sheets").iterdir()) == [
        "final-exam.png",
        "progress-seeds.png",
        "progress-weights.png",
    ]
    for name in ("loss.csv", "loss.png", "lint-report.txt"):
        assert (out / name).stat().st_size > 0, name
    assert "job JOB_STATE_SUCCEEDED at step 300" in result.stdout and f"outputs in {out}" in result.stdout
    # The toy BLIP names the sample concept, and fixing the captions leaves only the background.
    assert "001.png: 'a purple heart on a" in result.stdout
    assert "captions fixed: 12 lose 'purple heart'; 'a purple heart on a" in result.stdout
