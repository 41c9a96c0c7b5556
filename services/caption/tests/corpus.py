"""A corpus of good and bad image files, built in memory, with the fate each must meet.

`build_corpus()` returns {file name: bytes}; `CORPUS_EXPECTATIONS[name]` is (fate, code) under the default
`DecodeLimits()` and `GeometrySettings()` (size 512, centre crop, no split):
- ("kept", None): decodes and processes with no diagnostics at all;
- ("kept", CODE): decodes and processes, and CODE is among its notes (others may be there too);
- ("skipped", CODE): rejected with ImageRejected whose diagnostic has this code (by decode or by geometry).
The bytes are deterministic (fixed seeds, no timestamps), so tests may compare hashes across runs. Kept images
have a short side of at least 512 px so that UPSCALED does not blur the expectation.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib

import numpy as np
from PIL import Image

__all__ = ["CORPUS_EXPECTATIONS", "MARKER_RGB", "build_corpus", "gradient", "huge_header_png"]

MARKER_RGB = (255, 0, 0)  # the top-left corner of the EXIF-rotated photo's stored pixels

CORPUS_EXPECTATIONS: dict[str, tuple[str, str | None]] = {
    "good.jpg": ("kept", None),
    "good.png": ("kept", None),
    "good.webp": ("kept", None),
    "good.bmp": ("kept", None),
    "good.tiff": ("kept", None),
    "empty.png": ("skipped", "EMPTY_FILE"),
    "truncated.png": ("skipped", "TRUNCATED"),
    "truncated.jpg": ("skipped", "TRUNCATED"),
    "caption-saved-as.png": ("skipped", "NOT_AN_IMAGE"),
    "huge-header.png": ("skipped", "TOO_MANY_PIXELS"),
    "drawing.svg": ("skipped", "UNSUPPORTED_FORMAT"),
    "iphone.heic": ("skipped", "UNSUPPORTED_FORMAT"),
    "cmyk.jpg": ("kept", "CMYK_CONVERTED"),
    "gray16.png": ("kept", "BIT_DEPTH_REDUCED"),
    "palette-transparent.png": ("kept", "ALPHA_COMPOSITED"),
    "rgba.png": ("kept", "ALPHA_COMPOSITED"),
    "animated.gif": ("kept", "FIRST_FRAME"),
    "exif-rotated.jpg": ("kept", "EXIF_ROTATED"),
    "one-pixel.png": ("skipped", "TOO_SMALL"),
    "panorama.jpg": ("kept", "EXTREME_ASPECT"),
}


def gradient(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth RGB picture with some texture: compresses well, survives JPEG, and is not flat."""
    rng = np.random.default_rng(seed)
    x = np.arange(width, dtype=np.float32)[None, :]
    y = np.arange(height, dtype=np.float32)[:, None]
    pixels = np.empty((height, width, 3), dtype=np.float32)
    pixels[..., 0] = 255 * x / max(width - 1, 1)
    pixels[..., 1] = 255 * y / max(height - 1, 1)
    pixels[..., 2] = 128 + 60 * np.sin(x / 9.0) * np.cos(y / 7.0)
    pixels += rng.integers(-4, 5, (height, width, 3), dtype=np.int8)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def huge_header_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """A 100-byte PNG whose header (with a valid CRC) claims width x height RGB pixels: a decompression bomb."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + data + _png_chunk(b"IEND", b"")


def _noise_png_and_jpeg() -> tuple[bytes, bytes]:
    noise = np.random.default_rng(7).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    image = Image.fromarray(noise, mode="RGB")
    return _save(image, "PNG"), _save(image, "JPEG", quality=90)


def _gray16() -> bytes:
    levels = np.tile(np.linspace(0, 65535, 512).astype(np.uint16), (512, 1))
    levels[:8, :8] = 65535  # a known corner: must come out as 255, not clipped from a wrong scale
    return _save(Image.fromarray(levels), "PNG")


def _palette_transparent() -> bytes:
    indices = np.zeros((512, 512), dtype=np.uint8)
    indices[:, 256:] = 1  # left half: index 0 (transparent red), right half: index 1 (opaque blue)
    image = Image.fromarray(indices, mode="L").convert("P")
    image.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    return _save(image, "PNG", transparency=0)


def _rgba() -> bytes:
    pixels = np.zeros((512, 512, 4), dtype=np.uint8)
    pixels[..., 1] = 200
    pixels[..., 3] = 255
    pixels[:256, :, 3] = 0  # top half fully transparent
    return _save(Image.fromarray(pixels, mode="RGBA"), "PNG")


def _animated_gif() -> bytes:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)] * 2
    frames = [Image.new("RGB", (512, 512), colour) for colour in colours]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _exif_rotated() -> bytes:
    """Stored landscape 640x512 with a red top-left corner; orientation 6 says: display rotated 90° clockwise."""
    image = gradient(640, 512, seed=3)
    image.paste(MARKER_RGB, (0, 0, 64, 64))
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(image, "JPEG", quality=95, exif=exif)


def _cmyk() -> bytes:
    image = Image.new("CMYK", (512, 512), (255, 0, 0, 0))  # pure cyan
    image.paste((0, 0, 0, 255), (256, 0, 512, 512))  # right half black
    return _save(image, "JPEG", quality=95)


@functools.lru_cache(maxsize=1)
def _build() -> tuple[tuple[str, bytes], ...]:
    truncated_png, truncated_jpeg = _noise_png_and_jpeg()
    good = gradient(640, 512, seed=1)
    files = {
        "good.jpg": _save(good, "JPEG", quality=90),
        "good.png": _save(good, "PNG"),
        "good.webp": _save(good, "WEBP", lossless=True),
        "good.bmp": _save(good, "BMP"),
        "good.tiff": _save(good, "TIFF"),
        "empty.png": b"",
        "truncated.png": truncated_png[: len(truncated_png) // 2],
        "truncated.jpg": truncated_jpeg[: len(truncated_jpeg) * 6 // 10],
        "caption-saved-as.png": b"a photo of sks person, smiling, outdoors\n",
        "huge-header.png": huge_header_png(),
        "drawing.svg": b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
        b'<circle cx="32" cy="32" r="30" fill="red"/></svg>\n',
        "iphone.heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64,
        "cmyk.jpg": _cmyk(),
        "gray16.png": _gray16(),
        "palette-transparent.png": _palette_transparent(),
        "rgba.png": _rgba(),
        "animated.gif": _animated_gif(),
        "exif-rotated.jpg": _exif_rotated(),
        "one-pixel.png": _save(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"),
        "panorama.jpg": _save(gradient(10240, 512, seed=2), "JPEG", quality=85),
    }
    assert files.keys() == CORPUS_EXPECTATIONS.keys()
    return tuple(files.items())


def build_corpus() -> dict[str, bytes]:
    """{file name: bytes} for every entry of CORPUS_EXPECTATIONS (a fresh dict; the bytes are cached)."""
    return dict(_build())
