"""Per-image geometry: split long images into tiles, crop to 1:1, resize to size x size, add mirrored copies.

Semantics follow A1111's preprocess (`modules/textual_inversion/preprocess.py`, `autocrop.py`):
- split when short/long <= split_threshold (and the image is not square): the image is cut along its long axis
  into ceil((L - S*o) / (S*(1-o))) square tiles, where S is the output size, L the long side scaled so the short
  side is S, and o the overlap; the first tile starts at one end, the last ends at the other, the rest are spread
  evenly between. A split image yields tiles only (no separate 1:1 crop).
- otherwise crop the largest centred square, or the square centred on the focal point and pushed back inside;
- flipped copies are mirror images (left-right), one after each output.
Every output is one Lanczos resize of a box of the decoded image (A1111 resizes the whole image first, then crops),
and the alpha mask goes through the identical boxes, so it stays aligned pixel for pixel.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

from PIL import Image, ImageOps

from services.caption.images.decode import DecodedImage, ImageRejected
from services.caption.images.focal import FocalWeights, focal_point
from services.common.diagnostics import Diagnostic, Severity
from services.common.errors import InvalidArgument

__all__ = [
    "MAX_TILES",
    "Box",
    "CropMode",
    "GeometrySettings",
    "ProcessedImage",
    "center_box",
    "focal_box",
    "process_image",
    "split_boxes",
]

Box = tuple[int, int, int, int]  # left, top, right, bottom in source pixels (PIL's crop box)
MAX_TILES = 64  # an extreme panorama with a high overlap would otherwise yield hundreds of tiles


class CropMode(enum.Enum):
    CENTER = "center"
    FOCAL_POINT = "focal_point"


@dataclass(frozen=True)
class GeometrySettings:
    size: int = 512  # output side in pixels (512 for SD1.5, 768 for SD2-768)
    crop: CropMode = CropMode.CENTER
    focal_weights: FocalWeights = field(default_factory=FocalWeights)
    flip_copies: bool = False  # add a mirrored copy of every output
    split: bool = False  # cut long images into overlapping square tiles instead of cropping them
    split_threshold: float = 0.5  # split when short/long <= this (A1111)
    split_overlap: float = 0.2  # share of a tile that overlaps the next (A1111)
    keep_alpha: bool = False  # return the alpha mask, resized like the image, when the source had one
    min_side: int = 64  # reject images whose short side is below this

    def __post_init__(self) -> None:
        def bad(message: str, name: str) -> InvalidArgument:
            return InvalidArgument(message, field=f"options.{name}")

        # Stable Diffusion's VAE works on 8x8 pixel blocks, so sizes that are not multiples of 8 cannot train.
        if not isinstance(self.size, int) or not 64 <= self.size <= 4096 or self.size % 8:
            raise bad(f"size must be a multiple of 8 from 64 to 4096 (512 for SD1.5); got {self.size!r}", "size")
        if not isinstance(self.crop, CropMode):
            raise bad(f"crop must be one of {[m.value for m in CropMode]}; got {self.crop!r}", "crop")
        if not isinstance(self.focal_weights, FocalWeights):
            raise bad("focal point weights must be a FocalWeights", "focal_point")
        if not isinstance(self.split_threshold, int | float) or not 0 < self.split_threshold <= 1:
            raise bad(
                f"split threshold must be in (0, 1] (A1111 uses 0.5); got {self.split_threshold!r}", "split.threshold"
            )
        # A1111 clamps the overlap to 0.9: at 0.99 a 20:1 panorama would become 1900 tiles.
        if not isinstance(self.split_overlap, int | float) or not 0 <= self.split_overlap <= 0.9:
            raise bad(
                f"split overlap must be in [0, 0.9] (A1111 uses 0.2); got {self.split_overlap!r}", "split.overlap"
            )
        if not isinstance(self.min_side, int) or self.min_side < 1:
            raise bad(f"min_side must be a whole number of pixels >= 1; got {self.min_side!r}", "min_side")


@dataclass
class ProcessedImage:
    suffix: str  # "" for the main image; "-flipped"; "-tile1", "-tile2", ...; "-tile2-flipped"
    rgb: Image.Image  # size x size, RGB
    alpha: Image.Image | None  # size x size, "L"; only when settings.keep_alpha and the source had alpha
    flipped: bool


def center_box(width: int, height: int) -> Box:
    """The largest centred square (odd leftovers go to the right/bottom)."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def focal_box(width: int, height: int, focus: tuple[float, float]) -> Box:
    """The largest square centred on `focus`, pushed back inside the image where it would stick out."""
    side = min(width, height)
    left = min(max(math.floor(focus[0] - side / 2 + 0.5), 0), width - side)
    top = min(max(math.floor(focus[1] - side / 2 + 0.5), 0), height - side)
    return left, top, left + side, top + side


def _tile_count(short: int, long: int, size: int, overlap: float) -> int:
    scaled_long = long * size // short  # A1111 counts tiles on the image resized to the output size
    return math.ceil((scaled_long - size * overlap) / (size * (1.0 - overlap)))


def split_boxes(width: int, height: int, size: int, threshold: float, overlap: float) -> list[Box]:
    """A1111's split tiles as source boxes, first to last along the long axis; [] when the image is not split."""
    short, long = min(width, height), max(width, height)
    if short == long or short / long > threshold:
        return []
    # Never more tiles than distinct positions: a tiny strip upscaled to `size` would repeat the same tile.
    count = min(_tile_count(short, long, size, overlap), MAX_TILES, long - short + 1)
    if count < 2:
        return []
    offsets = [(long - short) * i // (count - 1) for i in range(count)]  # A1111: int(step * i)
    if width > height:
        return [(x, 0, x + short, short) for x in offsets]
    return [(0, y, short, y + short) for y in offsets]


def _warning(code: str, message: str, suggestion: str, field_name: str = "") -> Diagnostic:
    return Diagnostic(Severity.WARNING, code, message, suggestion, field=field_name)


def process_image(image: DecodedImage, settings: GeometrySettings) -> tuple[list[ProcessedImage], list[Diagnostic]]:
    """Split or crop to 1:1, Lanczos-resize to size x size, add flipped copies; deterministic.

    Raises ImageRejected (TOO_SMALL) when the short side is below settings.min_side.
    """
    name = image.name or "image"
    width, height = image.rgb.size
    short, long = min(width, height), max(width, height)
    if short < settings.min_side:
        raise ImageRejected(
            Diagnostic(
                Severity.ERROR,
                "TOO_SMALL",
                f"{name}: {width}x{height} has a short side of {short} px, below the minimum of {settings.min_side}",
                f"Use a larger original (at least {settings.size} px on the short side is best).",
                field="options.min_side",
            )
        )
    notes: list[Diagnostic] = []
    size = settings.size
    boxes: list[tuple[str, Box]] = []
    if settings.split:
        tiles = split_boxes(width, height, size, settings.split_threshold, settings.split_overlap)
        boxes = [(f"-tile{i}", box) for i, box in enumerate(tiles, start=1)]
        if tiles and _tile_count(short, long, size, settings.split_overlap) > MAX_TILES:
            notes.append(
                _warning(
                    "TILES_CAPPED",
                    f"{name}: {width}x{height} was cut into only {MAX_TILES} tiles, so they overlap less than asked",
                    "Crop the image into shorter pieces by hand, or lower options.split.overlap.",
                    "options.split.overlap",
                )
            )
    if not boxes:
        if settings.crop is CropMode.FOCAL_POINT and width != height:
            box = focal_box(width, height, focal_point(image.rgb, settings.focal_weights))
        else:
            box = center_box(width, height)
        boxes = [("", box)]
        if short / long < settings.split_threshold:
            notes.append(
                _warning(
                    "EXTREME_ASPECT",
                    f"{name}: {width}x{height} is {long / short:.1f}:1; a 1:1 crop keeps only {short / long:.0%} of it",
                    "Enable options.split to cut it into overlapping square tiles, or crop it by hand.",
                    "options.split",
                )
            )
    if short < size:
        notes.append(
            _warning(
                "UPSCALED",
                f"{name}: the short side ({short} px) is upscaled {size / short:.1f}x to {size} px; faces and fine "
                "detail get soft",
                f"Use an original with at least {size} px on the short side, or a smaller options.size.",
                "options.size",
            )
        )
    alpha = image.alpha if settings.keep_alpha else None
    outputs: list[ProcessedImage] = []
    for suffix, box in boxes:
        rgb = image.rgb.resize((size, size), Image.Resampling.LANCZOS, box=box)
        mask = alpha.resize((size, size), Image.Resampling.LANCZOS, box=box) if alpha is not None else None
        outputs.append(ProcessedImage(suffix, rgb, mask, False))
        if settings.flip_copies:
            flipped_mask = ImageOps.mirror(mask) if mask is not None else None
            outputs.append(ProcessedImage(f"{suffix}-flipped", ImageOps.mirror(rgb), flipped_mask, True))
    return outputs, notes
