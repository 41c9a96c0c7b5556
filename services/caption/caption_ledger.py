"""The record that makes CaptionDataset idempotent and resumable: `captions.json` in the dataset folder.

For every caption file it writes, CaptionDataset first records the intent (image version, caption settings, model,
policy, the file's text before and after), then writes the file. On the next run an image is done when its file
still holds the recorded "after" text; when the file still holds the "before" text the write was interrupted and
is redone without running BLIP again. So a rerun changes nothing, a PREPEND or APPEND is applied once, and an
interrupted run continues where it stopped. One run per dataset at a time: two concurrent runs would race on it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from services.caption.hygiene import CaptionEdit, CleanCaption
from services.common.storage import ObjectNotFound, Store

__all__ = ["LEDGER_NAME", "LedgerEntry", "CaptionLedger"]

log = logging.getLogger(__name__)

LEDGER_NAME = "captions.json"
_VERSION = 1


@dataclass(frozen=True)
class LedgerEntry:
    image_etag: str  # the image version that was captioned
    recipe: str  # settings + model fingerprint + policy: a different recipe is a different caption
    before: str | None  # the caption file's text before the write (None: there was no file)
    after: str  # the text written
    raw: str  # BLIP's caption as generated
    edits: tuple[CaptionEdit, ...]

    def caption(self) -> CleanCaption:
        return CleanCaption(caption=self.after, raw=self.raw, edits=self.edits)


class CaptionLedger:
    def __init__(self, store: Store, folder: str, entries: dict[str, LedgerEntry]) -> None:
        self._store = store
        self._key = folder + LEDGER_NAME
        self._entries = entries

    @classmethod
    def load(cls, store: Store, folder: str) -> CaptionLedger:
        try:
            data = json.loads(store.get(folder + LEDGER_NAME))
            entries = {key: _entry(value) for key, value in data["entries"].items()}
        except ObjectNotFound:
            entries = {}
        except (ValueError, KeyError, TypeError) as exc:
            # A damaged ledger only costs re-captioning; it must not block the run.
            log.warning("ignoring unreadable caption ledger", extra={"key": folder + LEDGER_NAME, "error": str(exc)})
            entries = {}
        return cls(store, folder, entries)

    def get(self, image_key: str) -> LedgerEntry | None:
        return self._entries.get(image_key)

    def record(self, entries: Iterable[tuple[str, LedgerEntry]]) -> None:
        """Add entries and save the ledger (before the caption files they describe are written)."""
        self._entries.update(entries)
        payload = {
            "version": _VERSION,
            "entries": {key: _plain(entry) for key, entry in sorted(self._entries.items())},
        }
        data = (json.dumps(payload, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
        self._store.put(self._key, data, content_type="application/json")


def _plain(entry: LedgerEntry) -> dict:
    data = asdict(entry)
    data["edits"] = [asdict(edit) for edit in entry.edits]
    return data


def _entry(value: dict) -> LedgerEntry:
    return LedgerEntry(
        image_etag=str(value["image_etag"]),
        recipe=str(value["recipe"]),
        before=None if value["before"] is None else str(value["before"]),
        after=str(value["after"]),
        raw=str(value["raw"]),
        edits=tuple(CaptionEdit(**edit) for edit in value["edits"]),
    )
