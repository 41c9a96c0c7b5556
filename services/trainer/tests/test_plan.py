"""The training plan: counts, schedule segments, prompts, and every refusal with its code and field."""

from __future__ import annotations

import pytest
import torch

from services.common.diagnostics import Severity
from services.common.embeddings import Embedding
from services.common.errors import FailedPrecondition
from services.common.storage import LocalStore
from services.trainer.engine import create_embedding
from services.trainer.engine.testing import CAPTIONS, tiny_components, write_dataset
from services.trainer.plan import plan_request, require_ok

BASE = {"model": "models/tiny-sd", "embedding_key": "embeddings/subj3ct.safetensors", "dataset": "ds/"}


@pytest.fixture
def components(tiny_models):
    return tiny_components(tiny_models["sd"])


@pytest.fixture
def embedding(components):
    return create_embedding(components, "subj3ct", "woman", 2)


def _store(tmp_path, images: int) -> LocalStore:
    store = LocalStore(tmp_path)
    write_dataset(store, "ds/", images, size=16)
    return store


def _plan(store, components, embedding, recipe=None, **fields):
    return plan_request({**BASE, **fields}, recipe, store=store, components=components, embedding=embedding)


def _codes(plan, severity=None):
    return {(d.code, d.field) for d in plan.diagnostics if severity is None or d.severity is severity}


def test_full_cycle_counts(tmp_path, components, embedding):
    plan = _plan(_store(tmp_path, 12), components, embedding, "seed-a", batch_size=6, gradient_accumulation=2)
    assert plan.ok, plan.diagnostics
    assert (plan.images, plan.samples_per_step, plan.steps_per_epoch) == (12, 12, 1)
    assert (plan.start_step, plan.end_step, plan.epochs) == (0, 3000, 3000.0)
    assert plan.recipe == "seed-a" and plan.preview_every_steps == 50
    assert [(s.rate, s.start_step, s.end_step) for s in plan.schedule][:2] == [(0.05, 0, 10), (0.02, 10, 20)]
    assert plan.schedule[-1].end_step == 3000
    assert plan.model.name == "tiny-sd" and plan.model.family == "sd1" and plan.model.embedding_dims == embedding.dims
    assert plan.embedding.name == "subj3ct" and plan.embedding.vectors == 2 and plan.embedding.init_text == "woman"
    require_ok(plan)


def test_images_left_over_each_epoch_are_noted(tmp_path, components, embedding):
    plan = _plan(_store(tmp_path, 13), components, embedding, batch_size=6, gradient_accumulation=2, max_steps=10)
    assert plan.ok and plan.steps_per_epoch == 1 and plan.epochs == 10.0
    (note,) = [d for d in plan.diagnostics if d.code == "IMAGES_LEFT_OVER"]
    assert (
        note.severity is Severity.INFO
        and "1 of 13" in note.message
        and "batch_size 1 x gradient_accumulation 13" in note.suggestion
    )
    assert note.field == "spec.batch_size"


def test_example_prompts_and_token_count(tmp_path, components, embedding):
    store = _store(tmp_path, 4)
    plan = _plan(store, components, embedding, template="photo_filewords")
    assert plan.example_prompts == tuple(f"a photo of subj3ct, {caption}" for caption in CAPTIONS[:3])
    dropped = _plan(store, components, embedding, "seed-a")  # tag dropout: drawn, but from the same template
    assert len(dropped.example_prompts) == 3 and all(
        p.startswith("a photo of subj3ct") for p in dropped.example_prompts
    )
    four = create_embedding(components, "subj3ct", "woman", 4)
    more = _plan(store, components, four, template="photo_filewords")
    assert more.max_prompt_tokens == plan.max_prompt_tokens + 2  # each extra vector is one token


def test_long_prompts_warn(tmp_path, components, embedding):
    store = _store(tmp_path, 2)
    store.put("ds/001.txt", ", ".join(["red hat"] * 60).encode())
    plan = _plan(store, components, embedding)
    assert plan.ok and plan.max_prompt_tokens > 75
    (warning,) = [d for d in plan.diagnostics if d.code == "PROMPT_TOO_LONG"]
    assert warning.severity is Severity.WARNING and warning.key == "ds/001.png"


def test_schedule_ending_early_warns_with_the_step(tmp_path, components, embedding):
    plan = _plan(_store(tmp_path, 2), components, embedding, learning_rate="0.05:10, 0.01:40", max_steps=100)
    assert plan.ok and plan.end_step == 40
    (warning,) = [d for d in plan.diagnostics if d.code == "SCHEDULE_ENDS_EARLY"]
    assert warning.severity is Severity.WARNING and warning.field == "spec.learning_rate" and "40" in warning.message


def test_every_refusal_is_collected(tmp_path, components):
    store = _store(tmp_path, 4)
    wide = Embedding("woman", torch.zeros(2, 1024), step=0)
    plan = _plan(
        store,
        components,
        wide,
        batch_size=5,
        width=100,
        height=36,
        learning_rate="0.05:oops",
        template="custom",
        template_text="a photo of a cat",
    )
    assert not plan.ok
    assert _codes(plan, Severity.ERROR) == {
        ("BATCH_LARGER_THAN_DATASET", "spec.batch_size"),
        ("RESOLUTION_NOT_MULTIPLE_OF_8", "spec.width"),
        ("RESOLUTION_NOT_MULTIPLE_OF_8", "spec.height"),
        ("SCHEDULE_INVALID", "spec.learning_rate"),
        ("TEMPLATE_WITHOUT_NAME", "spec.template_text"),
        ("NAME_IS_A_TOKEN", "spec.embedding"),
        ("EMBEDDING_WIDTH_MISMATCH", "spec.embedding"),
    }
    batch = next(d for d in plan.diagnostics if d.code == "BATCH_LARGER_THAN_DATASET")
    assert (
        "5" in batch.message
        and "4 images" in batch.message
        and "batch_size 4 x gradient_accumulation 1" in (batch.suggestion)
    )
    with pytest.raises(FailedPrecondition) as raised:
        require_ok(plan)
    assert raised.value.reason == "PLAN_HAS_ERRORS" and "spec.batch_size" in raised.value.message
    assert "EMBEDDING_WIDTH_MISMATCH" in raised.value.metadata["codes"]


def test_no_images(tmp_path, components, embedding):
    plan = _plan(LocalStore(tmp_path), components, embedding)
    assert _codes(plan, Severity.ERROR) == {("NO_IMAGES", "spec.dataset")}
    assert plan.images == 0 and plan.example_prompts == ()


def test_accumulation_beyond_the_dataset(tmp_path, components, embedding):
    plan = _plan(_store(tmp_path, 5), components, embedding, batch_size=2, gradient_accumulation=3)
    assert _codes(plan, Severity.ERROR) == {("ACCUMULATION_LARGER_THAN_DATASET", "spec.gradient_accumulation")}


def test_nothing_to_train_when_resuming_at_max_steps(tmp_path, components):
    done = create_embedding(components, "subj3ct", "woman", 2)
    done = Embedding(done.name, done.vectors, step=3000, metadata=done.metadata)
    plan = _plan(_store(tmp_path, 2), components, done, "seed-a")
    (error,) = plan.errors
    assert error.code == "NOTHING_TO_TRAIN" and error.field == "spec.max_steps" and "3000" in error.message
    assert "max_steps" in error.suggestion and plan.start_step == plan.end_step == 3000 and plan.epochs == 0.0


def test_template_none_without_the_name_in_captions_is_refused(tmp_path, components, embedding):
    plan = _plan(_store(tmp_path, 2), components, embedding, template="none")
    assert _codes(plan, Severity.ERROR) == {("TEMPLATE_WITHOUT_NAME", "spec.template")}


def test_resuming_lists_the_remaining_segments(tmp_path, components):
    base = create_embedding(components, "subj3ct", "woman", 2)
    resumed = Embedding(base.name, base.vectors, step=15, metadata=base.metadata)
    plan = _plan(_store(tmp_path, 2), components, resumed, "seed-a", max_steps=100)
    assert plan.start_step == 15 and [(s.start_step, s.end_step) for s in plan.schedule[:2]] == [(15, 20), (20, 60)]
    assert plan.steps_per_epoch == 2 and plan.epochs == 42.5  # 85 steps left at batch 1 over 2 images
