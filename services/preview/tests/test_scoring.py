"""Savepoint scoring: CLIP features, the edit-prompt text rule, the recommendation, and `evaluate` with a fake
renderer (solid colours) and the real tiny CLIP."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from services.common.errors import InvalidArgument
from services.common.models.loading import load_clip
from services.common.models.reference import resolve_model
from services.preview.scoring import (
    DEFAULT_EDIT_PROMPTS,
    SUBJECT_PROMPT,
    ClipScorer,
    SavepointInput,
    SavepointScore,
    evaluate,
    recommend,
    scoring_text,
)

RED, BLUE, GREEN = (220, 20, 20), (20, 20, 220), (20, 200, 20)


@pytest.fixture(scope="module")
def clip(tiny_models):
    path = tiny_models["clip"]
    return load_clip(resolve_model(str(path)))


@pytest.fixture(scope="module")
def scorer(clip):
    return ClipScorer(clip)


def _solid(colour, size=(40, 40)):
    return Image.new("RGB", size, colour)


def test_features_are_unit_vectors_and_batching_does_not_change_them(clip, scorer):
    images = [_solid(RED), _solid(BLUE, (64, 32)), Image.new("L", (20, 30), 128)]
    features = scorer.image_features(images)
    assert features.shape == (3, 32) and features.dtype == torch.float32
    assert torch.allclose(features.norm(dim=-1), torch.ones(3), atol=1e-5)
    texts = scorer.text_features(["a photo of a dog", "a watercolor painting of a cat on a beach"])
    assert texts.shape == (2, 32)
    assert torch.allclose(texts.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(ClipScorer(clip, batch_size=2).image_features(images), features, atol=1e-5)
    assert scorer.image_features([]).shape == (0, 32) and scorer.text_features([]).shape == (0, 32)
    assert scorer.text_features(["word " * 200]).shape == (1, 32)  # truncated to CLIP's 77 tokens, not an error


@pytest.mark.parametrize(
    "prompt, subject, expected",
    [
        ("a photo of [name] on a beach", "", "a photo on a beach"),
        ("a photo of [name] on a beach", "woman", "a photo of woman on a beach"),
        ("a watercolor painting of [name]", "", "a watercolor painting"),
        ("[name] in the snow", "", "in the snow"),
        ("[name] in the snow", " old   dog ", "old dog in the snow"),
        ("a photo of the [NAME], smiling", "", "a photo, smiling"),
        ("[name]'s house at night", "", "house at night"),
        ("[name]", "", "a photo"),
        ("a [name]", "", "a photo"),
        ("roof [name]  tiles", "", "roof tiles"),  # "of" inside a word is not a lead-in
        ("[name] and [name]", "cat", "cat and cat"),
        ("a [name]", r"c:\x \1", r"a c:\x \1"),  # the subject is text, never a regex template
    ],
)
def test_scoring_text(prompt, subject, expected):
    assert scoring_text(prompt, subject) == expected


def _scores(*rows):
    return [SavepointScore(f"s{step}", step, fidelity, editability) for step, fidelity, editability in rows]


@pytest.mark.parametrize(
    "rows, margin, expected",
    [
        ([(100, 0.5, 0.3)], 0.02, 0),  # a single savepoint
        ([(100, 0.6, 0.30), (200, 0.7, 0.29), (300, 0.8, 0.20)], 0.02, 1),  # 300 is too far from the best editability
        ([(100, 0.6, 0.30), (200, 0.7, 0.29), (300, 0.8, 0.20)], 0.10, 2),  # a wider margin lets it in
        ([(100, 0.6, 0.30), (200, 0.7, 0.29), (300, 0.8, 0.20)], 0.0, 0),  # no margin: the most editable
        ([(100, 0.6, 0.30), (200, 0.7, 0.28)], 0.02, 1),  # exactly at the margin counts as within
        ([(100, 0.7, 0.30), (200, 0.7, 0.30)], 0.02, 0),  # equal fidelity: the earlier step
        ([(300, 0.7, 0.30), (100, 0.7, 0.30), (200, 0.6, 0.31)], 0.02, 1),  # earlier step, not earlier index
    ],
)
def test_recommend(rows, margin, expected):
    assert recommend(_scores(*rows), margin) == expected


def test_recommend_refuses_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        recommend([])
    with pytest.raises(ValueError, match="margin"):
        recommend(_scores((1, 0.5, 0.5)), -0.1)


class FakeRender:
    """Subject images in the savepoint's colour, edit images in green; records each call."""

    def __init__(self):
        self.calls = []

    def __call__(self, savepoint, prompts, seeds):
        self.calls.append((savepoint.label, tuple(prompts), tuple(seeds)))
        colours = [savepoint.embedding if p == SUBJECT_PROMPT else GREEN for p in prompts]
        return [_solid(colour, (32 + seed, 32)) for colour in colours for seed in seeds]


class CountingScorer(ClipScorer):
    def __init__(self, clip):
        super().__init__(clip)
        self.image_batches, self.texts = [], []

    def image_features(self, images):
        self.image_batches.append(list(images))
        return super().image_features(images)

    def text_features(self, texts):
        self.texts.append(list(texts))
        return super().text_features(texts)


SAVEPOINTS = (SavepointInput("emb-200.safetensors", 200, BLUE), SavepointInput("emb-100.safetensors", 100, RED))
TRAINING = [_solid(RED), _solid(RED, (50, 60)), _solid((200, 40, 40))]
EDITS = ("a photo of [name] on a beach", "[name] in the snow")


def test_evaluate_scores_each_savepoint(clip, scorer):
    render, counting = FakeRender(), CountingScorer(clip)
    result = evaluate(SAVEPOINTS, TRAINING, render, counting, edit_prompts=EDITS, seeds=(1, 2), subject_word="")
    assert [(s.label, s.step) for s in result.scores] == [("emb-200.safetensors", 200), ("emb-100.safetensors", 100)]
    assert render.calls == [(sp.label, (SUBJECT_PROMPT, *EDITS), (1, 2)) for sp in SAVEPOINTS]
    assert sum(batch == TRAINING for batch in counting.image_batches) == 1  # training features once
    assert len(counting.image_batches) == 1 + len(SAVEPOINTS) and len(counting.texts) == 1
    assert counting.texts == [["a photo on a beach", "in the snow"]]

    training = scorer.image_features(TRAINING)
    for savepoint, score in zip(SAVEPOINTS, result.scores, strict=True):
        subject = scorer.image_features([_solid(savepoint.embedding, (33, 32)), _solid(savepoint.embedding, (34, 32))])
        expected = sum(float(g @ t) for g in subject for t in training) / (2 * 3)
        assert score.fidelity == pytest.approx(expected, abs=1e-5)
        # Every edit image is the same green, so editability is the mean of its cosine with the two prompts.
        green, texts = scorer.image_features([_solid(GREEN)])[0], scorer.text_features(counting.texts[0])
        assert score.editability == pytest.approx(float((texts @ green).mean()), abs=1e-5)
    red, blue = result.scores[1], result.scores[0]
    assert red.fidelity > blue.fidelity  # the red savepoint looks like the red training images
    assert result.recommended_index == recommend(result.scores, 0.02) and result.margin == 0.02


def test_evaluate_uses_the_subject_word_and_default_prompts(clip):
    counting = CountingScorer(clip)
    result = evaluate(SAVEPOINTS[:1], TRAINING[:1], FakeRender(), counting, seeds=(7,), subject_word="woman")
    assert counting.texts == [[p.replace("[name]", "woman") for p in DEFAULT_EDIT_PROMPTS]]
    assert len(result.scores) == 1 and result.recommended_index == 0


@pytest.mark.parametrize(
    "change, field",
    [
        ({"savepoints": ()}, "savepoints"),
        ({"training_images": []}, "dataset"),
        ({"seeds": ()}, "seeds"),
        ({"edit_prompts": ()}, "edit_prompts"),
        ({"edit_prompts": ("a photo on a beach",)}, "edit_prompts"),
        ({"margin": -0.5}, "editability_margin"),
        ({"margin": float("nan")}, "editability_margin"),
    ],
)
def test_evaluate_names_the_bad_field(scorer, change, field):
    args = {"savepoints": SAVEPOINTS, "training_images": TRAINING, "seeds": (1,), **change}
    render = FakeRender()
    with pytest.raises(InvalidArgument) as info:
        evaluate(args.pop("savepoints"), args.pop("training_images"), render, scorer, **args)
    assert info.value.field == field
    assert render.calls == []  # refused before any image is made


def test_evaluate_checks_the_render_count(scorer):
    def short_render(savepoint, prompts, seeds):
        return [_solid(RED)]

    with pytest.raises(ValueError, match=r"render returned 1 images .* expected one per prompt and seed \(3 x 2\)"):
        evaluate(SAVEPOINTS, TRAINING, short_render, scorer, edit_prompts=EDITS, seeds=(1, 2))
