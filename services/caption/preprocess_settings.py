"""Everything a Preprocess run can be asked to do."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from services.caption.describe import CaptionSettings
from services.caption.images import DecodeLimits, GeometrySettings

__all__ = ["ExistingCaptionAction", "PreprocessSettings"]


class ExistingCaptionAction(enum.Enum):
    """What to do with a `<stem>.txt` already beside a source image (A1111's "existing caption action")."""

    IGNORE = "ignore"  # not carried over (A1111's default)
    COPY = "copy"  # carried over unchanged; BLIP is not run for that image (A1111's "Keep")
    PREPEND = "prepend"  # "<existing> <new>"
    APPEND = "append"  # "<new> <existing>"


@dataclass(frozen=True)
class PreprocessSettings:
    geometry: GeometrySettings = field(default_factory=GeometrySettings)
    limits: DecodeLimits = field(default_factory=DecodeLimits)
    existing_caption: ExistingCaptionAction = ExistingCaptionAction.IGNORE
    caption: CaptionSettings | None = None  # None: no BLIP captions (A1111's "Use BLIP for caption" unticked)
