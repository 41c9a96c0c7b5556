"""LintDataset over a stored dataset: read each image and caption, lint, and optionally write the report beside it.

The lint itself (`services.caption.lint`) is pure; this module feeds it from the store. Images are decoded with the
same safe decoder as Preprocess (an unreadable image is a finding, not a failure) and handed over as thumbnails
with their original size, so a folder of 24-megapixel photos does not have to sit in memory at full size.
"""

from __future__ import annotations

import json

from PIL import Image

from services.caption.images import DecodeLimits, ImageRejected, decode_image
from services.caption.lint import LintItem, LintReport, LintSettings, lint_dataset
from services.common.datasets import DatasetItem, list_dataset, read_caption
from services.common.storage import ObjectNotFound, Store
from services.common.text import ClipTokenCounter

__all__ = ["lint_stored_dataset", "REPORT_JSON", "REPORT_TEXT"]

REPORT_JSON = "lint.json"
REPORT_TEXT = "lint.txt"
# Large enough for the blur and duplicate checks (they work at a fixed smaller size), small enough to hold hundreds.
_THUMBNAIL_SIDE = 1024


def lint_stored_dataset(
    store: Store,
    dataset: str,
    settings: LintSettings,
    *,
    write_report: bool = False,
    tokens: ClipTokenCounter | None = None,
) -> tuple[LintReport, str | None]:
    """Lint the dataset under `dataset`. Returns the report and, when asked to write it, the key of `lint.json`."""
    listing = list_dataset(store, dataset)
    # An image deleted while the lint runs is simply not part of the dataset any more.
    items = [lint_item for item in listing.items if (lint_item := _lint_item(store, item)) is not None]
    report = lint_dataset(items, settings, tokens=tokens or ClipTokenCounter.default())
    if not write_report:
        return report, None
    # The text first and the JSON last: a reader that finds lint.json finds a complete report.
    store.put(listing.prefix + REPORT_TEXT, report.text.encode("utf-8"), content_type="text/plain")
    data = (json.dumps(report.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    store.put(listing.prefix + REPORT_JSON, data, content_type="application/json")
    return report, listing.prefix + REPORT_JSON


def _lint_item(store: Store, item: DatasetItem) -> LintItem | None:
    caption = read_caption(store, item)
    try:
        decoded = decode_image(store.get(item.image_key), name=item.image_key, limits=DecodeLimits())
    except ImageRejected as rejected:
        return LintItem(
            key=item.image_key, image=None, unreadable=rejected.diagnostic.for_key(item.image_key), caption=caption
        )
    except ObjectNotFound:
        return None
    original_size = decoded.rgb.size
    image = decoded.rgb
    if max(image.size) > _THUMBNAIL_SIDE:
        image = image.copy()
        image.thumbnail((_THUMBNAIL_SIDE, _THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    return LintItem(key=item.image_key, image=image, unreadable=None, caption=caption, original_size=original_size)
