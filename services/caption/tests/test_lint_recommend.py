"""Recommendations: the seed guides' table of vectors per token, full-cycle batching and steps."""

from __future__ import annotations

import pytest

from services.caption.lint import BatchRecommendation, recommend
from services.caption.lint.recommend import full_cycle_batching, nearby_full_cycle, vectors_per_token_range


def pairs(image_count: int) -> list[tuple[int, int]]:
    return [(b.batch_size, b.gradient_accumulation) for b in full_cycle_batching(image_count)]


@pytest.mark.parametrize(
    ("images", "batch", "accumulation"),
    [(12, 6, 2), (14, 7, 2), (16, 8, 2), (18, 9, 2), (21, 7, 3), (24, 8, 3)],
)
def test_first_pair_is_the_seeds_full_cycle_pair(images, batch, accumulation):
    assert recommend(images).batching[0] == BatchRecommendation(batch_size=batch, gradient_accumulation=accumulation)


def test_24_images_lists_12x2_right_after_8x3():
    assert pairs(24)[:2] == [(8, 3), (12, 2)]


@pytest.mark.parametrize("images", [1, 2, 7, 12, 13, 17, 21, 24, 36, 97, 100, 120])
def test_every_pair_is_a_full_cycle_and_listed_once(images):
    found = pairs(images)
    assert found and all(batch * accumulation == images for batch, accumulation in found)
    assert len(set(found)) == len(found)


def test_alternatives_go_up_when_memory_allows_then_down():
    assert pairs(12) == [(6, 2), (4, 3), (3, 4), (2, 6), (1, 12)]
    assert pairs(36) == [(9, 4), (12, 3), (18, 2), (6, 6), (4, 9), (3, 12), (2, 18), (1, 36)]


def test_prime_and_small_counts():
    assert pairs(13) == [(1, 13)]  # nothing else is a full cycle; the lint suggests 12 or 14 images
    assert nearby_full_cycle(13) == 12
    assert pairs(7) == [(7, 1), (1, 7)]  # a small set fits one batch
    assert pairs(1) == [(1, 1)]
    assert pairs(0) == []


@pytest.mark.parametrize(
    ("images", "vectors"),
    [
        (5, (1, 2)),  # gap below the table
        (9, (1, 2)),
        (10, (2, 3)),
        (11, (5, 6)),
        (12, (5, 6)),
        (16, (5, 6)),
        (21, (5, 6)),
        (24, (5, 6)),
        (30, (5, 6)),
        (31, (6, 8)),  # gap 31-39
        (39, (6, 8)),
        (40, (8, 10)),
        (60, (8, 10)),  # the overlap belongs to the row listed first
        (61, (10, 12)),
        (100, (10, 12)),
        (101, (12, 16)),
        (500, (12, 16)),
    ],
)
def test_vectors_per_token_table(images, vectors):
    assert vectors_per_token_range(images) == vectors


@pytest.mark.parametrize("images", [12, 16, 21, 24])
def test_recommendations_for_the_seed_counts(images):
    recs = recommend(images)
    assert (recs.vectors_per_token_min, recs.vectors_per_token_max) == (5, 6)
    assert recs.max_steps == 3000
    first = recs.batching[0]
    assert first.batch_size * first.gradient_accumulation == images
    assert first.batch_size <= 9 and first.gradient_accumulation >= 2
