"""PNG output with deterministic bytes: pixels only, no timestamps or metadata.

Outputs are compared by hash (re-running Preprocess over the same inputs must not rewrite every file), so no
chunk that varies between runs may be written, and nothing from the source (EXIF, ICC, text, colour key) may ride
along: Pillow copies `.info` through most operations and its PNG writer emits some of it on its own.
"""

from __future__ import annotations

import io

from PIL import Image

__all__ = ["PNG_COMPRESS_LEVEL", "encode_png"]

PNG_COMPRESS_LEVEL = 6  # zlib's default: within a few percent of level 9 at a fraction of the time


def encode_png(image: Image.Image) -> bytes:
    """The image as PNG bytes; the same pixels always give the same bytes."""
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        raise ValueError(f"encode_png takes RGB, RGBA, L or LA images, not {image.mode}; convert it first")
    clean = image.copy()
    clean.info = {}  # drop icc_profile / transparency / exif / text the writer would otherwise pick up
    buffer = io.BytesIO()
    clean.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)
    return buffer.getvalue()
