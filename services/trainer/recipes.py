"""Built-in recipes: the users' own numbers as partial training specs, and how a request, a recipe and the
defaults resolve into one `TrainingSpec`.

    spec = resolve_spec({"model": "sd15", "embedding_key": "embeddings/anna.safetensors", "dataset": "ds/anna/",
                         "max_steps": 1500}, "seed-a", family_size=512)

Precedence, field by field: the request's value > the recipe's > the family's training size (width/height only)
> `TrainingSpec`'s defaults (A1111's Train tab). A request field is "set" when it is present and not None, so the
servicer passes only the optional fields the caller filled in.

Batching is not chosen for the caller: without batch_size/gradient_accumulation from the request or the recipe a
run trains at A1111's 1 x 1, which uses every image every epoch and fits any GPU. A full-cycle default (batch x
accumulation = image count) could ask for a batch the GPU cannot hold, and the image count is not known here; the
plan suggests the full-cycle pair (`full_cycle`) instead wherever images sit out or the batch is too large.

Where the numbers come from (`/work/shared/design/anchors.md`, "The seeds' recipes", the users' guides):
- seed-a is the users' guide recipe, number for number: its schedule, 3000 steps, a preview and a savepoint every
  50 steps, tag dropout 0.1 without shuffle, deterministic latents, `a photo of [name], [filewords]`
  (`photo_filewords`), vanilla SD1.5 at 512x512. With max_steps 3000 the schedule's `0.001:3000` piece reaches the
  end, so its open `0.0005` applies only when max_steps is raised above 3000.
- seed-b is the small-GPU recipe: its schedule, batch 1 (and so accumulation 1), training at 256x256 from 512 px
  images, and 2000 steps because its users report that little changes after step 2000 (the schedule's last two
  pieces, 5e-5 from 1500 and 5e-6 after, are there for longer runs). Its previews/savepoints keep the defaults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from services.common.diagnostics import Diagnostic, Severity
from services.common.errors import InvalidArgument
from services.trainer.engine.spec import TrainingSpec

__all__ = [
    "DEFAULT_PREVIEW_EVERY_STEPS",
    "JOB_FIELDS",
    "RECIPES",
    "Recipe",
    "collect_spec",
    "full_cycle",
    "get_recipe",
    "resolve_preview_every_steps",
    "resolve_spec",
]

DEFAULT_PREVIEW_EVERY_STEPS = 500  # A1111's "Save an image to log directory every N steps" default
# Settings the job layer acts on that are no field of the engine's TrainingSpec; resolve_spec leaves them out.
JOB_FIELDS = frozenset({"preview_every_steps"})
MAX_FULL_CYCLE_BATCH = 10  # the guides' pairs keep the batch at 10 or below (12 = 6x2, 24 = 8x3)
_SPEC_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainingSpec))
# When a field is refused, these are reset together so the rest of the spec can still be checked.
_GROUPS = {
    "template": ("template", "template_text"),
    "template_text": ("template", "template_text"),
    "learning_rate": ("learning_rate", "lr_scheduler", "warmup_steps", "lr_cycles"),
    "lr_scheduler": ("learning_rate", "lr_scheduler", "warmup_steps", "lr_cycles"),
    "warmup_steps": ("learning_rate", "lr_scheduler", "warmup_steps", "lr_cycles"),
    "gradient_clip": ("gradient_clip", "gradient_clipping"),
    "gradient_clipping": ("gradient_clip", "gradient_clipping"),
    "shuffle_tags": ("shuffle_tags", "keep_tags", "tag_dropout"),
    "keep_tags": ("shuffle_tags", "keep_tags", "tag_dropout"),
    "tag_dropout": ("shuffle_tags", "keep_tags", "tag_dropout"),
}
_REQUIRED = ("model", "embedding_key", "dataset")


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    values: Mapping[str, Any]  # TrainingSpec field values; every other field keeps its default
    preview_every_steps: int | None  # None: the default (DEFAULT_PREVIEW_EVERY_STEPS)
    family: str  # the model family the numbers were found on: "sd1" | "sd2" | "sdxl"
    sources: Mapping[str, str]  # field -> where the number comes from


RECIPES: Mapping[str, Recipe] = MappingProxyType(
    {
        "seed-a": Recipe(
            name="seed-a",
            description="the users' guide recipe: SD1.5 at 512x512, 3000 steps, a preview and savepoint every 50",
            values=MappingProxyType(
                {
                    "lr_scheduler": "a1111",
                    "learning_rate": "0.05:10, 0.02:20, 0.01:60, 0.005:200, 0.002:500, 0.001:3000, 0.0005",
                    "max_steps": 3000,
                    "save_every_steps": 50,
                    "tag_dropout": 0.1,
                    "shuffle_tags": False,
                    "latent_sampling": "deterministic",
                    "template": "photo_filewords",
                    "width": 512,
                    "height": 512,
                }
            ),
            preview_every_steps=50,
            family="sd1",
            sources=MappingProxyType(
                {
                    "learning_rate": "users' guide schedule (anchors.md, Recipe A)",
                    "max_steps": "users' guide: 3000 steps",
                    "save_every_steps": "users' guide: savepoint every 50",
                    "preview_every_steps": "users' guide: preview every 50",
                    "tag_dropout": "users' guide: tag dropout 0.1",
                    "shuffle_tags": "users' guide: no shuffle",
                    "latent_sampling": "users' guide: deterministic latents",
                    "template": "users' guide: 'a photo of [name], [filewords]' (photo_filewords)",
                    "width": "users' guide: vanilla SD1.5 at 512x512",
                    "height": "users' guide: vanilla SD1.5 at 512x512",
                }
            ),
        ),
        "seed-b": Recipe(
            name="seed-b",
            description="the small-GPU recipe: batch 1 at 256x256 from 512 px images, 2000 steps",
            values=MappingProxyType(
                {
                    "lr_scheduler": "a1111",
                    "learning_rate": "5e-2:100, 5e-3:500, 5e-4:1000, 5e-5:1500, 5e-6",
                    "max_steps": 2000,
                    "batch_size": 1,
                    "gradient_accumulation": 1,
                    "width": 256,
                    "height": 256,
                }
            ),
            preview_every_steps=None,
            family="sd1",
            sources=MappingProxyType(
                {
                    "learning_rate": "anchors.md, Recipe B schedule",
                    "max_steps": "Recipe B users: little changes after 2000 steps",
                    "batch_size": "Recipe B: batch 1 to fit a small GPU",
                    "gradient_accumulation": "batch 1 alone (Recipe B names no accumulation)",
                    "width": "Recipe B: train at 256x256 from 512 px images",
                    "height": "Recipe B: train at 256x256 from 512 px images",
                }
            ),
        ),
        "diffusers-sdxl": Recipe(
            name="diffusers-sdxl",
            description="diffusers' SDXL textual-inversion example: 768x768, batch 1 x 4, 500 steps at a constant 2e-3",
            values=MappingProxyType(
                {
                    "lr_scheduler": "constant",
                    # 5e-4 with --scale_lr, which multiplies it by batch x accumulation x processes (1 x 4 x 1)
                    "learning_rate": "0.002",
                    "max_steps": 500,
                    "batch_size": 1,
                    "gradient_accumulation": 4,
                    "width": 768,
                    "height": 768,
                }
            ),
            preview_every_steps=None,
            family="sdxl",
            sources=MappingProxyType(
                {
                    "learning_rate": "diffusers examples/textual_inversion/README_sdxl.md: 5e-4 with --scale_lr",
                    "lr_scheduler": "diffusers README_sdxl.md: --lr_scheduler constant, no warm-up",
                    "max_steps": "diffusers README_sdxl.md: --max_train_steps 500",
                    "batch_size": "diffusers README_sdxl.md: --train_batch_size 1",
                    "gradient_accumulation": "diffusers README_sdxl.md: --gradient_accumulation_steps 4",
                    "width": "diffusers README_sdxl.md: --resolution 768",
                    "height": "diffusers README_sdxl.md: --resolution 768",
                }
            ),
        ),
    }
)


def get_recipe(name: str | None) -> Recipe | None:
    """The recipe called `name`; None for no recipe ("" or None). Unknown names are refused with the list."""
    if not name:
        return None
    recipe = RECIPES.get(name)
    if recipe is None:
        raise InvalidArgument(
            f"unknown recipe '{name}': use one of {', '.join(RECIPES)}, or leave recipe empty for the defaults",
            field="spec.recipe",
            reason="RECIPE_UNKNOWN",
            metadata={"recipes": ",".join(RECIPES)},
        )
    return recipe


def full_cycle(images: int, max_batch: int = MAX_FULL_CYCLE_BATCH) -> tuple[int, int]:
    """The guides' full-cycle (batch, accumulation) for `images`: batch x accumulation = images with the fewest
    accumulation steps that keep the batch at `max_batch` or below (12 -> 6x2, 21 -> 7x3, 24 -> 8x3, 13 -> 1x13)."""
    if images < 1:
        raise ValueError(f"images must be at least 1, got {images}")
    for accumulation in range(1, images + 1):
        if images % accumulation == 0 and images // accumulation <= max_batch:
            return images // accumulation, accumulation
    return 1, images  # unreachable: accumulation = images gives batch 1


def _merged(overrides: Mapping[str, Any], recipe: Recipe | None, family_size: int | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if family_size:
        values.update(width=family_size, height=family_size)
    if recipe is not None:
        values.update(recipe.values)
    request = {k: v for k, v in overrides.items() if v is not None and k not in JOB_FIELDS}
    unknown = sorted(set(request) - _SPEC_FIELDS - {"recipe"})
    if unknown:
        raise InvalidArgument(
            f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_SPEC_FIELDS | JOB_FIELDS))}",
            field="spec",
        )
    request.pop("recipe", None)
    if request.get("template_text") and "template" not in request:
        request["template"] = "custom"  # the caller's own lines replace the recipe's built-in template
    values.update(request)
    return values


def resolve_spec(overrides: Mapping[str, Any], recipe: str | None, *, family_size: int | None = None) -> TrainingSpec:
    """The spec from the request's set fields over the recipe over the defaults; raises the first refusal
    (`InvalidArgument` naming `spec.<field>`). `family_size` is the model family's training size (512 for SD1.x),
    used for width/height when neither the request nor the recipe sets them."""
    return TrainingSpec(**_merged(overrides, get_recipe(recipe), family_size))


def resolve_preview_every_steps(overrides: Mapping[str, Any], recipe: str | None) -> int:
    """Previews every N steps (0: off): the request's value > the recipe's > DEFAULT_PREVIEW_EVERY_STEPS."""
    value = overrides.get("preview_every_steps")
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidArgument(
                f"preview_every_steps is {value!r}: use 0 (off) or a whole number of steps",
                field="spec.preview_every_steps",
            )
        return value
    found = get_recipe(recipe)
    if found is not None and found.preview_every_steps is not None:
        return found.preview_every_steps
    return DEFAULT_PREVIEW_EVERY_STEPS


def collect_spec(
    overrides: Mapping[str, Any], recipe: str | None, *, family_size: int | None = None
) -> tuple[TrainingSpec | None, list[Diagnostic]]:
    """`resolve_spec` that reports every refused field instead of the first, for the plan.

    Each refused field becomes an ERROR diagnostic and is reset (with the fields it depends on, e.g. the template
    with its text) to the default value, so the remaining fields are still checked. The spec
    returned then carries those stand-ins: it is for further checks only (the diagnostics say it cannot train).
    None when the spec cannot be built at all (model, embedding or dataset missing, unknown fields).
    """
    diagnostics: list[Diagnostic] = []
    try:
        found = get_recipe(recipe)
    except InvalidArgument as e:
        diagnostics.append(_diagnostic(e))
        found = None
    try:
        values = _merged(overrides, found, family_size)
    except InvalidArgument as e:
        return None, [*diagnostics, _diagnostic(e)]
    refused: set[str] = set()
    while True:
        try:
            return TrainingSpec(**values), diagnostics
        except InvalidArgument as e:
            diagnostics.append(_diagnostic(e))
            name = (e.field or "").removeprefix("spec.")
            if name in refused or name in _REQUIRED or name not in _SPEC_FIELDS:
                return None, diagnostics
            for reset in _GROUPS.get(name, (name,)):
                refused.add(reset)
                values.pop(reset, None)  # the default, which is always valid


def _diagnostic(error: InvalidArgument) -> Diagnostic:
    code = error.reason
    field = error.field or ""
    if field in ("spec.width", "spec.height") and "multiple of 8" in error.message:
        code = "RESOLUTION_NOT_MULTIPLE_OF_8"
    elif code == "INVALID_ARGUMENT":
        code = "INVALID_SETTING"
    return Diagnostic(Severity.ERROR, code, error.message, _suggestion(error), field=field)


def _suggestion(error: InvalidArgument) -> str:
    if error.reason == "RECIPE_UNKNOWN":
        return f"Use one of {', '.join(RECIPES)}."
    return "Change this setting as the message says."
