"""The lint's result: findings, statistics and recommendations, as data (`to_dict` for lint.json) and as text."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from services.caption.lint.recommend import SAVE_EVERY, LintRecommendations, nearby_full_cycle
from services.common.diagnostics import Diagnostic, Severity

__all__ = ["LintStats", "LintReport", "render_text", "RECOMMENDATION_CODES"]

# INFO findings that carry the recommendations: the text shows them in their own section.
RECOMMENDATION_CODES = frozenset({"RECOMMEND_VECTORS", "RECOMMEND_BATCHING", "RECOMMEND_STEPS"})


@dataclass(frozen=True)
class LintStats:
    images: int  # readable images (what training would use)
    captioned: int  # of those, with a non-empty caption
    min_side: int  # shortest side over the readable images, px (0 when there are none)
    max_side: int  # longest side, px
    max_prompt_tokens: int  # the longest prompt (template line + caption), CLIP tokens without start/end
    duplicate_groups: int  # groups of near-duplicate images


@dataclass(frozen=True)
class LintReport:
    findings: tuple[Diagnostic, ...]  # per-image ones carry key; dataset-wide ones have key ""
    stats: LintStats
    recommendations: LintRecommendations
    text: str  # the same as a readable report

    def count(self, severity: Severity) -> int:
        return sum(finding.severity == severity for finding in self.findings)

    def to_dict(self) -> dict:
        """JSON form (lint.json)."""
        return {
            "summary": {severity.name.lower(): self.count(severity) for severity in reversed(Severity)},
            "findings": [finding.to_dict() for finding in self.findings],
            "stats": asdict(self.stats),
            "recommendations": asdict(self.recommendations),
            "text": self.text,
        }


def render_text(findings: tuple[Diagnostic, ...], stats: LintStats, recs: LintRecommendations) -> str:
    """Dataset-wide findings, then per image (worst first within each), then statistics and recommendations."""
    errors = sum(f.severity == Severity.ERROR for f in findings)
    warnings = sum(f.severity == Severity.WARNING for f in findings)
    summary = f"{_plural(stats.images, 'image')}, {stats.captioned} captioned"
    lines = [f"Dataset lint: {summary}; {_plural(errors, 'error')}, {_plural(warnings, 'warning')}"]
    dataset = [f for f in findings if not f.key and f.code not in RECOMMENDATION_CODES]
    per_image = [f for f in findings if f.key]
    lines += ["", "Dataset"] + ([_line(f) for f in dataset] or ["  no problems found"])
    lines += ["", "Images"] + ([_line(f) for f in per_image] or ["  no problems found"])
    sides = f"{stats.min_side}-{stats.max_side} px" if stats.images else "none"
    lines += [
        "",
        "Statistics",
        f"  images: {stats.images} (captioned: {stats.captioned})",
        f"  image sides: {sides}",
        f"  longest prompt: {stats.max_prompt_tokens} CLIP tokens (limit 75)",
        f"  near-duplicate groups: {stats.duplicate_groups}",
        "",
        "Recommendations",
        f"  vectors per token: {recs.vectors_per_token_min}-{recs.vectors_per_token_max}",
    ]
    if recs.batching:
        first, *others = recs.batching
        pairs = f"{first.batch_size} x {first.gradient_accumulation}"
        if others:
            pairs += " (or " + ", ".join(f"{b.batch_size} x {b.gradient_accumulation}" for b in others) + ")"
        lines.append(f"  batch size x gradient accumulation: {pairs}")
        nearby = nearby_full_cycle(stats.images)
        if first.batch_size == 1 and stats.images > 1 and nearby is not None:
            lines.append(f"    (with {nearby} images a batch of 2-9 would fit a full cycle)")
    lines.append(f"  steps: {recs.max_steps}, preview and savepoint every {SAVE_EVERY}")
    return "\n".join(lines) + "\n"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _line(finding: Diagnostic) -> str:
    where = f" {finding.key}" if finding.key else ""
    advice = f" -> {finding.suggestion}" if finding.suggestion else ""
    return f"  {finding.severity.name:<7}{where} {finding.code}: {finding.message}{advice}"
