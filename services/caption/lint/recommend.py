"""Training recommendations from the image count: the seed guides' own numbers, with their gaps filled.

Vectors per token (the first seed, quoting Aitrepreneur):

    images   10    11-30   40-60   60-100   100+
    vectors  2-3   5-6     8-10    10-12    12-16

The table leaves gaps, decided here: fewer than 10 images get 1-2 (less than the 10-image row: more vectors need
more pictures); 31-39 get 6-8 (between their neighbours); an overlapping bound belongs to the row that lists it
first, so 60 -> 8-10 and 100 -> 10-12.

"Full-cycle" batching: batch size x gradient accumulation = image count, so every optimizer step sees each image
once. The seed's pairs (12 = 6x2, 14 = 7x2, 16 = 8x2, 18 = 9x2, 21 = 7x3, 24 = 8x3 or 12x2 when memory allows) are
exactly "the largest divisor of the count up to 9 that leaves an accumulation of at least 2": 9 is the seed's
largest batch, and it calls 12x2 the one that does not always fit in VRAM. Alternatives follow: larger batches
(when memory allows), then smaller ones (when it does not), ending with batch 1.

Steps: recipe A trains 3000 steps with a preview and a savepoint every 50; the second seed saw little change after
2000, so the savepoints let users stop earlier.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BatchRecommendation",
    "LintRecommendations",
    "recommend",
    "vectors_per_token_range",
    "full_cycle_batching",
    "nearby_full_cycle",
    "MAX_STEPS",
    "SAVE_EVERY",
    "MAX_RECOMMENDED_BATCH",
]

MAX_STEPS = 3000  # recipe A
SAVE_EVERY = 50  # recipe A: a preview and a savepoint every 50 steps
MAX_RECOMMENDED_BATCH = 9  # the largest batch among the seed's pairs (18 = 9x2)

# (highest image count of the row, (min, max) vectors); the first row whose bound is >= the count applies.
_VECTOR_ROWS = (
    (9, (1, 2)),  # gap: fewer than the table's smallest row
    (10, (2, 3)),
    (30, (5, 6)),
    (39, (6, 8)),  # gap between 11-30 and 40-60
    (60, (8, 10)),
    (100, (10, 12)),
)
_VECTORS_ABOVE = (12, 16)  # 100+


@dataclass(frozen=True)
class BatchRecommendation:
    batch_size: int
    gradient_accumulation: int


@dataclass(frozen=True)
class LintRecommendations:
    vectors_per_token_min: int
    vectors_per_token_max: int
    batching: tuple[BatchRecommendation, ...]  # the first is the recommendation, the rest alternatives
    max_steps: int


def vectors_per_token_range(image_count: int) -> tuple[int, int]:
    for bound, vectors in _VECTOR_ROWS:
        if image_count <= bound:
            return vectors
    return _VECTORS_ABOVE


def full_cycle_batching(image_count: int) -> tuple[BatchRecommendation, ...]:
    """Pairs with batch x accumulation == image_count; the recommended one first."""
    if image_count < 1:
        return ()
    divisors = [b for b in range(1, image_count + 1) if image_count % b == 0]
    with_accumulation = [b for b in divisors if 2 <= b <= MAX_RECOMMENDED_BATCH and image_count // b >= 2]
    if with_accumulation:
        first = max(with_accumulation)
    elif image_count <= MAX_RECOMMENDED_BATCH:
        first = image_count  # 1, 2, 3, 5, 7 images: the whole set is one small batch
    else:
        first = 1  # a prime count: batch 1, accumulate over all (or drop or add one image; see the lint's advice)
    larger = [b for b in divisors if b > first and image_count // b >= 2]
    smaller = sorted((b for b in divisors if b < first), reverse=True)
    order = [first, *larger, *smaller]
    return tuple(BatchRecommendation(batch_size=b, gradient_accumulation=image_count // b) for b in order)


def recommend(image_count: int) -> LintRecommendations:
    low, high = vectors_per_token_range(image_count)
    return LintRecommendations(
        vectors_per_token_min=low,
        vectors_per_token_max=high,
        batching=full_cycle_batching(image_count),
        max_steps=MAX_STEPS,
    )


def nearby_full_cycle(image_count: int) -> int | None:
    """The closest count (one or two images fewer, then more) that allows a batch of 2-9 with accumulation >= 2."""
    for delta in (-1, 1, -2, 2):
        candidate = image_count + delta
        pairs = full_cycle_batching(candidate)
        if candidate > 0 and pairs and pairs[0].batch_size >= 2 and pairs[0].gradient_accumulation >= 2:
            return candidate
    return None
