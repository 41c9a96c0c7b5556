"""End to end through the SDK only: the three services as real processes, on a local store and on S3 (moto on
loopback): the demo's workflow, pause and resume, and a trainer killed mid-job and restarted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tistudio.trainer.v1 import trainer_pb2 as tr
from tistudio_client import Tistudio
from tistudio_client.demo_flow import DemoSettings, run_demo_flow
from tistudio_client.local import LocalTrio, TrioConfig
from tistudio_client.sample_data import write_sample_dataset

SMALL = DemoSettings(images=4, max_steps=6, every=3, preview_steps=2, sheet_cell=0)


def _trio(tmp_path: Path, models: dict[str, Path], store_url: str, env: dict[str, str] | None = None) -> LocalTrio:
    config = TrioConfig(
        store_url=store_url,
        caption_model=str(models["blip"]),
        sd_model=str(models["sd"]),
        clip_model=str(models["clip"]),
        metrics=False,
        cache_dir=str(tmp_path / "cache"),
        log_dir=tmp_path / "logs",
        extra_env={"TISTUDIO_DRAIN_SECONDS": "0", **(env or {})},
    )
    trio = LocalTrio(config)
    trio.start()
    trio.wait_serving()
    return trio


def _check_flow(result, out: Path) -> None:
    assert result.job.state == tr.JOB_STATE_SUCCEEDED and result.job.step == SMALL.max_steps
    steps = [e.progress.step for e in result.events if e.HasField("progress")]
    assert steps == sorted(set(steps)) and steps[-1] == SMALL.max_steps
    sequences = [e.sequence for e in result.events]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))  # none lost, none repeated
    assert sorted(p.name for p in (out / "embedding").rglob("*") if p.is_file()) == sorted(
        ["learned_embeds.safetensors", f"{SMALL.name}.pt", f"{SMALL.name}.safetensors"]
    )
    assert sorted(p.name for p in (out / "previews").iterdir()) == ["000003", "000006"]
    manifest = json.loads((out / "previews" / "000006" / "manifest.json").read_text())
    assert len(manifest["entries"]) == 2 * len(SMALL.preview_seeds) * 3  # prompts x seeds x weights
    for name in ("progress-seeds", "progress-weights", "final-exam"):
        assert (out / "sheets" / f"{name}.png").stat().st_size > 0
    assert (out / "loss.png").stat().st_size > 0 and (out / "lint-report.txt").read_text().startswith("Dataset lint")
    assert len((out / "loss.csv").read_text().splitlines()) == 1 + SMALL.max_steps


@pytest.fixture(scope="module")
def local_trio(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("e2e-local")
    trio = _trio(root, tiny_models, (root / "store").as_uri())
    yield trio, (root / "store").as_uri()
    assert set(trio.stop().values()) == {0}


def test_the_demo_workflow_on_the_local_store(local_trio, tmp_path):
    trio, store_url = local_trio
    with Tistudio(**trio.addresses, store_url=store_url) as client:
        result = run_demo_flow(client, tmp_path, SMALL, say=lambda _: None)
    _check_flow(result, tmp_path)


@pytest.mark.s3
def test_the_demo_workflow_on_s3(tmp_path, tiny_models, s3_store_url, monkeypatch):
    for name, value in s3_store_url.env.items():
        monkeypatch.setenv(name, value)  # the SDK opens the same bucket the services use
    trio = _trio(tmp_path, tiny_models, s3_store_url.url, s3_store_url.env)
    try:
        with Tistudio(**trio.addresses, store_url=s3_store_url.url) as client:
            result = run_demo_flow(client, tmp_path / "out", SMALL, say=lambda _: None)
    finally:
        assert set(trio.stop().values()) == {0}
    _check_flow(result, tmp_path / "out")


def _prepared_job_spec(client: Tistudio, tmp_path: Path, name: str, **fields) -> tr.TrainingSpec:
    write_sample_dataset(tmp_path / "photos", count=4)
    prepared = client.prepare_dataset(tmp_path / "photos", f"datasets/{name}", write_report=False)
    embedding = client.trainer.create_embedding(name=name, init_text="star", vectors_per_token=2).embedding
    values = dict(max_steps=60, width=32, height=32, batch_size=1, template="subject", save_every_steps=0)
    values |= dict(preview_every_steps=0, log_every_steps=1, learning_rate="0.005") | fields
    return tr.TrainingSpec(embedding=embedding.file, dataset=prepared.dataset, **values)


def test_pause_and_resume_lose_and_repeat_no_step(local_trio, tmp_path):
    trio, store_url = local_trio
    with Tistudio(**trio.addresses, store_url=store_url) as client:
        job = client.start(_prepared_job_spec(client, tmp_path, "p4use"))
        steps, states, paused = [], [], False
        for event in client.watch(job.job_id):
            if event.HasField("progress"):
                steps.append(event.progress.step)
                if event.progress.step >= 5 and not paused:
                    client.trainer.pause_job(job_id=job.job_id)
                    paused = True
            if event.HasField("state_changed"):
                states.append(event.state_changed.current)
                if event.state_changed.current == tr.JOB_STATE_PAUSED:
                    assert client.trainer.get_job(job_id=job.job_id).job.state == tr.JOB_STATE_PAUSED
                    client.trainer.resume_job(job_id=job.job_id)
        final = client.trainer.get_job(job_id=job.job_id).job
    assert tr.JOB_STATE_PAUSED in states and states[-1] == tr.JOB_STATE_SUCCEEDED
    assert steps == list(range(1, 61)) and final.step == 60


def test_a_killed_trainer_restarts_and_finishes_the_job_with_no_savepoint_lost(tmp_path, tiny_models):
    store_url = (tmp_path / "store").as_uri()
    trio = _trio(tmp_path, tiny_models, store_url)
    try:
        with Tistudio(**trio.addresses, store_url=store_url) as client:
            spec = _prepared_job_spec(client, tmp_path, "k1lled", max_steps=200, save_every_steps=10)
            job = client.start(spec)
            saved = []
            for event in client.watch(job.job_id):
                if event.HasField("savepoint_saved"):
                    saved.append(event.savepoint_saved)
                    if event.savepoint_saved.step >= 30:
                        break
            before = {s.manifest.key: client.store.get(s.manifest.key) for s in saved}
            before_files = {key: client.store.get(key) for s in saved for key in (s.embedding.key,)}
        assert trio.kill("trainer") != 0
        trio.restart("trainer")
        with Tistudio(**trio.addresses, store_url=store_url) as client:
            final = client.wait(job.job_id, timeout=600)
            assert final.state == tr.JOB_STATE_SUCCEEDED and final.step == 200
            assert {key: client.store.get(key) for key in before} == before  # every savepoint, intact
            assert {key: client.store.get(key) for key in before_files} == before_files
            events = list(client.watch(job.job_id))
    finally:
        trio.stop()
    resumed = [e.state_changed for e in events if e.HasField("state_changed")]
    assert any(change.reason.code == "RESUMED_AFTER_RESTART" for change in resumed)
