"""Prompt templates and caption processing: A1111's shipped lines, substitution, tag shuffle / keep-N / dropout."""

from __future__ import annotations

import json
import random

import pytest

from services.common.errors import InvalidArgument
from services.trainer.templates import (
    BUILTIN_TEMPLATES,
    CaptionProcessing,
    PromptSampler,
    PromptTemplate,
    build_prompt,
    filewords_for,
    process_tags,
)

# A1111's textual_inversion_templates/style.txt and subject.txt, line for line (duplicates included).
A1111_STYLE = [
    f"{what}, art by [name]"
    for what in (
        "a painting", "a rendering", "a cropped painting", "the painting", "a clean painting", "a dirty painting",
        "a dark painting", "a picture", "a cool painting", "a close-up painting", "a bright painting",
        "a cropped painting", "a good painting", "a close-up painting", "a rendition", "a nice painting",
        "a small painting", "a weird painting", "a large painting",
    )
]  # fmt: skip
A1111_SUBJECT = [
    "a photo of a [name]", "a rendering of a [name]", "a cropped photo of the [name]", "the photo of a [name]",
    "a photo of a clean [name]", "a photo of a dirty [name]", "a dark photo of the [name]", "a photo of my [name]",
    "a photo of the cool [name]", "a close-up photo of a [name]", "a bright photo of the [name]",
    "a cropped photo of a [name]", "a photo of the [name]", "a good photo of the [name]", "a photo of one [name]",
    "a close-up photo of the [name]", "a rendition of the [name]", "a photo of the clean [name]",
    "a rendition of a [name]", "a photo of a nice [name]", "a good photo of a [name]", "a photo of the nice [name]",
    "a photo of the small [name]", "a photo of the weird [name]", "a photo of the large [name]",
    "a photo of a cool [name]", "a photo of a small [name]",
]  # fmt: skip

CAPTION = "a woman, with a ponytail, sitting in a chair, smiling, indoors, daylight"
TAGS = CAPTION.split(",")


def test_builtins_hold_a1111s_exact_lines() -> None:
    assert set(BUILTIN_TEMPLATES) == {"none", "style", "style_filewords", "subject", "subject_filewords",
                                      "photo_filewords"}  # fmt: skip
    assert PromptTemplate.builtin("none").lines == ("picture",)
    assert list(PromptTemplate.builtin("style").lines) == A1111_STYLE
    # style_filewords is style.txt with " of [filewords]" before ", art by" (A1111's default template).
    assert list(PromptTemplate.builtin("style_filewords").lines) == [
        line.replace(", art by", " of [filewords], art by") for line in A1111_STYLE
    ]
    assert list(PromptTemplate.builtin("subject").lines) == A1111_SUBJECT
    assert list(PromptTemplate.builtin("subject_filewords").lines) == [f"{x}, [filewords]" for x in A1111_SUBJECT]
    assert PromptTemplate.builtin("photo_filewords").lines == ("a photo of [name], [filewords]",)
    assert PromptTemplate.builtin("style_filewords").uses_filewords
    assert not PromptTemplate.builtin("subject").uses_filewords
    assert not PromptTemplate.builtin("none").uses_name and PromptTemplate.builtin("style").uses_name


def test_unknown_builtin_lists_the_names() -> None:
    with pytest.raises(InvalidArgument) as info:
        PromptTemplate.builtin("subject_filewords_woman")
    assert info.value.field == "spec.template" and info.value.reason == "TEMPLATE_UNKNOWN"
    assert "none, style, style_filewords, subject, subject_filewords, photo_filewords" in info.value.message


def test_from_text_strips_lines_and_ignores_blank_ones() -> None:
    template = PromptTemplate.from_text("\ufeffa photo of [name]\r\n\r\n  a drawing of [name], [filewords]  \n\n")
    assert template.name == "custom"
    assert template.lines == ("a photo of [name]", "a drawing of [name], [filewords]")
    assert template.uses_filewords
    # A line without [name] is allowed while another line has it (A1111 allows any line).
    assert PromptTemplate.from_text("a photo of [name]\n[filewords]").lines == ("a photo of [name]", "[filewords]")


def test_from_text_refuses_a_template_without_name() -> None:
    with pytest.raises(InvalidArgument) as info:
        PromptTemplate.from_text("a photo of a woman, [filewords]\nportrait, [filewords]")
    assert info.value.reason == "TEMPLATE_WITHOUT_NAME" and info.value.field == "spec.template_text"
    assert "2 line(s)" in info.value.message and "[name]" in info.value.message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "the template is empty"),
        (" \n\t\n", "the template is empty"),
        ("a photo of [name]\n\na photo of [Name], [file words]", "line 3: [Name] is not a placeholder; line 3: [file"),
        ("a photo of [name], [filename]", "line 1: [filename] is not a placeholder"),
    ],
)
def test_from_text_reports_problems_by_line(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        PromptTemplate.from_text(text)
    assert info.value.reason == "TEMPLATE_INVALID" and fragment in info.value.message


def test_emphasis_brackets_are_not_placeholder_typos() -> None:
    assert PromptTemplate.from_text("a photo of [name], [blurry], [filewords]").lines == (
        "a photo of [name], [blurry], [filewords]",
    )


def test_substitution_without_processing_keeps_the_caption_exactly() -> None:
    rng = random.Random(0)
    before = rng.getstate()
    prompt = build_prompt(
        "a photo of [name], [filewords]", "subj3ct", " a woman,with  odd spacing", CaptionProcessing(), rng
    )
    assert prompt == "a photo of subj3ct,  a woman,with  odd spacing"
    assert rng.getstate() == before  # nothing drawn when tags neither shuffle nor drop
    # A1111 replaces [filewords] first, so [name] inside a caption becomes the embedding too.
    assert build_prompt("[filewords]", "subj3ct", "[name] wearing a hat", CaptionProcessing(), rng) == (
        "subj3ct wearing a hat"
    )


def test_keep_tags_never_move_or_drop() -> None:
    processing = CaptionProcessing(shuffle_tags=True, keep_tags=2, tag_dropout=0.5)
    rng = random.Random(7)
    orders = set()
    for _ in range(2000):
        tags = process_tags(CAPTION, processing, rng).split(",")
        assert tags[:2] == TAGS[:2]
        assert set(tags[2:]) <= set(TAGS[2:]) and len(set(tags)) == len(tags)
        orders.add(tuple(tags[2:]))
    # The rest really is shuffled and dropped: 65 orders of subsets of 4 tags are possible.
    assert len(orders) > 40
    assert any(list(o) != sorted(o, key=TAGS.index) for o in orders) and any(len(o) < 4 for o in orders)


def test_shuffle_alone_moves_every_tag_and_drops_none() -> None:
    rng = random.Random(3)
    results = [process_tags(CAPTION, CaptionProcessing(shuffle_tags=True), rng).split(",") for _ in range(500)]
    assert all(sorted(tags) == sorted(TAGS) for tags in results)
    assert {tags[0] for tags in results} == set(TAGS)  # with keep_tags 0, "a woman" moves too (A1111)


@pytest.mark.parametrize("keep", [0, 3])
def test_dropout_rate_is_close_and_never_touches_kept_tags(keep: int) -> None:
    processing = CaptionProcessing(keep_tags=keep, tag_dropout=0.3)
    rng = random.Random(11)
    draws, dropped = 4000, 0
    for _ in range(draws):
        text = process_tags(CAPTION, processing, rng)
        tags = text.split(",") if text else []  # every tag may drop when none is kept
        assert tags[:keep] == TAGS[:keep]
        assert tags == [t for t in TAGS if t in tags]  # order kept without shuffle
        dropped += len(TAGS) - len(tags)
    assert dropped / (draws * (len(TAGS) - keep)) == pytest.approx(0.3, abs=0.015)


def test_sampler_reproduces_a1111_create_text_draw_for_draw() -> None:
    # A labelled re-implementation of A1111's PersonalizedBase.create_text (modules/textual_inversion/dataset.py),
    # written from a reading of its source, with the module-level `random` replaced by a seeded Random.
    def a1111_create_text(rng: random.Random, lines, filename_text, placeholder, shuffle_tags, tag_drop_out):
        text = rng.choice(lines)
        tags = filename_text.split(",")
        if tag_drop_out != 0:
            tags = [t for t in tags if rng.random() > tag_drop_out]
        if shuffle_tags:
            rng.shuffle(tags)
        text = text.replace("[filewords]", ",".join(tags))
        return text.replace("[name]", placeholder)

    template = PromptTemplate.builtin("subject_filewords")
    for shuffle, dropout in [(True, 0.1), (False, 0.1), (True, 0.0), (False, 0.0)]:
        sampler = PromptSampler(template, CaptionProcessing(shuffle_tags=shuffle, tag_dropout=dropout), seed=5)
        reference = random.Random(5)
        for _ in range(300):
            expected = a1111_create_text(reference, template.lines, CAPTION, "subj3ct", shuffle, dropout)
            assert sampler.prompt("subj3ct", CAPTION) == expected


def test_sampler_draws_every_line() -> None:
    template = PromptTemplate.builtin("style")
    sampler = PromptSampler(template, CaptionProcessing(), seed=1)
    assert {sampler.prompt("x", "") for _ in range(500)} == {line.replace("[name]", "x") for line in template.lines}


def test_sampler_state_restores_the_identical_continuation() -> None:
    processing = CaptionProcessing(shuffle_tags=True, keep_tags=1, tag_dropout=0.1)
    template = PromptTemplate.builtin("subject_filewords")
    sampler = PromptSampler(template, processing, seed=42)
    for _ in range(17):
        sampler.prompt("subj3ct", CAPTION)
    saved = json.loads(json.dumps(sampler.state()))  # through JSON, as a savepoint stores it
    continuation = [sampler.prompt("subj3ct", CAPTION) for _ in range(50)]

    restored = PromptSampler(template, processing, seed=999)
    restored.set_state(saved)
    assert [restored.prompt("subj3ct", CAPTION) for _ in range(50)] == continuation
    fresh = PromptSampler(template, processing, seed=42)
    assert [fresh.prompt("subj3ct", CAPTION) for _ in range(50)] != continuation


@pytest.mark.parametrize("state", [None, {}, {"version": 3, "internal": [1, 2], "gauss_next": None}, [1, 2, 3]])
def test_sampler_refuses_a_foreign_state(state: object) -> None:
    sampler = PromptSampler(PromptTemplate.builtin("none"), CaptionProcessing(), seed=1)
    with pytest.raises(ValueError, match="prompt-sampler state"):
        sampler.set_state(state)


@pytest.mark.parametrize(
    ("key", "caption", "expected"),
    [
        ("datasets/anna/00012-a woman, smiling.png", None, "a woman, smiling"),
        ("datasets/anna/001.png", None, ""),  # only digits: empty filewords, as A1111
        ("0012--cat on a mat.jpg", None, "cat on a mat"),
        ("12 - cat.jpg", None, "- cat"),  # A1111's regex: a dash after the spaces stays
        ("1a-dog.jpg", None, "a-dog"),  # only the leading run of digits and dashes
        ("photo.of.a.cat.webp", None, "photo.of.a.cat"),  # only the last extension goes
        ("datasets/anna/001.png", "a woman, with a ponytail\n", "a woman, with a ponytail"),
        ("datasets/anna/001.png", "\ufeffa woman\r\n", "a woman"),
        ("datasets/anna/00012-a woman.png", "", ""),  # an empty caption file wins over the file name (A1111)
    ],
)
def test_filewords(key: str, caption: str | None, expected: str) -> None:
    assert filewords_for(key, caption) == expected


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"keep_tags": -1}, "spec.keep_tags"),
        ({"tag_dropout": 1.0}, "spec.tag_dropout"),
        ({"tag_dropout": -0.1}, "spec.tag_dropout"),
        ({"tag_dropout": float("nan")}, "spec.tag_dropout"),
    ],
)
def test_caption_processing_validation(kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        CaptionProcessing(**kwargs)
    assert info.value.field == field
