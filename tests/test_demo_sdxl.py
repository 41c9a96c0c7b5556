"""The demo takes an SDXL model path and runs the same workflow: the tiny SDXL's family is detected, the embedding
trains as a clip_l + clip_g pair, previews and sheets render through both text encoders, and the export holds the
SDXL forms (safetensors with both tensors, diffusers' two files) without A1111's single-encoder .pt."""

from __future__ import annotations

import subprocess
import sys

from safetensors import safe_open


def test_the_demo_runs_on_an_sdxl_model(tmp_path, tiny_models):
    out = tmp_path / "demo-out"
    command = [
        *(sys.executable, "-m", "tistudio_client.demo", "--models", str(tiny_models["sd"].parent)),
        *("--sd-model", str(tiny_models["sdxl"]), "--max-steps", "20", "--every", "10", "--out", str(out)),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "job JOB_STATE_SUCCEEDED at step 20" in result.stdout
    embedding = sorted(p.relative_to(out / "embedding").as_posix() for p in (out / "embedding").rglob("*.*"))
    assert embedding == [
        "h3artdemo.safetensors",
        "h3artdemo/learned_embeds.safetensors",
        "h3artdemo/learned_embeds_2.safetensors",
    ]
    with safe_open(out / "embedding" / "h3artdemo.safetensors", "pt") as pair:
        assert {key: list(pair.get_slice(key).get_shape()) for key in pair.keys()} == {
            "clip_l": [2, 32],
            "clip_g": [2, 48],
        }
        assert pair.metadata()["model_family"] == "sdxl"
    assert sorted(p.name for p in (out / "previews").iterdir()) == ["000010", "000020"]
    assert sorted(p.name for p in (out / "sheets").iterdir()) == [
        "final-exam.png",
        "progress-seeds.png",
        "progress-weights.png",
    ]
