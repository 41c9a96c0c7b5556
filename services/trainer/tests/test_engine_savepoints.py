"""Savepoints: exact resume in a fresh session, the manifest written last (no manifest, no savepoint), damage
detected, state loadable with weights_only, a complete settings snapshot, loss.csv in A1111's columns, and
embedding files that diffusers' own loader reads."""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json

import pytest
import torch
from diffusers import StableDiffusionPipeline

from services.common.embeddings import read_embedding
from services.common.errors import InvalidArgument
from services.common.storage import LocalStore
from services.trainer.engine import (
    SavepointCorrupt,
    TrainingSession,
    TrainingSpec,
    create_embedding,
    latest_savepoint,
    list_savepoints,
    load_savepoint,
    read_loss_csv,
)
from services.trainer.engine.testing import tiny_spec, write_dataset
from services.trainer.schedule import LearnRateSchedule


class RecordingStore(LocalStore):
    """A local store that remembers the order of its writes."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.written: list[str] = []

    def put(self, key, data, *, content_type=None):
        self.written.append(key)
        return super().put(key, data, content_type=content_type)


@pytest.fixture
def store(tmp_path):
    store = RecordingStore(tmp_path)
    write_dataset(store, "ds/", 5)
    return store


# Every source of randomness on: random latents, flips, tag shuffle and dropout, noise offset; plus min-SNR,
# clipping by norm, an A1111 schedule that changes within the run, accumulation with a dropped group (5 images).
BUSY = dict(  # on top of tiny_spec()
    gradient_accumulation=2,
    learning_rate="0.05:2, 0.02:4, 0.01",
    latent_sampling="random",
    flip=True,
    shuffle_tags=True,
    tag_dropout=0.3,
    keep_tags=1,
    noise_offset=0.05,
    min_snr_gamma=5.0,
    gradient_clipping="norm",
    gradient_clip="0.5:3, 0.1",
    template="subject_filewords",
    save_every_steps=3,
    log_every_steps=2,
    extra_formats=("a1111_pt", "diffusers"),
)


def _start(components, store, spec, prefix="run/", **kwargs):
    embedding = kwargs.pop("embedding", None) or create_embedding(components, "subj3ct", "woman face", 3)
    return TrainingSession.prepare(spec, components, store, output_prefix=prefix, embedding=embedding, **kwargs)


def _optimizer_tensors(session):
    state = session.optimizer.state_dict()["state"][0]
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def test_resume_from_a_savepoint_in_a_fresh_session_is_bit_exact(components, store):
    spec = tiny_spec(**BUSY)
    embedding = create_embedding(components, "subj3ct", "woman face", 3)
    straight = _start(components, store, spec, "straight/", embedding=embedding)
    straight.run()

    first = _start(components, store, spec, "split/", embedding=embedding)
    assert first.run(until_step=3).savepoint.step == 3
    del first
    resumed = TrainingSession.prepare(
        spec, components, store, output_prefix="split/", resume=latest_savepoint(store, "split/")
    )
    assert resumed.step == 3
    resumed.run()

    assert torch.equal(resumed.vectors, straight.vectors)
    ours, theirs = _optimizer_tensors(resumed), _optimizer_tensors(straight)
    assert ours.keys() == theirs.keys() == {"step", "exp_avg", "exp_avg_sq"}
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert torch.equal(resumed.generator.get_state(), straight.generator.get_state())
    assert resumed.cursor.state() == straight.cursor.state()
    assert read_loss_csv(store, "split/") == read_loss_csv(store, "straight/")
    split_final, straight_final = latest_savepoint(store, "split/"), latest_savepoint(store, "straight/")
    assert split_final.embedding_sha256 == straight_final.embedding_sha256


def test_the_manifest_is_written_last_and_a_savepoint_without_one_does_not_exist(components, store):
    spec = tiny_spec(**(BUSY | dict(max_steps=3, save_every_steps=0)))
    _start(components, store, spec).run()
    folder = "run/savepoints/000003/"
    written = [k for k in store.written if k.startswith(folder)]
    assert written[-1] == folder + "manifest.json" and len(written) == 6
    assert [s.step for s in list_savepoints(store, "run/")] == [3]
    # A crash between the files and the manifest: the files are there, the savepoint is not.
    for key in written[:-1]:
        store.put(key.replace("000003", "000004"), store.get(key))
    assert [s.step for s in list_savepoints(store, "run/")] == [3]


def test_damage_is_detected_and_state_loads_weights_only(components, store):
    spec = tiny_spec(**(BUSY | dict(max_steps=3, save_every_steps=0)))
    _start(components, store, spec).run()
    savepoint = latest_savepoint(store, "run/")
    raw = torch.load(io.BytesIO(store.get(savepoint.state_key)), weights_only=True)
    assert raw["step"] == 3 and raw["cursor"] == {"epoch": 3, "batch": 0}
    assert set(raw["optimizer"]["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    embedding, state = load_savepoint(store, savepoint)
    assert torch.equal(embedding.vectors[0], state.vectors) and embedding.step == state.step == 3
    damaged = bytearray(store.get(savepoint.state_key))
    damaged[-20] ^= 0xFF
    store.put(savepoint.state_key, bytes(damaged))
    with pytest.raises(SavepointCorrupt):
        load_savepoint(store, savepoint)


def test_settings_snapshot_and_file_metadata_are_complete(components, store):
    spec = tiny_spec(**(BUSY | dict(max_steps=3, save_every_steps=0)))
    session = _start(components, store, spec, settings_extra={"preview_seed": 7})
    session.run()
    savepoint = latest_savepoint(store, "run/")
    settings = json.loads(store.get(savepoint.settings_key))
    assert TrainingSpec.from_record(settings["spec"]) == spec  # every knob, shuffle/dropout/sampling included
    assert settings["model"]["sha256"] == components.fingerprint.sha256
    assert settings["dataset"]["images"] == 5 and len(settings["dataset"]["sha256"]) == 64
    assert settings["plan"] == {
        "batch_size": 2,
        "gradient_accumulation": 2,
        "samples_per_step": 4,
        "steps_per_epoch": 1,
        "final_step": 3,
        "ends_early": False,
    }
    assert settings["job"] == {"preview_seed": 7}
    embedding, _ = read_embedding(store.get(savepoint.embedding_key), filename="subj3ct.safetensors")
    meta = embedding.metadata
    assert (meta["trigger"], meta["vectors"], meta["step"]) == ("subj3ct", "3", "3")
    assert meta["base_model_sha256"] == components.fingerprint.sha256 and meta["init_text"] == "woman face"
    assert meta["learning_rate"] == spec.learning_rate and meta["template"] == "subject_filewords"
    assert meta["dataset_sha256"] == settings["dataset"]["sha256"] and meta["tool_version"].startswith("tistudio")


def test_loss_csv_has_a1111s_columns_and_a_resume_drops_later_rows(components, store):
    spec = tiny_spec(**(BUSY | dict(batch_size=1, gradient_accumulation=2, save_every_steps=2)))
    _start(components, store, spec).run()  # 5 images, batch 1 x 2: 2 steps per epoch
    text = store.get("run/loss.csv").decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["step", "epoch", "epoch_step", "loss", "learn_rate"]
    assert [r[:3] for r in rows[1:]] == [[str(s), str((s - 1) // 2), str((s - 1) % 2)] for s in range(1, 7)]
    assert all(len(r[3].split(".")[1]) == 7 for r in rows[1:])  # f"{loss:.7f}", as A1111 writes it
    schedule = LearnRateSchedule.parse(spec.learning_rate, 6)
    assert [float(r[4]) for r in rows[1:]] == [schedule.rate_at(s) for s in range(6)]
    # Resuming from step 2 in the same folder: rows 3..6 are rewritten, not appended twice.
    session = TrainingSession.prepare(
        spec, components, store, output_prefix="run/", resume=list_savepoints(store, "run/")[0]
    )
    assert [r.step for r in session.loss_rows] == [1, 2]
    session.run()
    assert store.get("run/loss.csv").decode() == text


def test_resume_refuses_a_changed_data_stream_but_allows_more_steps(components, store):
    spec = tiny_spec(**(BUSY | dict(max_steps=3, save_every_steps=0)))
    _start(components, store, spec).run()
    savepoint = latest_savepoint(store, "run/")
    with pytest.raises(InvalidArgument) as raised:
        TrainingSession.prepare(spec.replace(batch_size=1), components, store, output_prefix="run/", resume=savepoint)
    assert raised.value.reason == "RESUME_MISMATCH" and raised.value.field == "spec.batch_size"
    longer = TrainingSession.prepare(
        spec.replace(max_steps=5, learning_rate="0.001"), components, store, output_prefix="run/", resume=savepoint
    )
    assert longer.run().step == 5
    with pytest.raises(InvalidArgument) as done:
        TrainingSession.prepare(spec, components, store, output_prefix="run/", resume=latest_savepoint(store, "run/"))
    assert done.value.reason == "NOTHING_TO_TRAIN"


def test_an_embedding_with_a_step_continues_from_it_as_a1111(components, store):
    embedding = dataclasses.replace(create_embedding(components, "subj3ct", "woman", 2), step=4)
    spec = tiny_spec(**(BUSY | dict(learning_rate="0.05:2, 0.02:5, 0.01", save_every_steps=0)))
    session = _start(components, store, spec, embedding=embedding)
    assert session.step == 4
    session.run()
    assert [(r.step, r.learn_rate) for r in read_loss_csv(store, "run/")] == [(5, 0.02), (6, 0.01)]


def test_savepoint_files_load_in_diffusers(components, store):
    spec = tiny_spec(**(BUSY | dict(max_steps=2, save_every_steps=0)))
    outcome = _start(components, store, spec).run()
    savepoint = outcome.savepoint
    files = {f.format: f for f in savepoint.files}
    trained = outcome.embedding.vectors[0]
    for fmt, token in (("safetensors", "subj3ct"), ("a1111_pt", "subj3ct"), ("diffusers", None)):
        pipe = StableDiffusionPipeline(
            vae=components.vae,
            text_encoder=copy.deepcopy(components.text_encoder),
            tokenizer=copy.deepcopy(components.tokenizer),
            unet=components.unet,
            scheduler=components.scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        local = store.root + "/" + files[fmt].key
        pipe.load_textual_inversion(local, token=token) if token else pipe.load_textual_inversion(local)
        names = ["subj3ct", "subj3ct_1", "subj3ct_2"]
        rows = pipe.text_encoder.get_input_embeddings().weight[pipe.tokenizer.convert_tokens_to_ids(names)]
        assert torch.equal(rows, trained), fmt
