"""CaptionDataset: write `<image stem>.txt` beside every image of a dataset, with BLIP and caption hygiene.

    for event in caption_dataset(store, "datasets/anna/processed/", settings, CaptionPolicy.SKIP, captioner):
        ...   # Progress, one CaptionedImage per image, a CaptionDatasetSummary last

Policies say what happens where a caption file already exists: SKIP leaves it (the default), OVERWRITE replaces
it, PREPEND writes "<new> <existing>", APPEND "<existing> <new>". With any policy a second run changes nothing and
an interrupted run continues where it stopped (see `caption_ledger`). An image that cannot be decoded fails alone.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

from services.caption.caption_ledger import CaptionLedger, LedgerEntry
from services.caption.captioning import Captioner, CaptionMetrics
from services.caption.describe import CaptionSettings, describe
from services.caption.events import CaptionAction, CaptionDatasetSummary, CaptionedImage, Progress
from services.caption.images import DecodeLimits, ImageRejected, decode_image
from services.common.datasets import DatasetItem, caption_key_for, list_dataset, read_caption
from services.common.diagnostics import Diagnostic, Severity
from services.common.iterables import batched
from services.common.records import plain_record
from services.common.storage import ObjectNotFound, Store

__all__ = ["CaptionPolicy", "caption_dataset"]

_CHUNK = 16  # images captioned per ledger write: one caption batch's worth
_OUTCOMES = {
    CaptionAction.WRITTEN: "written",
    CaptionAction.SKIPPED_EXISTING: "skipped",
    CaptionAction.FAILED: "failed",
}

Event = Progress | CaptionedImage | CaptionDatasetSummary


class CaptionPolicy(enum.Enum):
    SKIP = "skip"
    OVERWRITE = "overwrite"
    PREPEND = "prepend"  # new caption, then the existing one
    APPEND = "append"  # existing caption, then the new one


@dataclass
class _Pending:
    item: DatasetItem
    caption_key: str
    existing: str | None  # current text of the caption file; None when absent or blank


def caption_dataset(
    store: Store,
    dataset: str,
    settings: CaptionSettings,
    policy: CaptionPolicy,
    *,
    captioner: Captioner,
    metrics: CaptionMetrics | None = None,
) -> Iterator[Event]:
    settings.validate()
    listing = list_dataset(store, dataset)
    ledger = CaptionLedger.load(store, listing.prefix)
    recipe = _recipe(settings, policy, captioner)
    counts = {action: 0 for action in CaptionAction}
    done = 0
    yield Progress(0, len(listing))
    for chunk in batched(listing.items, _CHUNK):
        events = _caption_chunk(store, chunk, settings, policy, recipe, ledger, captioner)
        for event in events:
            counts[event.action] += 1
            done += 1
            if metrics is not None:
                reason = event.error.code if event.error is not None else ""
                metrics.images_counted("caption_dataset", _OUTCOMES[event.action], reason)
            yield event
            yield Progress(done, len(listing))
    yield CaptionDatasetSummary(
        written=counts[CaptionAction.WRITTEN],
        skipped=counts[CaptionAction.SKIPPED_EXISTING],
        failed=counts[CaptionAction.FAILED],
    )


def _recipe(settings: CaptionSettings, policy: CaptionPolicy, captioner: Captioner) -> str:
    record = {
        "settings": plain_record(settings),
        "policy": policy.value,
        "model_sha256": captioner.fingerprint(settings.model).sha256,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def _caption_chunk(
    store: Store,
    chunk: tuple[DatasetItem, ...],
    settings: CaptionSettings,
    policy: CaptionPolicy,
    recipe: str,
    ledger: CaptionLedger,
    captioner: Captioner,
) -> list[CaptionedImage]:
    events: dict[str, CaptionedImage] = {}
    to_caption: list[_Pending] = []
    redo: list[tuple[_Pending, LedgerEntry]] = []
    for item in chunk:
        pending = _Pending(item, caption_key_for(item.image_key), read_caption(store, item) or None)
        entry = ledger.get(item.image_key)
        if entry is not None and entry.image_etag == item.etag and entry.recipe == recipe:
            if pending.existing == entry.after.strip():
                events[item.image_key] = _event(pending, CaptionAction.SKIPPED_EXISTING, entry)
                continue
            if pending.existing == entry.before:
                redo.append((pending, entry))  # the intent was recorded but the write never landed
                continue
        if policy is CaptionPolicy.SKIP and pending.existing is not None:
            events[item.image_key] = _event(pending, CaptionAction.SKIPPED_EXISTING)
            continue
        to_caption.append(pending)

    fresh, failed = _caption_new(store, to_caption, settings, policy, recipe, captioner)
    events.update(failed)

    writes = redo + fresh
    if fresh:
        ledger.record((pending.item.image_key, entry) for pending, entry in fresh)
    for pending, entry in writes:
        store.put(pending.caption_key, entry.after.encode("utf-8"), content_type="text/plain")
        events[pending.item.image_key] = _event(pending, CaptionAction.WRITTEN, entry)
    return [events[item.image_key] for item in chunk]


def _caption_new(
    store: Store,
    pending: list[_Pending],
    settings: CaptionSettings,
    policy: CaptionPolicy,
    recipe: str,
    captioner: Captioner,
) -> tuple[list[tuple[_Pending, LedgerEntry]], dict[str, CaptionedImage]]:
    """Caption the images that need it in one call; an image that cannot be decoded fails alone."""
    images, decodable, failed = [], [], {}
    for item in pending:
        try:
            data = store.get(item.item.image_key)
            images.append(decode_image(data, name=item.item.image_key, limits=DecodeLimits()).rgb)
        except (ImageRejected, ObjectNotFound) as exc:
            failed[item.item.image_key] = _failed(item, exc)
            continue
        decodable.append(item)
    fresh = []
    for item, caption in zip(decodable, describe(captioner, images, settings), strict=True):
        after = _combine(policy, caption.caption, item.existing)
        fresh.append((item, LedgerEntry(item.item.etag, recipe, item.existing, after, caption.raw, caption.edits)))
    return fresh, failed


def _combine(policy: CaptionPolicy, new: str, existing: str | None) -> str:
    if existing is None or policy in (CaptionPolicy.OVERWRITE, CaptionPolicy.SKIP):
        return new
    combined = f"{new} {existing}" if policy is CaptionPolicy.PREPEND else f"{existing} {new}"
    return combined.strip()


def _event(pending: _Pending, action: CaptionAction, entry: LedgerEntry | None = None) -> CaptionedImage:
    return CaptionedImage(
        image_key=pending.item.image_key,
        caption_key=pending.caption_key,
        action=action,
        caption=None if entry is None else entry.caption(),
    )


def _failed(pending: _Pending, exc: Exception) -> CaptionedImage:
    if isinstance(exc, ImageRejected):
        error = exc.diagnostic.for_key(pending.item.image_key)
    else:
        error = Diagnostic(
            Severity.ERROR,
            "SOURCE_VANISHED",
            f"{pending.item.image_key} was deleted during the run",
            "run CaptionDataset again",
            key=pending.item.image_key,
        )
    return CaptionedImage(pending.item.image_key, pending.caption_key, CaptionAction.FAILED, error=error)
