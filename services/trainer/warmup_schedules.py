"""Learning-rate schedules with a linear warm-up, exactly as diffusers' `get_scheduler` computes them.

diffusers (`src/diffusers/optimization.py`) builds a `LambdaLR` whose factor at step s is

    warm-up  (s < W):  s / max(1, W)
    constant:          1
    linear:            max(0, (T - s) / max(1, T - W))
    cosine:            max(0, 0.5 * (1 + cos(pi * cycles * 2 * (s - W) / max(1, T - W))))

and the optimizer runs with `base * factor(s)` for the step that takes the embedding from s to s + 1 (the scheduler
steps after the optimizer). So the very first step of a warm-up runs at rate 0, as in diffusers. The arithmetic
below is written in diffusers' order so the rates are bit-identical to its LambdaLR's.

`get_scheduler("cosine", ...)` never passes `num_cycles`, so through it the cosine always has 0.5 cycles (decay to
0 at T); other `cycles` values match `get_cosine_schedule_with_warmup(num_cycles=...)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.common.errors import InvalidArgument

__all__ = ["WARMUP_KINDS", "WarmupSchedule", "rate_from_text"]

WARMUP_KINDS = ("constant", "linear", "cosine")


def rate_from_text(text: str, *, field: str, piece: str | None = None) -> float:
    """One rate: a finite, non-negative number. `piece` is the schedule piece it came from, for the message."""
    where = f" in '{piece}'" if piece is not None and piece != text else ""
    if not text:
        raise InvalidArgument(
            f"missing rate{where}: write a number like 0.005 before the ':'", field=field, reason="SCHEDULE_INVALID"
        )
    try:
        rate = float(text)
    except ValueError:
        raise InvalidArgument(
            f"'{text}'{where} is not a rate: write a number like 0.005, or rate:step pairs like '0.05:10, 0.005'",
            field=field,
            reason="SCHEDULE_INVALID",
        ) from None
    if not math.isfinite(rate):
        raise InvalidArgument(
            f"'{text}'{where} is not a finite rate: write a number like 0.005", field=field, reason="SCHEDULE_INVALID"
        )
    if rate < 0:
        raise InvalidArgument(
            f"rate {text}{where} is negative: rates must be 0 or more", field=field, reason="SCHEDULE_INVALID"
        )
    return rate


@dataclass(frozen=True)
class WarmupSchedule:
    kind: str  # "constant", "linear" or "cosine"
    base_rate: float  # the rate after warm-up (the peak for linear and cosine)
    max_steps: int  # T: linear and cosine reach 0 here
    warmup_steps: int = 0  # W: the rate rises linearly from 0 over these steps
    start_step: int = 0  # the resume step: the first step this run takes
    cycles: float = 0.5  # cosine periods over T - W; 0.5 is a half cosine from the peak down to 0

    def __post_init__(self) -> None:
        if self.kind not in WARMUP_KINDS:
            raise InvalidArgument(
                f"unknown warm-up schedule '{self.kind}': use one of {', '.join(WARMUP_KINDS)}",
                field="spec.lr_scheduler",
            )
        if self.max_steps < 1:
            raise InvalidArgument(f"max_steps is {self.max_steps}: train at least 1 step", field="spec.max_steps")
        if not 0 <= self.warmup_steps <= self.max_steps:
            raise InvalidArgument(
                f"warmup_steps {self.warmup_steps} must be between 0 and max_steps ({self.max_steps})",
                field="spec.warmup_steps",
            )
        if self.start_step < 0:
            raise ValueError(f"start_step {self.start_step} is negative: it is the embedding's step, 0 or more")
        if self.start_step >= self.max_steps:
            raise InvalidArgument(
                f"the embedding is already at step {self.start_step}, at or past max_steps {self.max_steps}: "
                f"raise max_steps above {self.start_step} to train further",
                field="spec.max_steps",
                reason="NOTHING_TO_TRAIN",
            )
        if self.kind == "cosine" and not (math.isfinite(self.cycles) and self.cycles > 0):
            raise InvalidArgument(f"cosine cycles {self.cycles} must be a positive number", field="spec.lr_scheduler")

    @classmethod
    def parse(
        cls,
        kind: str,
        text: str,
        max_steps: int,
        *,
        warmup_steps: int = 0,
        start_step: int = 0,
        cycles: float = 0.5,
        field: str = "spec.learning_rate",
    ) -> WarmupSchedule:
        stripped = text.strip()
        if "," in stripped or ":" in stripped:
            raise InvalidArgument(
                f"the {kind} schedule takes one base rate like '0.005', not '{stripped}'; rate:step lists are "
                "A1111 schedules: choose the A1111 scheduler for them",
                field=field,
                reason="SCHEDULE_INVALID",
            )
        if not stripped:
            raise InvalidArgument(
                "the learning rate is empty: write one base rate like 0.005", field=field, reason="SCHEDULE_INVALID"
            )
        rate = rate_from_text(stripped, field=field)
        return cls(kind, rate, max_steps, warmup_steps, start_step, cycles)

    def factor(self, step: int) -> float:
        """diffusers' lr_lambda(step), the multiplier of `base_rate`."""
        warmup, total = self.warmup_steps, self.max_steps
        if step < warmup:
            return float(step) / float(max(1, warmup))
        if self.kind == "constant":
            return 1.0
        if self.kind == "linear":
            return max(0.0, float(total - step) / float(max(1, total - warmup)))
        progress = float(step - warmup) / float(max(1, total - warmup))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(self.cycles) * 2.0 * progress)))

    def rate_at(self, step: int) -> float:
        """The rate of the optimizer step that takes the embedding from `step` to `step + 1`."""
        if not self.start_step <= step < self.max_steps:
            raise ValueError(f"step {step} is outside this run's steps [{self.start_step}, {self.max_steps})")
        # LambdaLR multiplies base by factor in this order; keep it for bit-identical rates.
        return self.base_rate * self.factor(step)

    @property
    def final_step(self) -> int:
        return self.max_steps

    @property
    def ends_early(self) -> bool:
        return False
