"""`lint_dataset`: every check over a decoded dataset, as one report. Pure: the service decodes and stores."""

from __future__ import annotations

from collections.abc import Sequence

from services.caption.lint import image_checks
from services.caption.lint.checks import (
    LintItem,
    LintSettings,
    caption_findings,
    dataset_findings,
    duplicate_findings,
    image_findings,
    prompt_findings,
    template_findings,
    template_lines,
)
from services.caption.lint.recommend import recommend
from services.caption.lint.report import LintReport, LintStats, render_text
from services.common.diagnostics import Diagnostic, Severity
from services.common.errors import InvalidArgument
from services.common.text.clip_tokens import ClipTokenCounter, prompt_tokens

__all__ = ["lint_dataset"]


def lint_dataset(
    items: Sequence[LintItem], settings: LintSettings, *, tokens: ClipTokenCounter | None = None
) -> LintReport:
    """Findings for every item (in the order given) and for the dataset, with stats and recommendations."""
    _validate(settings)
    counter = tokens or ClipTokenCounter.default()
    readable = [item for item in items if item.image is not None]
    recs = recommend(len(readable))
    vectors = settings.vectors_per_token or recs.vectors_per_token_max
    lines = template_lines(settings.template)

    per_key: dict[str, list[Diagnostic]] = {item.key: [] for item in items}
    for item in items:
        # A decoder note on an image that still decoded (e.g. a truncated file) is reported too, as is.
        if item.image is None or item.unreadable is not None:
            per_key[item.key].append(_unreadable(item))
    groups = image_checks.near_duplicate_groups([image_checks.phash(item.image) for item in readable])
    duplicates = duplicate_findings([item.key for item in readable], groups)
    longest = 0
    for item in readable:
        found, grayscale = image_findings(item, item.image, settings)
        if item.key in duplicates:
            found.append(duplicates[item.key])
        found += caption_findings(item.caption, grayscale, settings)
        # A missing caption counts as empty: A1111 would use the file name, which is a few tokens at most.
        counts = [
            (prompt_tokens(line, item.caption or "", settings.embedding_name, vectors, counter), line) for line in lines
        ]
        if counts:
            count, line = max(counts)
            longest = max(longest, count)
            found += prompt_findings(count, line)
        per_key[item.key] += found

    dataset = template_findings(lines) + dataset_findings(len(readable), settings, recs)
    findings = tuple(_by_severity(dataset)) + tuple(
        finding.for_key(key) for key, found in per_key.items() for finding in _by_severity(found)
    )
    sizes = [item.size for item in readable if item.size is not None]
    stats = LintStats(
        images=len(readable),
        captioned=sum(bool(item.caption and item.caption.strip()) for item in readable),
        min_side=min((min(size) for size in sizes), default=0),
        max_side=max((max(size) for size in sizes), default=0),
        max_prompt_tokens=longest,
        duplicate_groups=len(groups),
    )
    return LintReport(findings=findings, stats=stats, recommendations=recs, text=render_text(findings, stats, recs))


def _validate(settings: LintSettings) -> None:
    if settings.training_size < 1:
        raise InvalidArgument(f"training_size must be positive, got {settings.training_size}", field="training_size")
    if settings.vectors_per_token < 0 or settings.vectors_per_token > 75:
        raise InvalidArgument(
            f"vectors_per_token must be 0 (recommended) or 1-75, got {settings.vectors_per_token}",
            field="vectors_per_token",
        )


def _unreadable(item: LintItem) -> Diagnostic:
    if item.unreadable is not None:
        return item.unreadable
    return Diagnostic(
        Severity.ERROR,
        "IMAGE_UNREADABLE",
        "The image could not be decoded, so training cannot use it.",
        "Re-export it as PNG or JPEG, or remove it from the dataset.",
    )


def _by_severity(findings: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(findings, key=lambda finding: -finding.severity)
