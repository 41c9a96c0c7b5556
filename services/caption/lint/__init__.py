"""Dataset lint: what the seed guides check by hand before training, and their recommendations.

    report = lint_dataset(items, LintSettings(embedding_name="subj3ct", class_phrase="a woman"))
    report.findings          # Diagnostics: per-image ones carry the image key
    report.recommendations   # vectors per token, full-cycle batching, steps
    report.text              # the same, readable

Pure domain code: the caption service lists, decodes and stores; this only looks at decoded images and captions.
"""

from __future__ import annotations

from services.caption.lint.checks import DEFAULT_TEMPLATE, LintItem, LintSettings
from services.caption.lint.dataset import lint_dataset
from services.caption.lint.recommend import BatchRecommendation, LintRecommendations, recommend
from services.caption.lint.report import LintReport, LintStats

__all__ = [
    "DEFAULT_TEMPLATE",
    "LintSettings",
    "LintItem",
    "BatchRecommendation",
    "LintStats",
    "LintRecommendations",
    "LintReport",
    "lint_dataset",
    "recommend",
]
