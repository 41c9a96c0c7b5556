"""What a caption request asks for (GenerationSettings) and how requests are batched (BatchingSettings).

Both are frozen and hashable: a GenerationSettings is half of the batching key, so requests with equal settings on
the same model share `generate` calls. Lengths count *new* tokens (the caption after any prefix, without the end
token): A1111 passes min 24 / max 48 to BLIP, and we keep those numbers but make them independent of the prefix.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from services.common.errors import InvalidArgument
from services.common.settings import EnvReader, positive_int

__all__ = ["GenerationSettings", "BatchingSettings", "MAX_BEAMS", "MAX_NEW_TOKENS"]

MAX_BEAMS = 16  # beyond this beam search costs memory and time without better captions
MAX_NEW_TOKENS = 256  # BLIP's decoder has 512 positions; captions for training prompts stay far shorter
_SEED_LIMIT = 1 << 64  # the proto's uint64; torch.manual_seed accepts the same range


@dataclass(frozen=True)
class GenerationSettings:
    num_beams: int = 1  # beam count; A1111 uses beam search with 1 beam (greedy)
    min_length: int = 24  # fewest new tokens (A1111: 24); the end token may only come after this many
    max_length: int = 48  # most new tokens (A1111: 48)
    sample: bool = False  # nucleus sampling instead of beam search
    top_p: float = 0.9  # nucleus mass when sampling
    seed: int = 0  # sampling seed: a sampled caption depends only on (model, image, settings), never on batching
    prefix: str = ""  # conditional captioning: the caption continues this text ("a photo of")
    repetition_penalty: float | None = None  # > 1 discourages repeats; None = the model's default (none)

    def validate(self) -> GenerationSettings:
        """Return self, or raise InvalidArgument naming the request field to change."""
        if not 1 <= self.num_beams <= MAX_BEAMS:
            raise InvalidArgument(
                f"num_beams is {self.num_beams}; use 1 (greedy, A1111's default) to {MAX_BEAMS}",
                field="options.num_beams",
            )
        if not 1 <= self.max_length <= MAX_NEW_TOKENS:
            raise InvalidArgument(
                f"max_length is {self.max_length} new tokens; use 1 to {MAX_NEW_TOKENS} (A1111: 48)",
                field="options.max_length",
            )
        if not 0 <= self.min_length <= self.max_length:
            raise InvalidArgument(
                f"min_length is {self.min_length} but max_length is {self.max_length}; min_length must be between 0 "
                "and max_length (A1111: 24 and 48)",
                field="options.min_length",
            )
        if not (isinstance(self.top_p, int | float) and 0 < self.top_p <= 1):  # NaN fails the comparison too
            raise InvalidArgument(
                f"top_p is {self.top_p}; use a nucleus mass in (0, 1], e.g. 0.9", field="options.top_p"
            )
        penalty = self.repetition_penalty
        if penalty is not None and not (math.isfinite(penalty) and penalty > 0):
            raise InvalidArgument(
                f"repetition_penalty is {penalty}; use a positive number (1 = none, 1.2-1.5 discourages repeats) "
                "or leave it unset",
                field="options.repetition_penalty",
            )
        if not 0 <= self.seed < _SEED_LIMIT:
            raise InvalidArgument(f"seed is {self.seed}; use 0 to 2**64 - 1", field="options.seed")
        return self

    def batch_key(self) -> GenerationSettings:
        """The settings with fields that cannot change the caption reset, so more requests share a batch.

        Beam search ignores the sampling fields, so requests that differ only there still batch together.
        """
        if self.sample:
            return self
        return replace(self, top_p=GenerationSettings.top_p, seed=GenerationSettings.seed)


@dataclass(frozen=True)
class BatchingSettings:
    """How the caption worker groups concurrent requests. `max_batch_size=1` turns batching off."""

    max_batch_size: int = 16  # images per generate call; TISTUDIO_CAPTION_MAX_BATCH
    max_delay_seconds: float = 0.010  # longest wait for more images once one waits; TISTUDIO_CAPTION_MAX_DELAY_MS

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise InvalidArgument(
                f"max_batch_size is {self.max_batch_size}; use 1 (no batching) or more", field="max_batch_size"
            )
        if not (math.isfinite(self.max_delay_seconds) and self.max_delay_seconds >= 0):
            raise InvalidArgument(
                f"max_delay_seconds is {self.max_delay_seconds}; use 0 or a few milliseconds",
                field="max_delay_seconds",
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> BatchingSettings:
        """TISTUDIO_CAPTION_MAX_BATCH (images, default 16) and TISTUDIO_CAPTION_MAX_DELAY_MS (default 10)."""
        read = EnvReader(env)
        return cls(
            max_batch_size=read.parse(
                "TISTUDIO_CAPTION_MAX_BATCH", cls.max_batch_size, positive_int, "a whole number >= 1 (1 = off)"
            ),
            max_delay_seconds=read.parse(
                "TISTUDIO_CAPTION_MAX_DELAY_MS", cls.max_delay_seconds, _milliseconds, "milliseconds >= 0, e.g. 10"
            ),
        )


def _milliseconds(raw: str) -> float:
    value = float(raw)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(raw)
    return value / 1000.0
