"""The dataset lint end to end: a fixture dataset with one planted problem per image, reports, recommendations."""

from __future__ import annotations

import json

import pytest
from PIL import ImageFilter

from services.caption.lint import LintItem, LintReport, LintSettings, lint_dataset
from services.caption.tests.test_lint_images import jpeg, photo
from services.common.diagnostics import Diagnostic, Severity
from services.common.errors import InvalidArgument
from services.common.text import ClipTokenCounter

SETTINGS = LintSettings(embedding_name="subj3ct", class_phrase="a woman")
LONG_CAPTION = "a woman, " + ", ".join(f"wearing a {colour} scarf" for colour in ["red", "blue", "green"] * 6)
UNREADABLE = Diagnostic(Severity.ERROR, "IMAGE_UNREADABLE", "not an image (truncated PNG)", "re-export it")

# key -> (image, caption, the one problem planted in it)
PLANTED = {
    "ds/01.png": (lambda: photo(100), "a woman sitting on a bench", "NEAR_DUPLICATE"),
    "ds/02.jpg": (lambda: jpeg(photo(100).resize((560, 560))), "a woman on a bench", "NEAR_DUPLICATE"),
    "ds/03.png": (lambda: None, "a woman in a park", "IMAGE_UNREADABLE"),
    "ds/04.png": (lambda: photo(104, (384, 384)), "a woman in a kitchen", "SMALLER_THAN_TRAINING_SIZE"),
    "ds/05.png": (lambda: photo(105, (960, 640)), "a woman on a beach", "NOT_SQUARE"),
    "ds/06.png": (lambda: photo(106).filter(ImageFilter.GaussianBlur(3)), "a woman in a car", "BLURRY"),
    "ds/07.png": (lambda: photo(107).convert("L").convert("RGB"), "a woman in a doorway", "GRAYSCALE_NOT_CAPTIONED"),
    "ds/08.png": (lambda: photo(108), None, "CAPTION_MISSING"),
    "ds/09.png": (lambda: photo(109), "", "CAPTION_EMPTY"),
    "ds/10.png": (lambda: photo(110), "sitting on a bench in a park", "CAPTION_CLASS_PHRASE"),
    "ds/11.png": (lambda: photo(111), "a woman, Subj3ct, smiling", "CAPTION_CONTAINS_NAME"),
    "ds/12.png": (lambda: photo(112), LONG_CAPTION, "PROMPT_TOO_LONG"),
}


def item(key: str, image, caption: str | None) -> LintItem:
    return LintItem(key=key, image=image, unreadable=None if image is not None else UNREADABLE, caption=caption)


@pytest.fixture(scope="module")
def planted() -> LintReport:
    return lint_dataset([item(key, make(), caption) for key, (make, caption, _) in PLANTED.items()], SETTINGS)


@pytest.fixture(scope="module")
def clean_items() -> list[LintItem]:
    items = [item(f"clean/{n:02}.png", photo(200 + n), f"a woman, picture {n}") for n in range(11)]
    gray = photo(300).convert("L").convert("RGB")
    return items + [item("clean/11.png", gray, "a woman, black-and-white photo")]


def codes(report: LintReport, key: str) -> set[str]:
    return {finding.code for finding in report.findings if finding.key == key}


def test_flags_every_planted_problem_and_nothing_else(planted):
    assert {key: codes(planted, key) for key in PLANTED} == {key: {code} for key, (_, _, code) in PLANTED.items()}
    assert codes(planted, "") == {"TOO_FEW_IMAGES", "RECOMMEND_VECTORS", "RECOMMEND_BATCHING", "RECOMMEND_STEPS"}


def test_severities(planted):
    severity = {finding.code: finding.severity for finding in planted.findings}
    assert severity["IMAGE_UNREADABLE"] == Severity.ERROR
    assert {code for code, s in severity.items() if s == Severity.ERROR} == {"IMAGE_UNREADABLE"}
    assert {code for code, s in severity.items() if s == Severity.INFO} == {
        "RECOMMEND_VECTORS",
        "RECOMMEND_BATCHING",
        "RECOMMEND_STEPS",
    }


def test_findings_say_what_to_change(planted):
    for finding in planted.findings:
        assert finding.message and finding.suggestion, finding.code
    near = [f for f in planted.findings if f.code == "NEAR_DUPLICATE"]
    assert [f.key for f in near] == ["ds/01.png", "ds/02.jpg"] and "ds/02.jpg" in near[0].message
    assert planted.findings[0].key == ""  # dataset-wide first


def test_stats(planted):
    stats = planted.stats
    assert (stats.images, stats.captioned, stats.duplicate_groups) == (11, 9, 1)
    assert (stats.min_side, stats.max_side) == (384, 960)
    assert stats.max_prompt_tokens > 75


def test_clean_dataset_has_only_recommendations(clean_items):
    report = lint_dataset(clean_items, SETTINGS)
    assert {(f.severity, f.key) for f in report.findings} == {(Severity.INFO, "")}
    recs = report.recommendations
    assert (recs.vectors_per_token_min, recs.vectors_per_token_max, recs.max_steps) == (5, 6, 3000)
    assert (recs.batching[0].batch_size, recs.batching[0].gradient_accumulation) == (6, 2)
    # "a photo of" 3, six vectors, "," 1, then the longest caption.
    assert report.stats.max_prompt_tokens == 3 + 6 + 1 + ClipTokenCounter.default().count(clean_items[-1].caption)


@pytest.mark.parametrize(("count", "pair"), [(12, "6 x 2"), (16, "8 x 2"), (21, "7 x 3"), (24, "8 x 3 (or 12 x 2")])
def test_report_gives_the_seeds_recommendations(count, pair):
    items = [item(f"k/{n}.png", photo(400 + n, (520, 520)), "a woman") for n in range(count)]
    report = lint_dataset(items, LintSettings(class_phrase="a woman"))
    assert f"batch size x gradient accumulation: {pair}" in report.text
    assert "vectors per token: 5-6" in report.text and "steps: 3000, preview and savepoint every 50" in report.text
    assert not codes(report, "") & {"TOO_FEW_IMAGES", "TOO_MANY_IMAGES"}


def test_report_text_is_grouped(planted):
    text = planted.text
    sections = [text.index(title) for title in ("\nDataset\n", "\nImages\n", "\nStatistics\n", "\nRecommendations\n")]
    assert sections == sorted(sections)
    images = text[sections[1] : sections[2]]
    assert "  WARNING ds/06.png BLURRY: " in images and " -> Replace it with a sharp picture" in images
    assert "  ERROR   ds/03.png IMAGE_UNREADABLE: not an image (truncated PNG) -> re-export it" in images
    assert "TOO_FEW_IMAGES" in text[sections[0] : sections[1]]
    assert text.startswith("Dataset lint: 11 images, 9 captioned; 1 error, 12 warnings")


def test_to_dict_is_json(planted):
    data = json.loads(json.dumps(planted.to_dict()))
    assert data["summary"] == {"error": 1, "warning": 12, "info": 3}
    assert data["stats"]["duplicate_groups"] == 1
    assert data["recommendations"]["batching"][0] == {"batch_size": 1, "gradient_accumulation": 11}
    unreadable = {"severity": "error", "code": "IMAGE_UNREADABLE", "key": "ds/03.png"}
    assert [f for f in data["findings"] if f.get("key") == "ds/03.png"] == [
        unreadable | {"message": UNREADABLE.message, "suggestion": UNREADABLE.suggestion}
    ]
    assert [f.get("key", "") for f in data["findings"][:4]] == ["", "", "", ""]


def test_prime_count_advises_a_nearby_count(planted):
    batching = next(f for f in planted.findings if f.code == "RECOMMEND_BATCHING")
    assert "batch size 1 x gradient accumulation 11" in batching.message
    assert "With 10 images" in batching.suggestion  # one image fewer: 5 x 2
    assert "(with 10 images a batch of 2-9 would fit a full cycle)" in planted.text


def test_the_longest_template_line_counts(clean_items):
    caption = "a woman, " + ", ".join(["a red scarf"] * 16)  # 2 + 16 * 3 + 15 commas + 1 = 66 tokens
    items = [item("t/1.png", clean_items[0].image, caption)]
    short = LintSettings(class_phrase="a woman", vectors_per_token=2)
    assert not codes(lint_dataset(items, short), "t/1.png")
    long_line = "[name], [filewords], highly detailed photograph, sharp focus"
    report = lint_dataset(
        items, LintSettings(class_phrase="a woman", vectors_per_token=2, template=short.template + "\n\n" + long_line)
    )
    [finding] = [f for f in report.findings if f.key == "t/1.png"]
    assert finding.code == "PROMPT_TOO_LONG" and long_line in finding.message


def test_template_problems(clean_items):
    def template_codes(template: str) -> dict[str, Severity]:
        report = lint_dataset(clean_items[:1], LintSettings(template=template))
        return {f.code: f.severity for f in report.findings if f.code.startswith("TEMPLATE")}

    assert template_codes("a photo of a woman, [filewords]") == {"TEMPLATE_NO_NAME": Severity.ERROR}
    assert template_codes("a photo of [name], [filewords]\na photo, [filewords]") == {
        "TEMPLATE_LINE_WITHOUT_NAME": Severity.WARNING
    }
    assert template_codes("a painting by [name]") == {"TEMPLATE_NO_FILEWORDS": Severity.INFO}
    assert template_codes("") == {}  # empty means the default template


def test_vectors_outside_the_recommendation(clean_items):
    report = lint_dataset(clean_items, LintSettings(class_phrase="a woman", vectors_per_token=12))
    [finding] = [f for f in report.findings if f.code == "VECTORS_OUTSIDE_RECOMMENDATION"]
    assert "5-6" in finding.message and finding.field == "vectors_per_token"


def test_no_images_is_an_error_and_too_many_a_warning():
    report = lint_dataset([], SETTINGS)
    assert [(f.code, f.severity) for f in report.findings] == [("NO_IMAGES", Severity.ERROR)]
    assert report.stats.images == 0 and report.recommendations.batching == ()
    many = [item(f"m/{n}.png", photo(500 + n, (512, 512)), "a woman") for n in range(25)]
    assert "TOO_MANY_IMAGES" in codes(lint_dataset(many, SETTINGS), "")


def test_original_size_overrides_the_decoded_size(clean_items):
    decoded = clean_items[0].image
    small = LintItem("o/1.png", decoded, None, "a woman", original_size=(300, 300))
    assert codes(lint_dataset([small], SETTINGS), "o/1.png") == {"SMALLER_THAN_TRAINING_SIZE"}


@pytest.mark.parametrize(
    ("settings", "field"),
    [(LintSettings(training_size=0), "training_size"), (LintSettings(vectors_per_token=76), "vectors_per_token")],
)
def test_invalid_settings(settings, field):
    with pytest.raises(InvalidArgument) as error:
        lint_dataset([], settings)
    assert error.value.field == field
