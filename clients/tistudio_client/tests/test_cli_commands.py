"""The `tistudio` service commands, run in-process (`cli.main`) against a real trainer and preview service on
port 0 that share one local store: the tiny SD model, a 4-image dataset and 4-step runs at 32 px."""

from __future__ import annotations

import json
import time

import pytest
from PIL import Image

from services.caption.service import DEFINITION as CAPTION
from services.common.runtime import start_service
from services.common.storage import LocalStore
from services.preview.service import DEFINITION as PREVIEW
from services.trainer.engine.testing import write_dataset
from services.trainer.service import DEFINITION as TRAINER
from tistudio_client import cli

TRIGGER = "cl1subj"
EMBEDDING = f"embeddings/{TRIGGER}.safetensors"
RUN = ["--width", "32", "--height", "32", "--max-steps", "4", "--batch-size", "1", "--template", "subject"]


@pytest.fixture(scope="module")
def services(tmp_path_factory, tiny_models):
    """{"flags": the connection flags for the CLI, "store": the shared LocalStore}; the embedding is created
    by the first test that needs it (`test_embedding_create`)."""
    root = tmp_path_factory.mktemp("cli-services")
    store = LocalStore(root / "store")
    write_dataset(store, "ds/", 4)
    common = {
        "TISTUDIO_STORE_URL": store.url,
        "TISTUDIO_DRAIN_SECONDS": "0",
        "TISTUDIO_SD_MODEL": str(tiny_models["sd"]),
    }
    preview = start_service(
        PREVIEW,
        {
            **common,
            "TISTUDIO_CACHE_DIR": str(root / "preview-cache"),
            "TISTUDIO_PREVIEW_PORT": "0",
            "TISTUDIO_PREVIEW_METRICS_PORT": "off",
            "TISTUDIO_CLIP_MODEL": str(tiny_models["clip"]),
        },
    )
    # One at a time: loading the same model in two threads at once is not safe (meta-device initialisation).
    assert preview.loaded.wait(120), "the preview service did not load"
    trainer = start_service(
        TRAINER,
        {
            **common,
            "TISTUDIO_CACHE_DIR": str(root / "trainer-cache"),
            "TISTUDIO_TRAINER_PORT": "0",
            "TISTUDIO_TRAINER_METRICS_PORT": "off",
            "TISTUDIO_PREVIEW_ADDRESS": preview.server.address,
        },
    )
    running = [trainer, preview]
    try:
        assert trainer.loaded.wait(120), "the trainer did not load"
        flags = ["--trainer", trainer.server.address, "--preview", preview.server.address, "--store", store.url]
        yield {"flags": flags, "store": store}
    finally:
        for r in running:
            r.server.stop(grace=0)
            r.wait()


def run(capsys, services, *args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `tistudio ARGS --trainer ... --preview ... --store ...`, without the
    services' own JSON log records (they share this process's stdout)."""
    capsys.readouterr()
    code = cli.main([*args, *services["flags"]])
    out, err = capsys.readouterr()
    return code, _without_logs(out), _without_logs(err)


def _without_logs(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith('{"ts": '))


@pytest.fixture(scope="module")
def embedding(services):
    code = cli.main(["embedding", "create", TRIGGER, "--init-text", "woman", "--vectors", "2", *services["flags"]])
    assert code == 0
    return EMBEDDING


def test_embedding_create_prints_the_key_and_refuses_a_second_time(capsys, services, embedding):
    assert services["store"].exists(embedding)
    code, out, err = run(capsys, services, "embedding", "create", TRIGGER, "--vectors", "2")
    assert code == 1
    assert out == ""
    assert err.startswith("tistudio embedding create: ALREADY_EXISTS: ")
    assert "Traceback" not in err

    code, out, _ = run(capsys, services, "embedding", "create", "cl1other", "--vectors", "1", "--json")
    assert code == 0
    assert json.loads(out)["file"]["key"] == "embeddings/cl1other.safetensors"


def test_train_plan_prints_steps_schedule_and_diagnostics(capsys, services, embedding):
    args = ["train", "plan", "--embedding", embedding, "--dataset", "ds", *RUN, "--batch-size", "3"]
    code, out, _ = run(capsys, services, *args)
    assert code == 0, out
    assert "plan       ok" in out
    assert "0 -> 4" in out
    assert "0.005 for steps 0-4" in out
    # 4 images in batches of 3: one sits out every epoch: a diagnostic with its suggestion.
    assert "\n  INFO IMAGES_LEFT_OVER: 1 of 4 images sit out" in out
    assert "\n      -> Use batch_size 4 x gradient_accumulation 1" in out

    # An empty dataset is an error diagnostic: exit 1, and the JSON says why.
    code, out, _ = run(capsys, services, "train", "plan", "--embedding", embedding, "--dataset", "empty/", "--json")
    plan = json.loads(out)
    assert code == 1
    assert plan.get("ok", False) is False
    assert [d["code"] for d in plan["diagnostics"] if d["severity"] == "SEVERITY_ERROR"] == ["NO_IMAGES"]

    # No spec can be built without a dataset: the server refuses the call and the CLI prints what it said.
    code, out, err = run(capsys, services, "train", "plan", "--embedding", embedding)
    assert code == 1
    assert err.startswith("tistudio train plan: INVALID_ARGUMENT: spec.dataset is empty")
    assert err.rstrip().endswith("(field spec.dataset)")
    assert "Traceback" not in err


def test_train_start_watch_runs_to_success_then_export_and_jobs(capsys, services, embedding, tmp_path):
    args = ["train", "start", "--embedding", embedding, "--dataset", "ds/", *RUN, "--learning-rate", "0.005"]
    args += ["--preview-every", "0", "--save-every", "2", "--log-every", "1", "--seed", "7", "--watch"]
    code, out, err = run(capsys, services, *args)
    assert code == 0, out + err
    job_id = out.splitlines()[0]
    assert f"job {job_id} SUCCEEDED at step 4/4" in out
    assert "4/4" in err and "loss" in err and "samples/s" in err
    assert "savepoint step 2:" in err and "savepoint step 4:" in err
    assert "state succeeded" in err

    code, out, _ = run(capsys, services, "export", "--job", job_id, "--format", "pt", "--out", str(tmp_path))
    assert code == 0
    files = out.split()
    assert len(files) == 1 and files[0].endswith(".pt")
    assert (tmp_path / files[0].rsplit("/", 1)[-1]).stat().st_size > 0

    code, out, _ = run(capsys, services, "jobs", "--state", "succeeded")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["JOB_ID", "STATE", "STEP", "LOSS", "EMBEDDING", "CREATED"]
    assert any(row.split()[:3] == [job_id, "succeeded", "4/4"] for row in rows)

    code, out, _ = run(capsys, services, "jobs", "--json")
    assert job_id in [job["job_id"] for job in json.loads(out)]

    code, out, _ = run(capsys, services, "watch", job_id, "--json")
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert events[-1]["state_changed"]["current"] == "JOB_STATE_SUCCEEDED"
    assert any("progress" in e for e in events)


def test_generate_writes_pngs_into_out(capsys, services, embedding, tmp_path):
    args = ["generate", f"a photo of {TRIGGER}", "--embedding", embedding, "--seed", "3", "--batch", "2"]
    args += ["--steps", "2", "--width", "32", "--height", "32", "--out", str(tmp_path / "out")]
    code, out, err = run(capsys, services, *args)
    assert code == 0, err
    pngs = sorted((tmp_path / "out").glob("*.png"))
    assert len(pngs) == 2
    with Image.open(pngs[0]) as png:
        assert png.size == (32, 32)
    assert out.count("wrote ") == 2


def test_sheet_exam_writes_the_sheet_png(capsys, services, embedding, tmp_path):
    args = ["sheet", "exam", "--dataset", "ds/", "--embedding", embedding, "--steps", "2", "--width", "32"]
    args += ["--height", "32", "--out", str(tmp_path / "exam.png")]
    code, out, err = run(capsys, services, *args)
    assert code == 0, err
    assert "rows x" in out
    with Image.open(tmp_path / "exam.png") as sheet:
        assert sheet.width > 32


def test_previews_during_training_then_sheet_progress(capsys, services, embedding, tmp_path):
    args = ["train", "start", "--embedding", embedding, "--dataset", "ds/", *RUN, "--learning-rate", "0.005"]
    args += ["--preview-every", "2", "--preview-prompt", "a photo of [name]", "--preview-seed", "1"]
    args += ["--preview-seed", "2", "--preview-steps", "2", "--watch"]
    code, out, err = run(capsys, services, *args)
    assert code == 0, out + err
    job_id = out.splitlines()[0]
    manifest = f"jobs/{job_id}/savepoints/000004/previews/manifest.json"
    for _ in range(600):  # previews render in the background: the last may land just after the job ends
        if services["store"].exists(manifest):
            break
        time.sleep(0.05)
    code, out, err = run(capsys, services, "sheet", "progress", f"jobs/{job_id}/", "--out", str(tmp_path / "p.png"))
    assert code == 0, err
    assert "2 rows x 2" in out
    with Image.open(tmp_path / "p.png") as sheet:
        assert sheet.width > 2 * 32 and sheet.height > 2 * 32


def test_pause_and_resume_from_the_command_line(capsys, services, embedding):
    long_run = [arg if arg != "4" else "400" for arg in RUN]
    args = ["train", "start", "--embedding", embedding, "--dataset", "ds/", *long_run, "--learning-rate", "0.005"]
    code, out, err = run(capsys, services, *args, "--preview-every", "0", "--save-every", "0")
    assert code == 0, err
    job_id = out.split()[0]
    code, out, err = run(capsys, services, "pause", job_id)
    assert code == 0, err
    for _ in range(600):
        code, out, _ = run(capsys, services, "jobs", "--json")
        state = next(job["state"] for job in json.loads(out) if job["job_id"] == job_id)
        if state == "JOB_STATE_PAUSED":
            break
        time.sleep(0.05)
    assert state == "JOB_STATE_PAUSED"
    code, out, err = run(capsys, services, "resume", job_id)
    assert code == 0, err
    code, out, err = run(capsys, services, "watch", job_id)
    assert code == 0, err
    assert "SUCCEEDED at step 400/400" in out


def test_unknown_job_prints_the_server_message_and_exits_1(capsys, services):
    for command in (["watch", "j-nope"], ["cancel", "j-nope"]):
        code, out, err = run(capsys, services, *command)
        assert code == 1
        assert err.startswith(f"tistudio {command[0]}: NOT_FOUND: ")
        assert "j-nope" in err
        assert "Traceback" not in err


def test_usage_errors_exit_2(capsys, services):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "plan", "--recipe", "nope"])
    assert exit_info.value.code == 2
    assert "seed-a" in capsys.readouterr().err


@pytest.fixture(scope="module")
def caption_flags(services, tiny_models, tmp_path_factory):
    """Connection flags with a real caption service (tiny BLIP) on the same store."""
    running = start_service(
        CAPTION,
        {
            "TISTUDIO_STORE_URL": services["store"].url,
            "TISTUDIO_DRAIN_SECONDS": "0",
            "TISTUDIO_CACHE_DIR": str(tmp_path_factory.mktemp("caption-cache")),
            "TISTUDIO_CAPTION_PORT": "0",
            "TISTUDIO_CAPTION_METRICS_PORT": "off",
            "TISTUDIO_CAPTION_MODEL": str(tiny_models["blip"]),
        },
    )
    try:
        assert running.loaded.wait(120), "the captioner did not load"
        yield {**services, "flags": [*services["flags"], "--caption", running.server.address]}
    finally:
        running.server.stop(grace=0)
        running.wait()


def test_dataset_upload_preprocess_caption_lint(capsys, caption_flags, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, colour in enumerate(("red", "green", "blue")):
        Image.new("RGB", (96, 80), colour).save(photos / f"{i:03d}.png")
    (photos / "000.txt").write_text("a woman in red")
    (photos / "notes.md").write_text("not an image")

    code, out, _ = run(capsys, caption_flags, "dataset", "upload", str(photos), "cli/raw")
    assert code == 0
    assert out.splitlines()[-1] == "uploaded 4 files to cli/raw/"

    code, out, _ = run(capsys, caption_flags, "dataset", "preprocess", "cli/raw/", "cli/train/", "--size", "64")
    assert code == 0, out
    assert out.count("kept    cli/raw/") == 3
    assert out.splitlines()[-1].startswith("kept 3, skipped 0")

    code, out, _ = run(capsys, caption_flags, "dataset", "caption", "cli/train/", "--json")
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert events[-1]["summary"].get("written", 0) + events[-1]["summary"].get("skipped", 0) == 3

    code, out, _ = run(capsys, caption_flags, "dataset", "lint", "cli/train/", "--name", TRIGGER)
    assert code == 0, out
    assert out.strip()
