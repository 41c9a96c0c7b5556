"""Learning-rate and gradient-clip schedules in A1111's syntax, with A1111's resume and stop semantics.

    "0.05:10, 0.02:20, 0.005"    rate r while step < s for each r:s; a bare last rate (or r:-1) runs to max_steps

How A1111 reads a schedule (`modules/textual_inversion/learn_schedule.py`, `LearnScheduleIterator`) given
max_steps and the resume step (the embedding's stored `step`):
- pairs whose step is at or below the resume step are skipped;
- a step beyond max_steps is clipped to max_steps and every later piece is ignored;
- `train_embedding` calls `scheduler.apply(optimizer, embedding.step)` before the optimizer step and increments
  `embedding.step` after it, so the rate for the step from s to s + 1 is the first segment with s < end_step:
  "0.05:10" trains steps 0..9 at 0.05;
- training stops when the schedule runs out (`LearnRateScheduler.finished`): a schedule whose last piece is closed
  ("0.05:10, 0.01:500") stops at step 500 even when max_steps is 3000. We report that as `ends_early`.
- the gradient-clip schedule is read the same way, but A1111 never checks its `finished`: past its end the last
  value stays in force (`value_at`).

Where we differ on purpose: we refuse what A1111 silently misreads (a bad piece after a clipped step, steps that do
not increase, steps of 0 or below -1, pieces after an open rate, negative or non-finite rates); and for a closed
step exactly at max_steps followed by more pieces, A1111 keeps a zero-length segment that (with gradient
accumulation 1) trains one step past max_steps, while we stop at max_steps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from services.common.errors import InvalidArgument
from services.trainer.warmup_schedules import WARMUP_KINDS, WarmupSchedule, rate_from_text

__all__ = [
    "SCHEDULE_KINDS",
    "Schedule",
    "ScheduleSegment",
    "LearnRateSchedule",
    "WarmupSchedule",
    "parse_schedule",
]

SCHEDULE_KINDS = ("a1111", *WARMUP_KINDS)
_STEP = re.compile(r"[+-]?\d+")
_EXAMPLE = "e.g. '0.005' or '0.05:10, 0.02:20, 0.005'"


class Schedule(Protocol):
    """What the training loop needs from any schedule."""

    @property
    def max_steps(self) -> int: ...
    @property
    def start_step(self) -> int: ...
    def rate_at(self, step: int) -> float: ...
    @property
    def final_step(self) -> int: ...
    @property
    def ends_early(self) -> bool: ...


@dataclass(frozen=True)
class ScheduleSegment:
    rate: float
    end_step: int  # the rate applies while step < end_step; an open last segment ends at max_steps


@dataclass(frozen=True)
class _Piece:
    text: str  # as written, for messages
    rate: float
    step: int | None  # None: open (a bare rate or r:-1), runs to max_steps


def _invalid(message: str, field: str) -> InvalidArgument:
    return InvalidArgument(message, field=field, reason="SCHEDULE_INVALID")


def _parse_piece(piece: str, field: str) -> _Piece:
    parts = piece.split(":")
    if len(parts) > 2:
        raise _invalid(f"'{piece}' has more than one ':': write rate:step, e.g. '0.05:10'", field)
    rate = rate_from_text(parts[0].strip(), field=field, piece=piece)
    if len(parts) == 1:
        return _Piece(piece, rate, None)
    step_text = parts[1].strip()
    if not _STEP.fullmatch(step_text):
        raise _invalid(
            f"'{step_text}' in '{piece}' is not a step: write a whole number of steps, e.g. '0.05:10'", field
        )
    step = int(step_text)
    if step == -1:
        return _Piece(piece, rate, None)
    if step < 1:
        raise _invalid(f"step {step} in '{piece}' must be 1 or more, or -1 for 'until max_steps'", field)
    return _Piece(piece, rate, step)


def _parse_pieces(text: str, field: str) -> list[_Piece]:
    """Every piece checked, even those A1111 would skip or ignore: a typo is a typo wherever it sits."""
    # A1111 skips empty pieces, so a trailing comma is fine.
    pieces = [_parse_piece(p.strip(), field) for p in text.split(",") if p.strip()]
    if not pieces:
        raise _invalid(f"the schedule is empty: write a rate or rate:step pairs, {_EXAMPLE}", field)
    for before, after in zip(pieces, pieces[1:], strict=False):
        if before.step is None:
            raise _invalid(
                f"'{before.text}' runs to max_steps, so '{after.text}' after it would never be used: "
                "put the open rate last",
                field,
            )
        if after.step is not None and after.step <= before.step:
            raise _invalid(f"steps must increase: '{after.text}' comes after step {before.step}", field)
    return pieces


@dataclass(frozen=True)
class LearnRateSchedule:
    text: str  # as the user wrote it
    max_steps: int
    start_step: int  # the resume step (0 for a new run)
    segments: tuple[ScheduleSegment, ...]  # after A1111's skipping and clipping; never empty

    @classmethod
    def parse(
        cls, text: str, max_steps: int, *, start_step: int = 0, field: str = "spec.learning_rate"
    ) -> LearnRateSchedule:
        if max_steps < 1:
            raise InvalidArgument(f"max_steps is {max_steps}: train at least 1 step", field="spec.max_steps")
        if start_step < 0:
            raise ValueError(f"start_step {start_step} is negative: it is the embedding's step, 0 or more")
        if start_step >= max_steps:
            # A1111: "Model has already been trained beyond specified max steps".
            raise InvalidArgument(
                f"the embedding is already at step {start_step}, at or past max_steps {max_steps}: "
                f"raise max_steps above {start_step} to train further",
                field="spec.max_steps",
                reason="NOTHING_TO_TRAIN",
            )
        pieces = _parse_pieces(text, field)
        segments: list[ScheduleSegment] = []
        for piece in pieces:
            if piece.step is None:
                segments.append(ScheduleSegment(piece.rate, max_steps))
                break
            if piece.step <= start_step:
                continue  # this segment was already trained before the resume step
            segments.append(ScheduleSegment(piece.rate, min(piece.step, max_steps)))
            if piece.step >= max_steps:
                break  # clipped: later pieces would start at or after max_steps
        if not segments:
            last_rate = pieces[-1].text.split(":")[0].strip()
            raise InvalidArgument(
                f"the schedule '{text.strip()}' ends at step {pieces[-1].step} and the embedding is already at step "
                f"{start_step}: nothing is left to train; add steps beyond {start_step} or an open last rate, "
                f"e.g. '{text.strip()}, {last_rate}'",
                field=field,
                reason="NOTHING_TO_TRAIN",
            )
        return cls(text, max_steps, start_step, tuple(segments))

    @property
    def final_step(self) -> int:
        """Where training stops: max_steps, or earlier when the schedule runs out (A1111 stops there)."""
        return self.segments[-1].end_step

    @property
    def ends_early(self) -> bool:
        return self.final_step < self.max_steps

    @property
    def spans(self) -> tuple[tuple[int, int, float], ...]:
        """(start_step, end_step, rate) per segment, as the plan lists them."""
        starts = (self.start_step, *(s.end_step for s in self.segments[:-1]))
        return tuple((start, s.end_step, s.rate) for start, s in zip(starts, self.segments, strict=True))

    def rate_at(self, step: int) -> float:
        """The rate of the optimizer step that takes the embedding from `step` to `step + 1`."""
        if not self.start_step <= step < self.final_step:
            raise ValueError(f"step {step} is outside this run's steps [{self.start_step}, {self.final_step})")
        return next(s.rate for s in self.segments if step < s.end_step)

    def value_at(self, step: int) -> float:
        """`rate_at`, but past the schedule's end the last value holds: how A1111 uses the gradient-clip schedule
        (train_embedding reads `clip_grad_sched.learn_rate` and never its `finished`)."""
        if step >= self.final_step:
            return self.segments[-1].rate
        return self.rate_at(step)


def parse_schedule(
    kind: str,
    text_or_rate: str,
    max_steps: int,
    *,
    warmup_steps: int = 0,
    start_step: int = 0,
    cycles: float = 0.5,
    field: str = "spec.learning_rate",
) -> LearnRateSchedule | WarmupSchedule:
    """`kind` "a1111" reads A1111's syntax (a plain "0.005" is one constant rate); "constant", "linear" and
    "cosine" take one base rate and diffusers' warm-up and decay."""
    if kind == "a1111":
        if warmup_steps:
            raise InvalidArgument(
                f"warmup_steps {warmup_steps} applies to the constant, linear and cosine schedulers; an A1111 "
                "schedule warms up in its own pieces, e.g. '0.001:100, 0.005'",
                field="spec.warmup_steps",
            )
        return LearnRateSchedule.parse(text_or_rate, max_steps, start_step=start_step, field=field)
    if kind in WARMUP_KINDS:
        return WarmupSchedule.parse(
            kind, text_or_rate, max_steps, warmup_steps=warmup_steps, start_step=start_step, cycles=cycles, field=field
        )
    raise InvalidArgument(
        f"unknown learning-rate scheduler '{kind}': use one of {', '.join(SCHEDULE_KINDS)}", field="spec.lr_scheduler"
    )
