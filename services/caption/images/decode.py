"""Safe decoding: untrusted bytes in, an RGB image (plus an optional alpha side channel) out.

Every refusal is an `ImageRejected` whose diagnostic names the file and says what to change. The checks run
cheapest first and the pixel budget is checked from the header, before a single pixel is decompressed, so a
decompression bomb costs a header parse. Nothing here touches global Pillow settings: the decoder runs in a
thread pool, and `ImageFile.LOAD_TRUNCATED_IMAGES` would silently train on half-grey images.
"""

from __future__ import annotations

import io
import logging
import threading
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from services.common.diagnostics import Diagnostic, Severity

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_LIMITS",
    "DecodeLimits",
    "DecodedImage",
    "ImageRejected",
    "check_file_size",
    "decode_image",
]

log = logging.getLogger(__name__)

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
_FORMAT_LIST = "JPEG, PNG, WebP, BMP, TIFF or GIF"
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_EXIF_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Signatures of allowlisted formats, to tell "a damaged PNG" from "not an image" when Pillow cannot open it.
_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}
# `warnings.catch_warnings` swaps process-wide state; one lock keeps our own threads from interleaving it.
_WARNINGS_LOCK = threading.Lock()


@dataclass(frozen=True)
class DecodeLimits:
    max_file_bytes: int = 50 * 2**20  # refused before any parsing
    max_pixels: int = 100_000_000  # width x height from the header, refused before decoding

    def __post_init__(self) -> None:
        if self.max_file_bytes < 1 or self.max_pixels < 1:
            raise ValueError(f"decode limits must be positive; got {self}")


DEFAULT_LIMITS = DecodeLimits()


class ImageRejected(Exception):
    """An input that cannot become a training image; `.diagnostic` (severity ERROR) says why and what to change."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


@dataclass
class DecodedImage:
    rgb: Image.Image  # mode "RGB", EXIF orientation applied, no metadata in .info
    alpha: Image.Image | None  # mode "L", same size, when the source had transparency
    format: str  # Pillow format name, one of ALLOWED_FORMATS
    source_mode: str  # Pillow mode before conversion ("CMYK", "I;16", "P", ...)
    notes: list[Diagnostic] = field(default_factory=list)  # INFO things done that a user may want to know
    name: str = ""  # the file name, so later steps can name it in their messages


def _reject(code: str, message: str, suggestion: str) -> ImageRejected:
    return ImageRejected(Diagnostic(Severity.ERROR, code, message, suggestion))


def _note(code: str, message: str, suggestion: str = "") -> Diagnostic:
    return Diagnostic(Severity.INFO, code, message, suggestion)


def _sniff_unsupported(data: bytes) -> tuple[str, str] | None:
    """(what it is, what to do) for formats people often upload by mistake, from their magic bytes."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<svg", b"<?xml", b"<!doctype svg")) and b"<svg" in head:
        return "SVG, a vector format", "Export it as PNG at the output size or larger."
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF", "Export it as PNG or JPEG (quality 95)."
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
            return (
                "HEIC/HEIF (an iPhone photo format)",
                "Export it as JPEG (on iPhone: Settings > Camera > Most Compatible).",
            )
        return "a video (MP4/MOV)", "Export a still frame as PNG."
    for magic, what in (
        (b"%PDF-", "a PDF document"),
        (b"8BPS", "a Photoshop document (PSD)"),
        (b"\x00\x00\x01\x00", "an icon (ICO)"),
        (b"\xff\x0a", "JPEG XL"),
        (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
        (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
        (b"PK\x03\x04", "a ZIP archive"),
    ):
        if data.startswith(magic):
            return what, f"Export or extract the image as {_FORMAT_LIST}."
    if data.startswith(b"RIFF") and data[8:12] != b"WEBP":
        return "a RIFF file that is not WebP (audio or video?)", f"Use {_FORMAT_LIST}."
    return None


def _looks_like_text(data: bytes) -> bool:
    sample = data[:1024]
    if b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.start > len(sample) - 4  # a multi-byte character cut by the sample boundary
    return True


def _open_header(data: bytes, name: str, limits: DecodeLimits) -> tuple[Image.Image, list[str]]:
    """Parse the header only (Pillow is lazy); returns the image and the decoder's warnings about it."""
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            image = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
        except Image.DecompressionBombError as err:
            raise _reject(
                "TOO_MANY_PIXELS",
                f"{name}: its header claims far more pixels than the limit of {limits.max_pixels:,} ({err})",
                "Downscale it (a few megapixels are plenty for training) and upload it again.",
            ) from err
        except Exception as err:  # UnidentifiedImageError, or a plugin choking on a mangled header
            raise _unreadable(data, name) from err
    # Our own pixel check replaces Pillow's global one, so its bomb warning is expected, not news.
    texts = [str(w.message).strip() for w in caught if not issubclass(w.category, Image.DecompressionBombWarning)]
    return image, texts


def _truncated(name: str, fmt: str) -> ImageRejected:
    return _reject(
        "TRUNCATED",
        f"{name}: the {fmt} data ends before the image does (the file is truncated)",
        "The file was cut short, e.g. by an interrupted download or copy; copy it again from the original.",
    )


def _declared_size_exceeded(data: bytes, fmt: str) -> bool:
    """True when a container states a length longer than the bytes we have (WebP's RIFF size)."""
    if fmt == "WEBP" and len(data) >= 8:
        return int.from_bytes(data[4:8], "little") + 8 > len(data)
    return False


def _unreadable(data: bytes, name: str) -> ImageRejected:
    fmt = next((fmt for magic, fmt in _SIGNATURES.items() if data.startswith(magic)), None)
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        fmt = "WEBP"
    if fmt is not None:
        if _declared_size_exceeded(data, fmt):
            return _truncated(name, fmt)
        return _reject(
            "CORRUPT",
            f"{name}: starts like a {fmt} file but its header cannot be read (damaged or cut short)",
            "Copy the file again from the original, or re-save it in an image editor.",
        )
    unsupported = _sniff_unsupported(data)
    if unsupported is not None:
        what, fix = unsupported
        return _reject("UNSUPPORTED_FORMAT", f"{name}: is {what}, which is not supported", fix)
    what = "text, not an image" if _looks_like_text(data) else "not an image format we recognise"
    return _reject("NOT_AN_IMAGE", f"{name}: the content is {what}", f"Use one of {_FORMAT_LIST}.")


def _load_first_frame(image: Image.Image, data: bytes, name: str) -> list[Diagnostic]:
    notes: list[Diagnostic] = []
    frames = 1
    try:
        frames = int(getattr(image, "n_frames", 1))
    except Exception:  # counting frames walks the file; a broken tail shows up again (precisely) in load()
        log.debug("could not count frames of %s", name, exc_info=True)
    if frames > 1 and image.format != "MPO":  # an MPO's extra pictures are previews or depth, not frames
        kind = "multi-page" if image.format == "TIFF" else "animated"
        notes.append(
            _note(
                "FIRST_FRAME",
                f"{name}: {kind}, {frames} frames; only the first frame is used",
                "Export the frame you want as PNG if it is not the first.",
            )
        )
    fmt = "JPEG" if image.format == "MPO" else str(image.format)
    truncated = _truncated(name, fmt)
    if _declared_size_exceeded(data, fmt):
        raise truncated
    try:
        image.load()
    except EOFError as err:
        raise truncated from err
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError, zlib.error... for damaged data
        if "truncated" in str(err).lower():
            raise truncated from err
        raise _reject(
            "CORRUPT",
            f"{name}: the {fmt} decoder failed: {err}",
            "Open it in an image editor and save it again, or replace it.",
        ) from err
    return notes


def _to_8bit_gray(image: Image.Image) -> Image.Image:
    """16/32-bit and float grayscale to 8-bit by scaling the range (Pillow's own convert clips at 255)."""
    values = np.asarray(image).astype(np.float64)
    if image.mode.startswith("I;16") or (image.mode == "I" and values.min() >= 0 and values.max() <= 65535):
        scaled = values / 257.0  # 65535 -> 255, 257*k -> k
    elif image.mode == "F" and values.min() >= 0 and values.max() <= 1:
        scaled = values * 255.0
    else:  # an unknown range (signed ints, HDR floats): stretch what is there
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def _to_rgb(image: Image.Image, name: str) -> tuple[Image.Image, Image.Image | None, list[Diagnostic]]:
    mode = image.mode
    notes: list[Diagnostic] = []
    try:
        if mode in _ALPHA_MODES or ("transparency" in image.info and not mode.startswith(("I", "F"))):
            rgba = image.convert("RGBA")  # palette/colour-key transparency becomes a real alpha channel here
            alpha = rgba.getchannel("A")
            lowest = alpha.getextrema()[0]
            if isinstance(lowest, int | float) and lowest < 255:
                notes.append(
                    _note(
                        "ALPHA_COMPOSITED",
                        f"{name}: transparent areas were composited on white; the alpha mask is kept separately",
                        "Use the alpha mask as a loss weight when training if the background should not be learned.",
                    )
                )
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB"), alpha, notes
        if mode.startswith(("I", "F")):
            notes.append(_note("BIT_DEPTH_REDUCED", f"{name}: {mode} pixels were scaled to 8 bits per channel"))
            image = _to_8bit_gray(image)
        elif mode == "CMYK":
            notes.append(
                _note(
                    "CMYK_CONVERTED",
                    f"{name}: CMYK (a print colour space) was converted to RGB; colours may shift a little",
                    "Export it as sRGB for exact colours.",
                )
            )
        if image.mode in ("1", "L"):
            notes.append(
                _note(
                    "GRAYSCALE",
                    f"{name}: a grayscale image; it is used as gray RGB",
                    "Say 'black and white' in its caption so the embedding does not learn grayness as the subject.",
                )
            )
        return image.convert("RGB"), None, notes
    except ValueError as err:
        raise _reject(
            "UNSUPPORTED_FORMAT",
            f"{name}: pixel mode {mode} cannot be converted to RGB ({err})",
            "Export it as 8-bit sRGB PNG or JPEG.",
        ) from err


def check_file_size(size: int, *, name: str, limits: DecodeLimits = DEFAULT_LIMITS) -> None:
    """Raise ImageRejected(FILE_TOO_LARGE) for a file over the byte cap; callers with a listing check before reading."""
    if size > limits.max_file_bytes:
        raise _reject(
            "FILE_TOO_LARGE",
            f"{name}: {size / 2**20:.1f} MiB is over the limit of {limits.max_file_bytes / 2**20:.1f} MiB",
            "Downscale it or save it as JPEG (quality 95); training uses a few hundred pixels per side.",
        )


def decode_image(data: bytes, *, name: str, limits: DecodeLimits = DEFAULT_LIMITS) -> DecodedImage:
    """Decode untrusted bytes to RGB (+ alpha); raises ImageRejected with a diagnostic that names `name`."""
    if not data:
        raise _reject("EMPTY_FILE", f"{name}: the file is empty (0 bytes)", "Upload the image again.")
    check_file_size(len(data), name=name, limits=limits)
    image, warned = _open_header(data, name, limits)
    width, height = image.size
    if width * height > limits.max_pixels:
        raise _reject(
            "TOO_MANY_PIXELS",
            f"{name}: {width}x{height} is {width * height:,} pixels, over the limit of {limits.max_pixels:,}",
            "Downscale it (a few megapixels are plenty for training) and upload it again.",
        )
    notes = _load_first_frame(image, data, name)
    orientation = 1
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            orientation = int(image.getexif().get(_EXIF_ORIENTATION, 1))
        except Exception:  # broken EXIF must not cost the picture; the orientation is then unknown
            log.debug("unreadable EXIF in %s", name, exc_info=True)
    for text in dict.fromkeys(warned + [str(w.message).strip() for w in caught]):  # once each, in order
        notes.append(_note("DECODER_WARNING", f"{name}: the decoder warned: {text}", "Re-save it if it looks wrong."))
    rgb, alpha, converted = _to_rgb(image, name)
    notes += converted
    if orientation in _TRANSPOSE:
        rgb = rgb.transpose(_TRANSPOSE[orientation])
        alpha = alpha.transpose(_TRANSPOSE[orientation]) if alpha is not None else None
        notes.append(
            _note("EXIF_ROTATED", f"{name}: rotated/flipped upright as its EXIF orientation ({orientation}) says")
        )
    rgb.info = {}  # no EXIF, ICC or colour key rides along into outputs
    fmt = "JPEG" if image.format == "MPO" else str(image.format)
    source_mode = image.mode
    image.close()
    return DecodedImage(rgb=rgb, alpha=alpha, format=fmt, source_mode=source_mode, notes=notes, name=name)
