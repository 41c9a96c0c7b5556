"""The loop's semantics step by step: the learning-rate schedule, gradient clipping (its value a schedule too),
accumulation and epochs, stop requests, non-finite detection, OOM advice, v-prediction, and learning itself."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from services.common.errors import InvalidArgument
from services.common.prompts import PromptTokenizer, TextConditioner
from services.common.storage import LocalStore
from services.trainer.engine import (
    StopRequest,
    TrainingDiverged,
    TrainingEvents,
    TrainingOutOfMemory,
    TrainingSession,
    TrainingSpec,
    create_embedding,
    list_savepoints,
    read_loss_csv,
)
from services.trainer.engine import loop as loop_module
from services.trainer.engine.objective import Noised, NoiseSchedule, add_noise, loss_per_sample
from services.trainer.engine.testing import tiny_spec, write_dataset
from services.trainer.schedule import LearnRateSchedule, parse_schedule


@pytest.fixture
def store(tmp_path):
    store = LocalStore(tmp_path)
    write_dataset(store, "ds/", 4)
    return store


def _spec(**changes) -> TrainingSpec:
    return tiny_spec(**(dict(template="photo_filewords", save_every_steps=0, log_every_steps=2) | changes))


def _session(components, store, spec, **kwargs) -> TrainingSession:
    embedding = kwargs.pop("embedding", None) or create_embedding(components, "subj3ct", "woman", 2)
    return TrainingSession.prepare(spec, components, store, output_prefix="run/", embedding=embedding, **kwargs)


class Recorder(TrainingEvents):
    def __init__(self) -> None:
        self.steps, self.savepoints, self.phases = [], [], []

    def on_step(self, report):
        self.steps.append(report)

    def on_savepoint(self, savepoint):
        self.savepoints.append(savepoint)

    def on_phase(self, report):
        self.phases.append(report.phase)


def test_a1111_schedule_sets_each_steps_rate_and_a_closed_schedule_ends_early(components, store):
    spec = _spec(learning_rate="0.05:2, 0.02:4, 0.01:5", max_steps=8)
    session = _session(components, store, spec)
    events = Recorder()
    outcome = session.run(events=events)
    schedule = LearnRateSchedule.parse(spec.learning_rate, 8)
    assert (outcome.status, outcome.step, outcome.final_step, outcome.ends_early) == ("completed", 5, 5, True)
    rows = read_loss_csv(store, "run/")
    assert [r.learn_rate for r in rows] == [schedule.rate_at(s) for s in range(5)] == [0.05, 0.05, 0.02, 0.02, 0.01]
    assert [r.step for r in rows] == [1, 2, 3, 4, 5]
    assert [r.lr for r in events.steps] == [0.05, 0.02, 0.01]
    assert events.steps[-1].losses == (pytest.approx(rows[-1].loss, abs=1e-7),)  # the CSV keeps 7 decimals
    assert session.optimizer.param_groups[0]["lr"] == 0.01
    assert [s.reason for s in events.savepoints] == ["final"]


def test_warmup_cosine_rates_match_the_schedule(components, store):
    spec = _spec(lr_scheduler="cosine", learning_rate="0.02", warmup_steps=2, max_steps=5)
    _session(components, store, spec).run()
    schedule = parse_schedule("cosine", "0.02", 5, warmup_steps=2)
    assert [r.learn_rate for r in read_loss_csv(store, "run/")] == [schedule.rate_at(s) for s in range(5)]


@pytest.mark.parametrize("mode", ["value", "norm"])
def test_clipping_uses_the_clip_schedule_each_step(components, store, monkeypatch, mode):
    seen = []
    real_clip = loop_module.clip_gradient

    def recording_clip(trained, clip_mode, value):
        real_clip(trained, clip_mode, value)
        (vectors,) = trained
        size = vectors.grad.abs().max() if clip_mode == "value" else vectors.grad.norm()
        seen.append((clip_mode, value, float(size)))

    monkeypatch.setattr(loop_module, "clip_gradient", recording_clip)
    spec = _spec(gradient_clipping=mode, gradient_clip="1e-4:2, 1e-5:4", max_steps=6, learning_rate="0.05")
    _session(components, store, spec).run()
    clip = LearnRateSchedule.parse("1e-4:2, 1e-5:4", 6)
    assert [(m, v) for m, v, _ in seen] == [(mode, clip.value_at(s)) for s in range(6)]  # past its end: 1e-5 holds
    assert all(size <= value * (1 + 1e-5) for _, value, size in seen)


def test_accumulation_averages_micro_batches_and_epochs_drop_incomplete_groups(components, tmp_path):
    store = LocalStore(tmp_path)
    write_dataset(store, "ds/", 6)  # batch 2: 3 batches; accumulation 2: one complete group, the 3rd batch dropped
    session = _session(components, store, _spec(batch_size=2, gradient_accumulation=2, max_steps=3))
    micro = []
    original = session.micro_batch_loss

    def spy(batch, pred):
        loss = original(batch, pred)
        micro.append(loss.item())
        return loss

    session.micro_batch_loss = spy
    session.run()
    assert session.plan.steps_per_epoch == 1 and session.plan.batches_per_epoch == 2
    assert session.cursor.state() == {"epoch": 3, "batch": 0}  # 3 steps x 2 micro-batches, 2 per epoch
    rows = read_loss_csv(store, "run/")
    assert len(micro) == 6
    for row, pair in zip(rows, zip(micro[::2], micro[1::2], strict=True), strict=True):
        assert row.loss == pytest.approx(sum(pair) / 2, abs=1e-6)  # A1111: sum of loss / gradient_step
    assert [(r.step, r.epoch, r.epoch_step) for r in rows] == [(1, 0, 0), (2, 1, 0), (3, 2, 0)]


def test_pause_saves_first_and_cancel_does_not(components, store):
    session = _session(components, store, _spec(max_steps=6))
    events = Recorder()
    outcome = session.run(events=events, should_stop=lambda: StopRequest("pause") if session.step == 3 else None)
    assert (outcome.status, outcome.step, outcome.savepoint.step, outcome.savepoint.reason) == ("paused", 3, 3, "pause")
    assert [r.step for r in read_loss_csv(store, "run/")] == [1, 2, 3]
    cancelled = session.run(should_stop=lambda: StopRequest("cancel") if session.step == 5 else None)
    assert (cancelled.status, cancelled.step, cancelled.savepoint) == ("cancelled", 5, None)
    assert [s.step for s in list_savepoints(store, "run/")] == [3]
    assert [r.step for r in read_loss_csv(store, "run/")] == [1, 2, 3, 4, 5]
    assert "stopped" in events.phases


def test_until_step_keeps_the_place_with_a_savepoint(components, store):
    session = _session(components, store, _spec(max_steps=6, save_every_steps=0))
    outcome = session.run(until_step=2)
    assert (outcome.status, outcome.step, outcome.savepoint.reason) == ("until_step", 2, "until_step")
    assert session.run().status == "completed" and session.step == 6
    with pytest.raises(InvalidArgument):
        session.run(until_step=6)


def test_until_step_on_a_save_boundary_saves_once(components, store):
    events = Recorder()
    outcome = _session(components, store, _spec(max_steps=6, save_every_steps=2)).run(until_step=4, events=events)
    assert [(s.step, s.reason) for s in events.savepoints] == [(2, "interval"), (4, "interval")]
    assert outcome.savepoint.step == 4


def test_a_nan_loss_is_caught_at_the_next_report_naming_the_first_bad_step(components, store):
    session = _session(components, store, _spec(max_steps=8, log_every_steps=4, save_every_steps=2))
    calls = []
    original = session.micro_batch_loss

    def poisoned(batch, pred):
        calls.append(1)
        loss = original(batch, pred)
        return loss * float("nan") if len(calls) == 3 else loss

    session.micro_batch_loss = poisoned
    with pytest.raises(TrainingDiverged) as raised:
        session.run()
    error = raised.value
    assert (error.what, error.first_bad_step, error.detected_at) == ("loss", 3, 4)
    assert error.last_good.step == 2 and error.reason == "TRAINING_DIVERGED"
    assert [s.step for s in list_savepoints(store, "run/")] == [2]  # nothing bad was saved


def test_an_exploding_embedding_is_caught_even_with_a_finite_loss(components, store):
    session = _session(components, store, _spec(max_steps=4, log_every_steps=4))
    original = session.optimizer.step

    def overflowing_step(*args, **kwargs):
        result = original(*args, **kwargs)
        with torch.no_grad():
            session.vectors[0, 0] = float("inf")  # an update that overflowed float32
        return result

    session.optimizer.step = overflowing_step
    with pytest.raises(TrainingDiverged) as raised:
        session.run()
    assert (raised.value.what, raised.value.first_bad_step, raised.value.detected_at) == ("embedding", 1, 4)


def test_out_of_memory_becomes_a_typed_error_with_advice(components, store):
    session = _session(components, store, _spec(batch_size=4, max_steps=2))
    session.spec = session.spec.replace(width=512, height=512)  # the advice reads the spec: pretend a 512 px run

    def oom(batch, pred):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    session.micro_batch_loss = oom
    with pytest.raises(TrainingOutOfMemory) as raised:
        session.run()
    message = raised.value.message
    assert raised.value.reason == "OUT_OF_MEMORY"
    assert "batch_size 2 with gradient_accumulation 2" in message and "width/height 384" in message


def test_v_prediction_models_train_on_the_velocity_target(components, store, monkeypatch):
    seen = []

    def recording_add_noise(latents, schedule, prediction_type, generator, **kwargs):
        seen.append(prediction_type)
        return add_noise(latents, schedule, prediction_type, generator, **kwargs)

    monkeypatch.setattr(loop_module, "add_noise", recording_add_noise)
    v_model = dataclasses.replace(components, prediction_type="v_prediction")
    outcome = _session(v_model, store, _spec(max_steps=2)).run()
    assert seen == ["v_prediction", "v_prediction"] and outcome.loss is not None


def test_the_embedding_learns_on_a_fixed_batch(components):
    """Fixed latents, noise and timesteps; the target is what the UNet predicts for a known teacher embedding, so the
    only way down is to move the vectors toward it through the splice: the loss falls far below its start."""
    tokenizer = components.tokenizer
    table = components.text_encoder.get_input_embeddings().weight
    tokens = PromptTokenizer(tokenizer, {"subj3ct": 2}).batch(["a photo of subj3ct", "subj3ct"])
    conditioner = TextConditioner(components.text_encoder)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 8, 8, generator=generator)
    noised = add_noise(latents, NoiseSchedule(components.scheduler.config, torch.device("cpu")), "epsilon", generator)
    teacher = table[tokenizer.convert_tokens_to_ids(["red</w>", "circle</w>"])].detach()
    with torch.no_grad():
        target = components.unet(noised.noisy, noised.timesteps, conditioner(tokens, teacher)).sample
    fixed = Noised(noised.noisy, target, noised.timesteps)
    vectors = torch.nn.Parameter(table[tokenizer.convert_tokens_to_ids(["blue</w>", "dog</w>"])].detach().clone())
    optimizer = torch.optim.AdamW([vectors], lr=0.01, weight_decay=0.0)
    losses = []
    for _ in range(30):
        pred = components.unet(fixed.noisy, fixed.timesteps, conditioner(tokens, vectors)).sample
        loss = loss_per_sample(pred, fixed).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def test_prompts_without_the_trigger_are_reported(components, store):
    session = _session(components, store, _spec(template="none"))  # "picture": A1111's template without [name]
    codes = {note.code: note for note in session.notes}
    assert codes["TRIGGER_NOT_IN_PROMPT"].severity.name == "ERROR"
    assert not any(n.code == "TRIGGER_NOT_IN_PROMPT" for n in _session(components, store, _spec()).notes)
