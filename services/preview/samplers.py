"""Samplers by A1111's names, built as diffusers schedulers from the model's own scheduler config.

| name            | A1111 shows       | diffusers scheduler                                                    |
|-----------------|-------------------|------------------------------------------------------------------------|
| euler_a         | Euler a           | EulerAncestralDiscreteScheduler                                        |
| euler           | Euler             | EulerDiscreteScheduler                                                 |
| dpmpp_2m        | DPM++ 2M          | DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", order 2)     |
| dpmpp_2m_karras | DPM++ 2M Karras   | the same with use_karras_sigmas=True                                   |
| ddim            | DDIM              | DDIMScheduler (eta 0)                                                  |

The mapping is diffusers' own documented equivalence table. The model's config supplies the betas, prediction type
and timestep spacing, so a v-prediction SD2-768 model samples correctly with any of them. Schedulers keep state
(step index, multistep history), so every sampling run builds a fresh one: `from_config` takes well under a ms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
)

from services.common.errors import InvalidArgument

__all__ = ["SAMPLERS", "Sampler", "sampler_named"]


@dataclass(frozen=True)
class Sampler:
    name: str  # our name, also the trainer's PreviewSettings.sampler
    display_name: str  # what A1111 writes into infotext ("Sampler: Euler a")
    scheduler_class: Any
    options: tuple[tuple[str, Any], ...] = ()
    stochastic: bool = False  # draws fresh noise every step (from the per-image CPU generators)

    def scheduler(self, model_config: Any) -> Any:
        """A fresh scheduler for one sampling run, configured from the model's scheduler config."""
        return self.scheduler_class.from_config(model_config, **dict(self.options))


# Order matters: it is the order of tistudio.common.v1.Sampler's numbers (1-based).
SAMPLERS = (
    Sampler("euler_a", "Euler a", EulerAncestralDiscreteScheduler, stochastic=True),
    Sampler("euler", "Euler", EulerDiscreteScheduler),
    Sampler(
        "dpmpp_2m", "DPM++ 2M", DPMSolverMultistepScheduler, (("algorithm_type", "dpmsolver++"), ("solver_order", 2))
    ),
    Sampler(
        "dpmpp_2m_karras",
        "DPM++ 2M Karras",
        DPMSolverMultistepScheduler,
        (("algorithm_type", "dpmsolver++"), ("solver_order", 2), ("use_karras_sigmas", True)),
    ),
    Sampler("ddim", "DDIM", DDIMScheduler),
)
_BY_NAME = {sampler.name: sampler for sampler in SAMPLERS}


def sampler_named(name: str) -> Sampler:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise InvalidArgument(
            f"sampler {name!r} is not one of {', '.join(_BY_NAME)}",
            field="sampling.sampler",
            reason="UNKNOWN_SAMPLER",
        ) from None
