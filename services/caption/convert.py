"""tistudio.caption.v1 messages <-> caption domain values. Defaults for unset fields are decided here, once."""

from __future__ import annotations

from services.caption.caption_dataset import CaptionPolicy
from services.caption.caption_images import ImageInput
from services.caption.captioning import GenerationSettings
from services.caption.describe import CaptionSettings
from services.caption.events import (
    CaptionDatasetSummary,
    CaptionedImage,
    ImageOutcome,
    PreprocessSummary,
    Progress,
)
from services.caption.hygiene import CleanCaption, HygieneSettings
from services.caption.images import CropMode, DecodeLimits, FocalWeights, GeometrySettings
from services.caption.lint import LintReport, LintSettings
from services.caption.preprocess_settings import ExistingCaptionAction, PreprocessSettings
from services.common.convert import FAMILY_SIZES, diagnostic_to_proto, own_store_key, progress_to_proto, storage_ref
from services.common.storage import Store
from tistudio.caption.v1 import caption_pb2 as pb

__all__ = [
    "preprocess_settings",
    "caption_settings",
    "caption_policy",
    "image_inputs",
    "lint_settings",
    "preprocess_event",
    "caption_dataset_event",
    "caption_result",
    "lint_response",
]

_EXISTING_ACTIONS = {
    pb.EXISTING_CAPTION_ACTION_UNSPECIFIED: ExistingCaptionAction.IGNORE,
    pb.EXISTING_CAPTION_ACTION_IGNORE: ExistingCaptionAction.IGNORE,
    pb.EXISTING_CAPTION_ACTION_COPY: ExistingCaptionAction.COPY,
    pb.EXISTING_CAPTION_ACTION_PREPEND: ExistingCaptionAction.PREPEND,
    pb.EXISTING_CAPTION_ACTION_APPEND: ExistingCaptionAction.APPEND,
}
_POLICIES = {
    pb.EXISTING_CAPTION_POLICY_UNSPECIFIED: CaptionPolicy.SKIP,
    pb.EXISTING_CAPTION_POLICY_SKIP: CaptionPolicy.SKIP,
    pb.EXISTING_CAPTION_POLICY_OVERWRITE: CaptionPolicy.OVERWRITE,
    pb.EXISTING_CAPTION_POLICY_PREPEND: CaptionPolicy.PREPEND,
    pb.EXISTING_CAPTION_POLICY_APPEND: CaptionPolicy.APPEND,
}
_DEFAULT_LIMITS = DecodeLimits()
_DEFAULT_GENERATION = GenerationSettings()
_DEFAULT_FOCAL = FocalWeights()


def _optional(message, name: str, default):
    return getattr(message, name) if message.HasField(name) else default


def preprocess_settings(options: pb.PreprocessOptions) -> PreprocessSettings:
    focal = options.focal_point
    geometry = GeometrySettings(
        size=options.size or FAMILY_SIZES[options.family],
        crop=CropMode.FOCAL_POINT if options.crop == pb.CROP_MODE_FOCAL_POINT else CropMode.CENTER,
        focal_weights=FocalWeights(
            face=_optional(focal, "face", _DEFAULT_FOCAL.face),
            entropy=_optional(focal, "entropy", _DEFAULT_FOCAL.entropy),
            edges=_optional(focal, "edges", _DEFAULT_FOCAL.edges),
        ),
        flip_copies=options.flip_copies,
        split=options.split.enabled,
        split_threshold=_optional(options.split, "threshold", GeometrySettings.split_threshold),
        split_overlap=_optional(options.split, "overlap", GeometrySettings.split_overlap),
        keep_alpha=options.keep_alpha,
        min_side=options.min_side or GeometrySettings.min_side,
    )
    limits = DecodeLimits(
        max_file_bytes=options.max_file_bytes or _DEFAULT_LIMITS.max_file_bytes,
        max_pixels=options.max_pixels or _DEFAULT_LIMITS.max_pixels,
    )
    return PreprocessSettings(
        geometry=geometry,
        limits=limits,
        existing_caption=_EXISTING_ACTIONS[options.existing_caption],
        caption=caption_settings(options.caption_options) if options.caption else None,
    )


def caption_settings(options: pb.CaptionOptions) -> CaptionSettings:
    hygiene = options.hygiene
    generation = GenerationSettings(
        num_beams=_optional(options, "num_beams", _DEFAULT_GENERATION.num_beams),
        min_length=_optional(options, "min_length", _DEFAULT_GENERATION.min_length),
        max_length=_optional(options, "max_length", _DEFAULT_GENERATION.max_length),
        sample=options.sample,
        top_p=_optional(options, "top_p", _DEFAULT_GENERATION.top_p),
        seed=options.seed,
        prefix=options.prefix,
        repetition_penalty=_optional(options, "repetition_penalty", None),
    )
    return CaptionSettings(
        model=options.model.reference,
        generation=generation,
        hygiene=HygieneSettings(
            enabled=_optional(hygiene, "enabled", None),
            class_phrase=hygiene.class_phrase.strip(),
            subject_variants=tuple(hygiene.subject_variants),
            collapse_repeats=_optional(hygiene, "collapse_repeats", True),
            drop_artifacts=_optional(hygiene, "drop_artifacts", True),
            comma_phrases=hygiene.comma_phrases,
        ),
    ).validate()


def caption_policy(policy: int) -> CaptionPolicy:
    return _POLICIES[policy]


def image_inputs(request: pb.CaptionRequest, store: Store) -> list[ImageInput]:
    inputs = []
    for index, image in enumerate(request.images):
        if image.HasField("ref"):
            inputs.append(ImageInput(key=own_store_key(image.ref, store, field=f"images[{index}].ref")))
        else:
            inputs.append(ImageInput(data=image.inline_data))
    return inputs


def lint_settings(request: pb.LintDatasetRequest) -> LintSettings:
    return LintSettings(
        embedding_name=request.embedding_name.strip(),
        class_phrase=request.class_phrase.strip(),
        template=request.template or LintSettings.template,
        vectors_per_token=request.vectors_per_token,
        training_size=request.training_size or FAMILY_SIZES[request.family],
    )


def caption_result(caption: CleanCaption | None) -> pb.CaptionResult | None:
    if caption is None:
        return None
    return pb.CaptionResult(
        caption=caption.caption,
        raw_caption=caption.raw,
        edits=[pb.CaptionEdit(rule=edit.rule, before=edit.before, after=edit.after) for edit in caption.edits],
    )


def preprocess_event(event: Progress | ImageOutcome | PreprocessSummary) -> pb.PreprocessResponse:
    if isinstance(event, Progress):
        return pb.PreprocessResponse(progress=progress_to_proto(event.completed, event.total))
    if isinstance(event, ImageOutcome):
        return pb.PreprocessResponse(
            image=pb.ImageOutcome(
                source_key=event.source_key,
                status=pb.IMAGE_STATUS_KEPT if event.kept else pb.IMAGE_STATUS_SKIPPED,
                reason=diagnostic_to_proto(event.reason) if event.reason is not None else None,
                derived_keys=event.derived_keys,
                notes=[diagnostic_to_proto(note) for note in event.notes],
                caption=caption_result(event.caption),
            )
        )
    return pb.PreprocessResponse(
        summary=pb.PreprocessSummary(
            dataset=storage_ref(event.destination),
            kept=event.kept,
            skipped=event.skipped,
            images_written=event.images_written,
        )
    )


def caption_dataset_event(event: Progress | CaptionedImage | CaptionDatasetSummary) -> pb.CaptionDatasetResponse:
    if isinstance(event, Progress):
        return pb.CaptionDatasetResponse(progress=progress_to_proto(event.completed, event.total))
    if isinstance(event, CaptionedImage):
        return pb.CaptionDatasetResponse(
            image=pb.CaptionedImage(
                image_key=event.image_key,
                caption_key=event.caption_key,
                action=int(event.action),
                result=caption_result(event.caption),
                error=diagnostic_to_proto(event.error) if event.error is not None else None,
            )
        )
    return pb.CaptionDatasetResponse(
        summary=pb.CaptionDatasetSummary(written=event.written, skipped=event.skipped, failed=event.failed)
    )


def lint_response(report: LintReport, report_key: str | None) -> pb.LintDatasetResponse:
    stats, recommendations = report.stats, report.recommendations
    return pb.LintDatasetResponse(
        findings=[diagnostic_to_proto(finding) for finding in report.findings],
        stats=pb.LintStats(
            images=stats.images,
            captioned=stats.captioned,
            min_side=stats.min_side,
            max_side=stats.max_side,
            max_prompt_tokens=stats.max_prompt_tokens,
            duplicate_groups=stats.duplicate_groups,
        ),
        recommendations=pb.LintRecommendations(
            vectors_per_token_min=recommendations.vectors_per_token_min,
            vectors_per_token_max=recommendations.vectors_per_token_max,
            batching=[
                pb.BatchRecommendation(batch_size=pair.batch_size, gradient_accumulation=pair.gradient_accumulation)
                for pair in recommendations.batching
            ],
            max_steps=recommendations.max_steps,
        ),
        report_text=report.text,
        report=storage_ref(report_key) if report_key else None,
    )
