"""Recipes and spec resolution: request field > recipe > family size > TrainingSpec default."""

from __future__ import annotations

import pytest

from services.common.diagnostics import Severity
from services.common.errors import InvalidArgument
from services.trainer.engine import TrainingSpec
from services.trainer.recipes import (
    DEFAULT_PREVIEW_EVERY_STEPS,
    RECIPES,
    collect_spec,
    full_cycle,
    resolve_preview_every_steps,
    resolve_spec,
)
from services.trainer.schedule import parse_schedule

BASE = {"model": "tiny", "embedding_key": "embeddings/x.safetensors", "dataset": "ds/"}


def test_seed_a_holds_the_guide_numbers():
    spec = resolve_spec(BASE, "seed-a")
    assert spec.learning_rate == "0.05:10, 0.02:20, 0.01:60, 0.005:200, 0.002:500, 0.001:3000, 0.0005"
    assert (spec.max_steps, spec.save_every_steps, spec.tag_dropout, spec.shuffle_tags) == (3000, 50, 0.1, False)
    assert spec.latent_sampling == "deterministic" and (spec.width, spec.height) == (512, 512)
    assert spec.template_text == "a photo of [name], [filewords]"
    assert resolve_preview_every_steps({}, "seed-a") == 50
    assert RECIPES["seed-a"].family == "sd1" and set(RECIPES["seed-a"].sources) >= set(RECIPES["seed-a"].values) - {
        "lr_scheduler"
    }


def test_seed_b_is_the_small_gpu_recipe():
    spec = resolve_spec(BASE, "seed-b")
    assert (spec.batch_size, spec.gradient_accumulation, spec.width, spec.height, spec.max_steps) == (
        1,
        1,
        256,
        256,
        2000,
    )
    schedule = parse_schedule(spec.lr_scheduler, spec.learning_rate, spec.max_steps)
    assert schedule.spans[-1] == (1500, 2000, 5e-6) and not schedule.ends_early
    assert resolve_preview_every_steps({}, "seed-b") == DEFAULT_PREVIEW_EVERY_STEPS


def test_diffusers_sdxl_is_the_sdxl_example_with_its_scaled_rate():
    recipe = RECIPES["diffusers-sdxl"]
    spec = resolve_spec(BASE, "diffusers-sdxl")
    assert recipe.family == "sdxl" and set(recipe.sources) == set(recipe.values)
    assert (spec.batch_size, spec.gradient_accumulation, spec.width, spec.max_steps) == (1, 4, 768, 500)
    schedule = parse_schedule(spec.lr_scheduler, spec.learning_rate, spec.max_steps)
    assert schedule.rate_at(0) == schedule.rate_at(499) == 5e-4 * 1 * 4  # --scale_lr: lr x batch x accumulation


def test_precedence_request_over_recipe_over_family_over_default():
    spec = resolve_spec({**BASE, "max_steps": 100, "tag_dropout": None, "preview_every_steps": 7}, "seed-a")
    assert spec.max_steps == 100  # request
    assert spec.tag_dropout == 0.1  # None means unset: the recipe's
    assert spec.seed == TrainingSpec(**BASE).seed  # default
    assert (resolve_spec(BASE, None, family_size=768).width, resolve_spec(BASE, "seed-b", family_size=768).width) == (
        768,
        256,
    )
    assert resolve_spec(BASE, None).width == 512
    assert resolve_preview_every_steps({"preview_every_steps": 0}, "seed-a") == 0


def test_own_template_lines_replace_the_recipe_template():
    spec = resolve_spec({**BASE, "template_text": "[name] on a table"}, "seed-a")
    assert spec.template == "custom" and spec.template_text == "[name] on a table"


def test_unknown_recipe_lists_the_names():
    with pytest.raises(InvalidArgument) as raised:
        resolve_spec(BASE, "seed-z")
    assert raised.value.field == "spec.recipe" and "seed-a" in raised.value.message and "seed-b" in raised.value.message


def test_unknown_field_is_refused():
    with pytest.raises(InvalidArgument) as raised:
        resolve_spec({**BASE, "max_step": 3}, None)
    assert raised.value.field == "spec" and "max_step" in raised.value.message


def test_collect_spec_reports_every_refused_field():
    fields = {
        **BASE,
        "width": 100,
        "height": 50,
        "learning_rate": "0.05:x",
        "template": "custom",
        "template_text": "a photo of a cat",
    }
    spec, found = collect_spec(fields, "seed-q")
    assert spec is not None
    got = {(d.code, d.field) for d in found}
    assert got == {
        ("RECIPE_UNKNOWN", "spec.recipe"),
        ("RESOLUTION_NOT_MULTIPLE_OF_8", "spec.width"),
        ("RESOLUTION_NOT_MULTIPLE_OF_8", "spec.height"),
        ("SCHEDULE_INVALID", "spec.learning_rate"),
        ("TEMPLATE_WITHOUT_NAME", "spec.template_text"),
    }
    assert all(d.severity is Severity.ERROR for d in found)


def test_collect_spec_without_a_dataset_gives_no_spec():
    spec, found = collect_spec({"model": "tiny", "embedding_key": "", "dataset": ""}, None)
    assert spec is None and found[-1].field == "spec.dataset"


@pytest.mark.parametrize(
    ("images", "pair"),
    [(12, (6, 2)), (14, (7, 2)), (16, (8, 2)), (18, (9, 2)), (21, (7, 3)), (24, (8, 3)), (13, (1, 13)), (4, (4, 1))],
)
def test_full_cycle_matches_the_guides(images, pair):
    assert full_cycle(images) == pair
