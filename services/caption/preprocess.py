"""Preprocess: a folder of photos -> a 1:1, resized, optionally captioned training set (A1111's "Preprocess images").

    for event in preprocess_dataset(store, "datasets/anna/raw/", "datasets/anna/processed/", settings, captioner):
        ...   # Progress, then one ImageOutcome per source image, and a PreprocessSummary last

Every candidate object under the source prefix gets an outcome: kept (with the keys written for it) or skipped with
a reason that says what to change. One bad file never stops the run; a store that goes away does.

The destination must be empty or hold an earlier run of the same request (`preprocess-request.json`, written
first). A rerun rewrites the same bytes (decoding, cropping and captioning are deterministic) and removes outputs
whose source is gone. `preprocess.json`, the manifest with every outcome, is written last: a destination without it
is an unfinished run.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections import Counter
from collections.abc import Iterator

from services.caption.captioning import Captioner, CaptionMetrics
from services.caption.describe import describe
from services.caption.events import ImageOutcome, PreprocessSummary, Progress
from services.caption.images import ImageRejected, check_file_size, decode_image, encode_png, process_image
from services.caption.prepared import PreparedImage, read_existing_caption
from services.caption.preprocess_settings import ExistingCaptionAction, PreprocessSettings
from services.common.datasets import ALPHA_SUFFIX, CAPTION_EXTENSION, DatasetItem, dataset_folder, list_source_files
from services.common.diagnostics import Diagnostic, Severity
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.iterables import batched
from services.common.records import plain_record
from services.common.storage import ObjectNotFound, Store

__all__ = ["preprocess_dataset", "REQUEST_NAME", "MANIFEST_NAME"]

log = logging.getLogger(__name__)

REQUEST_NAME = "preprocess-request.json"
MANIFEST_NAME = "preprocess.json"
# Source images decoded and cropped before their captions are asked for together: enough to fill a caption batch,
# few enough that memory stays small (each entry holds a handful of size x size images).
_CHUNK = 8

Event = Progress | ImageOutcome | PreprocessSummary


def preprocess_dataset(
    store: Store,
    source: str,
    destination: str,
    settings: PreprocessSettings,
    *,
    captioner: Captioner | None = None,
    metrics: CaptionMetrics | None = None,
) -> Iterator[Event]:
    source_folder = dataset_folder(source, field="source.key")
    dest_folder = dataset_folder(destination, field="destination.key")
    _check_distinct(source_folder, dest_folder)
    if settings.caption is not None and captioner is None:
        raise FailedPrecondition(
            "captioning was asked for but this process has no captioner; run it in the caption service"
        )
    sources = list_source_files(store, source_folder).items
    record = {"source": source_folder, "settings": plain_record(settings)}
    _claim_destination(store, dest_folder, record)
    stems = _output_stems(sources, source_folder)

    outcomes: list[ImageOutcome] = []
    written: set[str] = set()
    yield Progress(0, len(sources))
    for chunk in batched(sources, _CHUNK):
        prepared = [_prepare(store, item, stems[item.image_key], settings) for item in chunk]
        _caption_chunk(prepared, settings, captioner)
        for item in prepared:
            outcome = _write_outputs(store, dest_folder, item, settings.existing_caption)
            written.update(outcome.derived_keys)
            outcomes.append(outcome)
            if metrics is not None:
                reason = "" if outcome.reason is None else outcome.reason.code
                metrics.images_counted("preprocess", "kept" if outcome.kept else "skipped", reason)
            yield outcome
            yield Progress(len(outcomes), len(sources))

    _remove_stale_outputs(store, dest_folder, written)
    summary = PreprocessSummary(
        destination=dest_folder,
        kept=sum(o.kept for o in outcomes),
        skipped=sum(not o.kept for o in outcomes),
        images_written=sum(key.endswith(".png") and not key.endswith(ALPHA_SUFFIX) for key in written),
        manifest_key=dest_folder + MANIFEST_NAME,
    )
    _write_manifest(store, summary, record, outcomes)
    log.info(
        "preprocessed dataset",
        extra={"source": source_folder, "destination": dest_folder, "kept": summary.kept, "skipped": summary.skipped},
    )
    yield summary


def _check_distinct(source_folder: str, dest_folder: str) -> None:
    if dest_folder.startswith(source_folder) or source_folder.startswith(dest_folder):
        raise InvalidArgument(
            f"destination {dest_folder!r} overlaps source {source_folder!r}: outputs would be read back as sources; "
            "choose a destination outside the source folder (e.g. a sibling 'processed/' prefix)",
            field="destination.key",
            reason="DESTINATION_OVERLAPS_SOURCE",
        )


def _claim_destination(store: Store, dest_folder: str, record: dict) -> None:
    """Write the request record into an empty destination, or accept one that holds the same request."""
    request_key = dest_folder + REQUEST_NAME
    existing = [info.key for info in store.list(dest_folder)]
    if existing:
        previous = None
        if request_key in existing:
            try:
                previous = json.loads(store.get(request_key))
            except (ObjectNotFound, ValueError):
                previous = None
        if previous != record:
            why = "an earlier Preprocess with other options" if previous else f"{len(existing)} other objects"
            raise FailedPrecondition(
                f"destination {dest_folder!r} is not empty: it holds {why}; choose an empty destination prefix, "
                "or delete its contents to redo the run",
                field="destination.key",
                reason="DESTINATION_NOT_EMPTY",
            )
        return
    store.put(request_key, _json_bytes(record), content_type="application/json")


def _output_stems(sources: list[DatasetItem] | tuple[DatasetItem, ...], source_folder: str) -> dict[str, str]:
    """Destination stem of every source, relative to the destination. `a.jpg` and `a.png` in one folder would
    both become `a.png`, so sources that share a stem keep their extension in the name (`a-jpg`, `a-png`)."""
    relative = {item.image_key: item.image_key[len(source_folder) :] for item in sources}
    counts = Counter(posixpath.splitext(rel)[0] for rel in relative.values())
    stems = {}
    for key, rel in relative.items():
        stem, ext = posixpath.splitext(rel)
        stems[key] = f"{stem}-{ext[1:].lower()}" if counts[stem] > 1 and ext else stem
    return stems


def _prepare(store: Store, item: DatasetItem, stem: str, settings: PreprocessSettings) -> PreparedImage:
    prepared = PreparedImage(source_key=item.image_key, stem=stem)
    try:
        # From the listing, before reading the object into memory.
        check_file_size(item.size, name=item.image_key, limits=settings.limits)
        data = store.get(item.image_key)
        decoded = decode_image(data, name=item.image_key, limits=settings.limits)
        prepared.images, notes = process_image(decoded, settings.geometry)
        prepared.notes = [*decoded.notes, *notes]
    except ImageRejected as rejected:
        prepared.rejection = rejected.diagnostic.for_key(item.image_key)
        return prepared
    except ObjectNotFound:
        prepared.rejection = Diagnostic(
            Severity.ERROR,
            "SOURCE_VANISHED",
            f"{item.image_key} was deleted while the run was listing the source",
            "run Preprocess again once the source folder is complete",
            key=item.image_key,
        )
        return prepared
    if item.caption_key is not None and settings.existing_caption is not ExistingCaptionAction.IGNORE:
        prepared.existing_caption, note = read_existing_caption(store, item.caption_key)
        if note is not None:
            prepared.notes.append(note)
    return prepared


def _caption_chunk(prepared: list[PreparedImage], settings: PreprocessSettings, captioner: Captioner | None) -> None:
    """Caption every unflipped image of the chunk in one call (flipped copies share their original's caption)."""
    if settings.caption is None or captioner is None:
        return
    wanted = [
        (item, index)
        for item in prepared
        if item.rejection is None and not item.keeps_existing_caption(settings.existing_caption)
        for index, image in enumerate(item.images)
        if not image.flipped
    ]
    captions = describe(captioner, [item.images[index].rgb for item, index in wanted], settings.caption)
    for (item, index), caption in zip(wanted, captions, strict=True):
        item.generated[index] = caption


def _write_outputs(
    store: Store, dest_folder: str, item: PreparedImage, existing_action: ExistingCaptionAction
) -> ImageOutcome:
    if item.rejection is not None:
        return ImageOutcome(source_key=item.source_key, kept=False, reason=item.rejection)
    derived: list[str] = []
    main_caption = None
    for index, image in enumerate(item.images):
        base = dest_folder + item.stem + image.suffix
        store.put(base + ".png", encode_png(image.rgb), content_type="image/png")
        derived.append(base + ".png")
        if image.alpha is not None:
            store.put(base + ALPHA_SUFFIX, encode_png(image.alpha), content_type="image/png")
            derived.append(base + ALPHA_SUFFIX)
        caption = item.final_caption(index, existing_action)
        if caption is not None and caption.caption:
            store.put(base + CAPTION_EXTENSION, caption.caption.encode("utf-8"), content_type="text/plain")
            derived.append(base + CAPTION_EXTENSION)
        if index == 0:
            main_caption = caption
    return ImageOutcome(
        source_key=item.source_key,
        kept=True,
        derived_keys=tuple(derived),
        notes=tuple(note.for_key(item.source_key) for note in item.notes),
        caption=main_caption,
    )


def _remove_stale_outputs(store: Store, dest_folder: str, written: set[str]) -> None:
    """Outputs of an earlier run whose source has since gone (or now fails) must not stay in the dataset."""
    keep = written | {dest_folder + REQUEST_NAME, dest_folder + MANIFEST_NAME}
    for info in list(store.list(dest_folder)):
        if info.key not in keep:
            store.delete(info.key)


def _write_manifest(store: Store, summary: PreprocessSummary, record: dict, outcomes: list[ImageOutcome]) -> None:
    manifest = {
        "version": 1,
        **record,
        "destination": summary.destination,
        "summary": {"kept": summary.kept, "skipped": summary.skipped, "images_written": summary.images_written},
        "images": [_outcome_record(outcome) for outcome in outcomes],
    }
    store.put(summary.manifest_key, _json_bytes(manifest), content_type="application/json")


def _outcome_record(outcome: ImageOutcome) -> dict:
    record: dict = {"source": outcome.source_key, "status": "kept" if outcome.kept else "skipped"}
    if outcome.reason is not None:
        record["reason"] = outcome.reason.to_dict()
    if outcome.derived_keys:
        record["derived"] = list(outcome.derived_keys)
    if outcome.notes:
        record["notes"] = [note.to_dict() for note in outcome.notes]
    return record


def _json_bytes(data: dict) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
