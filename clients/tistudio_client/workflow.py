"""The steps of a run, as functions over a `Tistudio` client: prepare a dataset, plan, start, export.

A dataset prepared from "photos/anna" under prefix "datasets/anna" lives at "datasets/anna/raw/" (the upload,
as is) and "datasets/anna/train/" (cropped, resized, captioned: what training reads).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tistudio.caption.v1 import caption_pb2 as cap
from tistudio.common.v1 import common_pb2
from tistudio.trainer.v1 import trainer_pb2 as tr
from tistudio_client.datasets import download, folder_prefix, upload_folder
from tistudio_client.errors import Internal, InvalidArgument, TransferError
from tistudio_client.service_clients import TrainerClient

if TYPE_CHECKING:
    from tistudio_client.client import Tistudio

__all__ = ["FORMATS", "Prepared", "prepare_dataset", "plan", "start", "export", "embedding_format"]

# Names accepted for export formats (and the enum values themselves).
FORMATS = {
    "safetensors": tr.EMBEDDING_FORMAT_SAFETENSORS,
    "pt": tr.EMBEDDING_FORMAT_A1111_PT,
    "a1111": tr.EMBEDDING_FORMAT_A1111_PT,
    "a1111_pt": tr.EMBEDDING_FORMAT_A1111_PT,
    "diffusers": tr.EMBEDDING_FORMAT_DIFFUSERS,
}


@dataclass
class Prepared:
    raw: common_pb2.StorageRef  # the uploaded originals
    dataset: common_pb2.StorageRef  # the training set: pass it as TrainingSpec.dataset
    uploaded: list[str]  # keys written by the upload
    outcomes: list[cap.ImageOutcome] = field(default_factory=list)  # one per source image
    preprocess: cap.PreprocessSummary = field(default_factory=cap.PreprocessSummary)
    captions: list[cap.CaptionedImage] = field(default_factory=list)
    captioning: cap.CaptionDatasetSummary = field(default_factory=cap.CaptionDatasetSummary)
    lint: cap.LintDatasetResponse = field(default_factory=cap.LintDatasetResponse)

    @property
    def skipped(self) -> list[cap.ImageOutcome]:
        return [o for o in self.outcomes if o.status == cap.IMAGE_STATUS_SKIPPED]


def prepare_dataset(
    client: Tistudio,
    local_dir: str | os.PathLike[str],
    prefix: str,
    *,
    preprocess: cap.PreprocessOptions | None = None,
    caption: cap.CaptionOptions | None = None,
    policy: int = cap.EXISTING_CAPTION_POLICY_SKIP,
    embedding_name: str = "",
    class_phrase: str = "",
    template: str = "",
    vectors_per_token: int = 0,
    family: int = common_pb2.MODEL_FAMILY_UNSPECIFIED,
    write_report: bool = True,
    on_event: Callable[[Any], None] | None = None,
) -> Prepared:
    """Upload `local_dir` -> Preprocess -> CaptionDataset (fills in missing captions) -> LintDataset.

    Captions uploaded beside the images are kept (existing-caption action COPY unless `preprocess` says
    otherwise) and CaptionDataset's default policy skips them. `family` (a ModelFamily) sets the default image
    size of preprocessing (unless `preprocess` names a size or family) and the training size lint checks against.
    `on_event` sees every stream message.
    """
    base = folder_prefix(prefix)
    raw = common_pb2.StorageRef(key=base + "raw/")
    dataset = common_pb2.StorageRef(key=base + "train/")
    result = Prepared(raw=raw, dataset=dataset, uploaded=upload_folder(client.store, local_dir, raw.key))
    if not any(not key.endswith(".txt") for key in result.uploaded):
        raise TransferError(f"no images in {local_dir}; expected .png, .jpg, .webp, ...", path=str(local_dir))
    options = cap.PreprocessOptions()
    options.CopyFrom(preprocess or cap.PreprocessOptions(existing_caption=cap.EXISTING_CAPTION_ACTION_COPY))
    if not options.family:
        options.family = family
    summary = None
    for message in client.caption.preprocess(source=raw, destination=dataset, options=options):
        _notify(on_event, message)
        kind = message.WhichOneof("event")
        if kind == "image":
            result.outcomes.append(message.image)
        elif kind == "summary":
            summary = message.summary
    if summary is None:
        raise Internal("Preprocess ended without its summary; run prepare_dataset again (it resumes)")
    result.preprocess = summary
    for message in client.caption.caption_dataset(dataset=dataset, options=caption, policy=policy):
        _notify(on_event, message)
        kind = message.WhichOneof("event")
        if kind == "image":
            result.captions.append(message.image)
        elif kind == "summary":
            result.captioning = message.summary
    result.lint = client.caption.lint_dataset(
        dataset=dataset,
        embedding_name=embedding_name,
        class_phrase=class_phrase,
        template=template,
        vectors_per_token=vectors_per_token,
        family=family or options.family,
        write_report=write_report,
    )
    return result


def _notify(on_event: Callable[[Any], None] | None, message: Any) -> None:
    if on_event is not None:
        on_event(message)


def _spec(spec: tr.TrainingSpec | None, fields: dict[str, Any]) -> tr.TrainingSpec:
    if spec is not None and fields:
        raise TypeError("pass a TrainingSpec or its fields as keywords, not both")
    return spec if spec is not None else tr.TrainingSpec(**fields)


def plan(trainer: TrainerClient, spec: tr.TrainingSpec | None = None, **spec_fields: Any) -> tr.PlanTrainingResponse:
    """The dry run: resolved spec, step counts, schedule and diagnostics (`.ok` is False on any error)."""
    return trainer.plan_training(spec=_spec(spec, spec_fields))


def start(
    trainer: TrainerClient, spec: tr.TrainingSpec | None = None, *, request_id: str | None = None, **spec_fields: Any
) -> tr.Job:
    """Queue the job. A fresh UUID request_id makes the call safe to retry (the trainer returns the same job)."""
    request_id = request_id or uuid.uuid4().hex
    return trainer.start_training(request_id=request_id, spec=_spec(spec, spec_fields)).job


def embedding_format(value: str | int) -> int:
    if isinstance(value, int):
        if value not in FORMATS.values():
            raise InvalidArgument(f"unknown embedding format {value}", field="format")
        return value
    try:
        return FORMATS[value.lower()]
    except KeyError:
        raise InvalidArgument(
            f"unknown embedding format {value!r}; use one of {', '.join(sorted(FORMATS))}", field="format"
        ) from None


def export(
    client: Tistudio,
    source: str | tr.Job | common_pb2.StorageRef,
    local_dir: str | os.PathLike[str],
    formats: Iterable[str | int] = ("safetensors",),
    *,
    step: int = 0,
    name: str = "",
) -> list[Path]:
    """Export a job's savepoint (`source` a job id or Job; `step` 0 = latest) or an embedding file (a
    StorageRef) in each format, and copy the files into `local_dir`; return their paths.

    With a store configured the files are downloaded from it; without one their bytes come inline. Diffusers'
    form is a folder: it lands as `local_dir/<name>/learned_embeds*.safetensors`.
    """
    request = tr.ExportEmbeddingRequest(step=step, name=name, include_data=not client.has_store)
    if isinstance(source, common_pb2.StorageRef):
        request.embedding.CopyFrom(source)
    else:
        request.job_id = source.job_id if isinstance(source, tr.Job) else source
    target = Path(local_dir)
    paths = []
    for fmt in dict.fromkeys(embedding_format(f) for f in formats):
        request.format = fmt
        response = client.trainer.export_embedding(request)
        folder = target / response.embedding.name if fmt == tr.EMBEDDING_FORMAT_DIFFUSERS else target
        for file in response.files:
            path = folder / file.file.key.rsplit("/", 1)[-1]
            if file.data:
                _write_checked(path, file.data, file.sha256)
            else:
                paths.extend(download(client.store, file.file.key, folder))
                continue
            paths.append(path)
    return paths


def _write_checked(path: Path, data: bytes, sha256: str) -> None:
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise TransferError(f"{path.name} arrived corrupted (sha256 mismatch); export it again", path=str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as err:
        raise TransferError(f"cannot write {path}: {err.strerror or err}", path=str(path)) from err
