"""What a training job runs: the engine's `TrainingSpec` plus what only the job layer acts on (previews, the
recipe's name, what to do when training diverges). Stored whole in the job record, so a restarted trainer runs
exactly what was asked.

    job = JobSpec(training=spec, recipe="seed-a", preview_every_steps=50,
                  preview=PreviewSettings(seeds=(1, 2, 3), weights=(0.8, 1.0, 1.2)))
    record = job.to_record();  JobSpec.from_record(record) == job
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.common.errors import InvalidArgument
from services.common.records import plain_record
from services.trainer.engine.spec import TrainingSpec

__all__ = ["NON_FINITE_ACTIONS", "SAMPLERS", "JobSpec", "PreviewSettings"]

NON_FINITE_ACTIONS = ("fail", "retry_half_rate")
SAMPLERS = ("euler_a", "euler", "dpmpp_2m", "dpmpp_2m_karras", "ddim")  # tistudio.common.v1.Sampler, in order
MAX_PREVIEW_IMAGES = 64  # prompts x seeds x weights per preview step: enough for a sheet, bounded for the GPU


@dataclass(frozen=True)
class PreviewSettings:
    """What the preview service renders at each preview step (the proto's PreviewSettings, resolved)."""

    prompts: tuple[str, ...] = ()  # "[name]" becomes the trigger; empty: the last training prompt (A1111)
    negative_prompt: str = ""
    seeds: tuple[int, ...] = (1,)  # fixed, so the previews of different steps are comparable
    weights: tuple[float, ...] = (1.0,)  # the embedding's weight in the prompt, e.g. 0.8, 1.0, 1.2
    steps: int = 20
    cfg_scale: float = 7.0
    sampler: str = "euler_a"
    width: int = 0  # 0: the training size
    height: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompts", tuple(self.prompts))
        object.__setattr__(self, "seeds", tuple(self.seeds) or (1,))
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights) or (1.0,))
        for seed in self.seeds:
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
                raise InvalidArgument(
                    f"preview seed {seed!r} is not a whole number from 0 to 2^63-1", field="spec.preview.seeds"
                )
        for weight in self.weights:
            if not math.isfinite(weight) or not 0 < weight <= 3:
                raise InvalidArgument(
                    f"preview weight {weight} is outside (0, 3]: use weights like 0.8, 1.0, 1.2",
                    field="spec.preview.weights",
                )
        if not 1 <= self.steps <= 150:
            raise InvalidArgument(f"preview steps {self.steps} is outside 1-150", field="spec.preview.steps")
        if not (math.isfinite(self.cfg_scale) and 0 < self.cfg_scale <= 30):
            raise InvalidArgument(
                f"preview cfg_scale {self.cfg_scale} is outside (0, 30]", field="spec.preview.cfg_scale"
            )
        if self.sampler not in SAMPLERS:
            raise InvalidArgument(
                f"preview sampler '{self.sampler}' is not one of {', '.join(SAMPLERS)}", field="spec.preview.sampler"
            )
        for name in ("width", "height"):
            value = getattr(self, name)
            if value < 0 or value % 8:
                raise InvalidArgument(
                    f"preview {name} {value} is not a multiple of 8 (0 means the training size)",
                    field=f"spec.preview.{name}",
                )
        images = max(len(self.prompts), 1) * len(self.seeds) * len(self.weights)
        if images > MAX_PREVIEW_IMAGES:
            raise InvalidArgument(
                f"previews would render {images} images per preview step (prompts x seeds x weights); keep it at "
                f"{MAX_PREVIEW_IMAGES} or fewer",
                field="spec.preview",
            )

    def sized(self, width: int, height: int) -> PreviewSettings:
        """These settings with 0 width/height replaced by the training size."""
        return PreviewSettings(**{**plain_record(self), "width": self.width or width, "height": self.height or height})


@dataclass(frozen=True)
class JobSpec:
    training: TrainingSpec
    recipe: str = ""  # the built-in recipe the request named ("" for none); its values are already in `training`
    preview_every_steps: int = 0  # previews (and a savepoint to render from) every N steps; 0: off
    preview: PreviewSettings = field(default_factory=PreviewSettings)
    non_finite: str = "fail"  # "fail": roll back and fail; "retry_half_rate": roll back and go on at half the rate

    def __post_init__(self) -> None:
        if self.non_finite not in NON_FINITE_ACTIONS:
            raise InvalidArgument(
                f"non_finite '{self.non_finite}' is not one of {', '.join(NON_FINITE_ACTIONS)}",
                field="spec.non_finite",
            )
        if isinstance(self.preview_every_steps, bool) or self.preview_every_steps < 0:
            raise InvalidArgument(
                "preview_every_steps must be 0 (off) or a whole number of steps", field="spec.preview_every_steps"
            )
        object.__setattr__(self, "preview", self.preview.sized(self.training.width, self.training.height))

    def to_record(self) -> dict[str, Any]:
        return {
            "training": self.training.to_record(),
            "recipe": self.recipe,
            "preview_every_steps": self.preview_every_steps,
            "preview": plain_record(self.preview),
            "non_finite": self.non_finite,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> JobSpec:
        return cls(
            training=TrainingSpec.from_record(record["training"]),
            recipe=record.get("recipe", ""),
            preview_every_steps=record.get("preview_every_steps", 0),
            preview=PreviewSettings(**record.get("preview", {})),
            non_finite=record.get("non_finite", "fail"),
        )
