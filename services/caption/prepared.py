"""One source image on its way through Preprocess: its processed images, notes, and captions."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.caption.hygiene import CleanCaption
from services.caption.images import ProcessedImage
from services.caption.preprocess_settings import ExistingCaptionAction
from services.common.diagnostics import Diagnostic, Severity
from services.common.storage import ObjectNotFound, Store

__all__ = ["PreparedImage", "read_existing_caption"]

_FLIPPED = "-flipped"


@dataclass
class PreparedImage:
    source_key: str
    stem: str  # destination stem, relative to the destination folder
    images: list[ProcessedImage] = field(default_factory=list)
    notes: list[Diagnostic] = field(default_factory=list)
    rejection: Diagnostic | None = None
    existing_caption: str | None = None  # the source's `<stem>.txt`, stripped; None when absent or empty
    generated: dict[int, CleanCaption] = field(default_factory=dict)  # BLIP captions by image index (unflipped)

    def keeps_existing_caption(self, action: ExistingCaptionAction) -> bool:
        return action is ExistingCaptionAction.COPY and self.existing_caption is not None

    def final_caption(self, index: int, action: ExistingCaptionAction) -> CleanCaption | None:
        """The caption to write beside image `index`, combined with the existing one as A1111 does."""
        new = self.generated.get(self._unflipped_index(index))
        existing = self.existing_caption
        if existing is None or action is ExistingCaptionAction.IGNORE:
            return new
        if action is ExistingCaptionAction.COPY or new is None:
            return CleanCaption(caption=existing, raw="", edits=())
        combined = (
            f"{existing} {new.caption}" if action is ExistingCaptionAction.PREPEND else f"{new.caption} {existing}"
        )
        return CleanCaption(caption=combined.strip(), raw=new.raw, edits=new.edits)

    def _unflipped_index(self, index: int) -> int:
        """Flipped copies share their original's caption: "-tile2-flipped" -> the image with suffix "-tile2"."""
        image = self.images[index]
        if not image.flipped:
            return index
        base = image.suffix.removesuffix(_FLIPPED)
        return next(i for i, other in enumerate(self.images) if other.suffix == base and not other.flipped)


def read_existing_caption(store: Store, caption_key: str) -> tuple[str | None, Diagnostic | None]:
    """The text of a source caption file, or None with a note when it cannot be used."""
    try:
        data = store.get(caption_key)
    except ObjectNotFound:
        return None, None
    try:
        text = data.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        return None, Diagnostic(
            Severity.WARNING,
            "CAPTION_NOT_UTF8",
            f"{caption_key} is not UTF-8 text, so its caption was not used",
            "save the caption file as UTF-8",
        )
    return (text or None), None
