"""The lint's checks: one image and its caption, the template, and the dataset as a whole.

Severities: ERROR only where training would fail or learn nothing (no readable image, an image that cannot be
read, a template without `[name]`); WARNING for what the seed guides say hurts the embedding; INFO for advice.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from services.caption.lint import image_checks
from services.caption.lint.recommend import SAVE_EVERY, LintRecommendations, nearby_full_cycle
from services.common.diagnostics import Diagnostic, Severity
from services.common.text.clip_tokens import CONTEXT_TOKENS, FILEWORDS_PLACEHOLDER, NAME_PLACEHOLDER

__all__ = [
    "DEFAULT_TEMPLATE",
    "GUIDE_MIN_IMAGES",
    "GUIDE_MAX_IMAGES",
    "SQUARE_TOLERANCE",
    "LintSettings",
    "LintItem",
    "template_lines",
    "template_findings",
    "image_findings",
    "caption_findings",
    "prompt_findings",
    "duplicate_findings",
    "dataset_findings",
]

DEFAULT_TEMPLATE = "a photo of [name], [filewords]"  # the seed's custom_subject_filewords.txt
GUIDE_MIN_IMAGES, GUIDE_MAX_IMAGES = 12, 24  # the first seed: "I use between 12 and 24"
SQUARE_TOLERANCE = 0.02  # sides within 2% count as 1:1 (the crop would remove a few pixels of edge)
# What counts as saying a picture is black and white.
_MONOCHROME = re.compile(r"black[\s-]*(?:and|&)[\s-]*white|\bb\s*[&/]\s*w\b|monochrome|gr[ae]yscale", re.I)


@dataclass(frozen=True)
class LintSettings:
    embedding_name: str = ""  # the trigger word; captions must not contain it
    class_phrase: str = ""  # e.g. "a woman": every caption should start with it
    template: str = DEFAULT_TEMPLATE  # one prompt per line; each line is checked, the longest counts
    vectors_per_token: int = 0  # 0: the recommendation's maximum (they count against the 75-token budget)
    training_size: int = 512  # the square side training uses


@dataclass(frozen=True)
class LintItem:
    key: str  # the image's key in the store
    image: Image.Image | None  # decoded RGB; None when unreadable
    unreadable: Diagnostic | None  # why it could not be decoded (becomes a finding as is)
    caption: str | None  # None: no caption file; "": an empty caption file
    original_size: tuple[int, int] | None = None  # (w, h) before any conversion, when known; else image.size

    @property
    def size(self) -> tuple[int, int] | None:
        if self.original_size is not None:
            return self.original_size
        return self.image.size if self.image is not None else None


def template_lines(template: str) -> list[str]:
    lines = [line.strip() for line in (template or DEFAULT_TEMPLATE).splitlines()]
    return [line for line in lines if line]


def template_findings(lines: Sequence[str]) -> list[Diagnostic]:
    if not lines or not any(NAME_PLACEHOLDER in line for line in lines):
        return [
            Diagnostic(
                Severity.ERROR,
                "TEMPLATE_NO_NAME",
                "No template line contains [name], so no prompt would use the embedding and training learns nothing.",
                f"Put [name] where the embedding goes, e.g. '{DEFAULT_TEMPLATE}'.",
                field="template",
            )
        ]
    findings = []
    without = [line for line in lines if NAME_PLACEHOLDER not in line]
    if without:
        findings.append(
            Diagnostic(
                Severity.WARNING,
                "TEMPLATE_LINE_WITHOUT_NAME",
                f"{len(without)} template line(s) lack [name] (e.g. '{without[0]}'); steps drawing them train nothing.",
                "Add [name] to every line or remove those lines.",
                field="template",
            )
        )
    if not any(FILEWORDS_PLACEHOLDER in line for line in lines):
        findings.append(
            Diagnostic(
                Severity.INFO,
                "TEMPLATE_NO_FILEWORDS",
                "The template has no [filewords], so the captions are not used in training.",
                "Use a template with [filewords] (e.g. 'a photo of [name], [filewords]') to train with the captions.",
                field="template",
            )
        )
    return findings


def image_findings(item: LintItem, image: Image.Image, settings: LintSettings) -> tuple[list[Diagnostic], bool]:
    """Size, shape, sharpness and colour of one readable image; also whether it is grayscale."""
    findings = []
    width, height = item.size or image.size
    side = min(width, height)
    if side < settings.training_size:
        findings.append(
            _warn(
                "SMALLER_THAN_TRAINING_SIZE",
                f"{width}x{height} px: the short side is below the training size of {settings.training_size} px, "
                "so the picture is enlarged and faces come out soft.",
                f"Use a source of at least {settings.training_size}x{settings.training_size} px, or drop this one.",
            )
        )
    if abs(width - height) > SQUARE_TOLERANCE * max(width, height):
        findings.append(
            _warn(
                "NOT_SQUARE",
                f"{width}x{height} px is not 1:1; training crops it to a square and may cut off part of the subject.",
                "Crop it to 1:1 yourself, or run Preprocess with the focal-point crop.",
            )
        )
    sharpness = image_checks.laplacian_variance(image, settings.training_size)
    if sharpness < image_checks.BLUR_THRESHOLD:
        findings.append(
            _warn(
                "BLURRY",
                f"Looks blurred (sharpness {sharpness:.0f}, below {image_checks.BLUR_THRESHOLD:.0f}); the embedding "
                "learns the blur along with the subject.",
                "Replace it with a sharp picture, or remove it.",
            )
        )
    return findings, image_checks.is_grayscale(image)


def caption_findings(caption: str | None, grayscale: bool, settings: LintSettings) -> list[Diagnostic]:
    if caption is None:
        return [
            _warn(
                "CAPTION_MISSING",
                "No caption file: [filewords] becomes the file name, which describes nothing.",
                "Write a caption (<image stem>.txt), e.g. with CaptionDataset.",
            )
        ]
    if not caption.strip():
        return [
            _warn(
                "CAPTION_EMPTY",
                "The caption file is empty, so the prompt says nothing about what else is in the picture.",
                "Describe the picture, starting with the class phrase (e.g. 'a woman, sitting on a bench').",
            )
        ]
    findings = []
    phrase = " ".join(settings.class_phrase.split())
    if phrase and not re.match(rf"\s*{re.escape(phrase)}(?![\w-])", caption, re.I):
        findings.append(
            _warn(
                "CAPTION_CLASS_PHRASE",
                f"The caption does not start with the class phrase '{phrase}'.",
                f"Start every caption with '{phrase}' (caption hygiene does it: set the class phrase).",
            )
        )
    name = settings.embedding_name.strip()
    if name and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", caption, re.I):
        findings.append(
            _warn(
                "CAPTION_CONTAINS_NAME",
                f"The caption contains the embedding name '{name}'; the template already adds it with [name].",
                f"Remove '{name}' from the caption.",
            )
        )
    if grayscale and not _MONOCHROME.search(caption):
        findings.append(
            _warn(
                "GRAYSCALE_NOT_CAPTIONED",
                "The picture is black and white but the caption does not say so; the embedding may learn grayscale.",
                "Add 'black and white' to the caption.",
            )
        )
    return findings


def prompt_findings(tokens: int, line: str) -> list[Diagnostic]:
    if tokens <= CONTEXT_TOKENS:
        return []
    return [
        _warn(
            "PROMPT_TOO_LONG",
            f"The prompt is {tokens} CLIP tokens with template line '{line}' (the limit is {CONTEXT_TOKENS}); the "
            "tokens past it are cut off or land in a second chunk.",
            "Shorten the caption: keep what is in the picture that the embedding should not learn.",
        )
    ]


def duplicate_findings(keys: Sequence[str], groups: Sequence[Sequence[int]]) -> dict[str, Diagnostic]:
    findings = {}
    for group in groups:
        for index in group:
            others = ", ".join(keys[other] for other in group if other != index)
            findings[keys[index]] = _warn(
                "NEAR_DUPLICATE",
                f"Looks like the same picture as {others}; near-copies weigh that picture more than the others.",
                "Keep the best of them and remove the rest, or replace them with different pictures.",
            )
    return findings


def dataset_findings(image_count: int, settings: LintSettings, recs: LintRecommendations) -> list[Diagnostic]:
    findings = []
    if image_count == 0:
        findings.append(
            Diagnostic(
                Severity.ERROR,
                "NO_IMAGES",
                "The dataset has no readable image, so there is nothing to train on.",
                f"Add {GUIDE_MIN_IMAGES}-{GUIDE_MAX_IMAGES} pictures of the subject.",
            )
        )
        return findings
    if image_count < GUIDE_MIN_IMAGES:
        findings.append(
            _warn(
                "TOO_FEW_IMAGES",
                f"{image_count} readable images; the users' guide uses {GUIDE_MIN_IMAGES}-{GUIDE_MAX_IMAGES}: "
                "too few show too little variety.",
                f"Add pictures with other angles, expressions and backgrounds, up to {GUIDE_MIN_IMAGES} or more.",
            )
        )
    elif image_count > GUIDE_MAX_IMAGES:
        findings.append(
            _warn(
                "TOO_MANY_IMAGES",
                f"{image_count} readable images; the users' guide uses {GUIDE_MIN_IMAGES}-{GUIDE_MAX_IMAGES}: "
                "too many blur the concept.",
                f"Keep the best {GUIDE_MAX_IMAGES} or fewer, or raise the vectors per token as recommended.",
            )
        )
    low, high = recs.vectors_per_token_min, recs.vectors_per_token_max
    if settings.vectors_per_token and not low <= settings.vectors_per_token <= high:
        findings.append(
            _warn(
                "VECTORS_OUTSIDE_RECOMMENDATION",
                f"{settings.vectors_per_token} vectors per token is outside the {low}-{high} recommended for "
                f"{image_count} images; more vectors need more pictures, fewer capture less.",
                f"Use {low}-{high} vectors per token, or change the number of images.",
                field="vectors_per_token",
            )
        )
    findings.extend(_recommendation_findings(image_count, recs))
    return findings


def _recommendation_findings(image_count: int, recs: LintRecommendations) -> list[Diagnostic]:
    low, high = recs.vectors_per_token_min, recs.vectors_per_token_max
    first, *others = recs.batching
    batching = f"batch size {first.batch_size} x gradient accumulation {first.gradient_accumulation}"
    alternatives = ", ".join(f"{b.batch_size}x{b.gradient_accumulation}" for b in others[:3])
    advice = f"Alternatives: {alternatives}." if alternatives else ""
    nearby = nearby_full_cycle(image_count)
    if first.batch_size == 1 and image_count > 1 and nearby is not None:
        advice += f" With {nearby} images a batch of 2-9 would fit a full cycle."
    return [
        Diagnostic(
            Severity.INFO,
            "RECOMMEND_VECTORS",
            f"{low}-{high} vectors per token for {image_count} images (the users' table).",
            f"Create the embedding with {low}-{high} vectors per token.",
        ),
        Diagnostic(
            Severity.INFO,
            "RECOMMEND_BATCHING",
            f"Full-cycle batching for {image_count} images: {batching}, so each step sees every image once.",
            (advice + " Larger batches need more GPU memory.").strip(),
        ),
        Diagnostic(
            Severity.INFO,
            "RECOMMEND_STEPS",
            f"{recs.max_steps} steps with a preview and a savepoint every {SAVE_EVERY} (recipe A); the second guide "
            "saw little change after 2000.",
            "Watch the previews and keep the savepoint where the subject looks right.",
        ),
    ]


def _warn(code: str, message: str, suggestion: str, field: str = "") -> Diagnostic:
    return Diagnostic(Severity.WARNING, code, message, suggestion, field=field)
