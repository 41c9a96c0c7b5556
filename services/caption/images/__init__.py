"""Images for the caption service: safe decoding and per-image geometry, as a pure domain package.

Bytes in, PIL images and diagnostics out; no protobuf, no storage. `decode_image` turns untrusted bytes into an
RGB image (plus an alpha side channel) or raises `ImageRejected`; `process_image` splits/crops/resizes/flips it
the way A1111's Preprocess does; `encode_png` writes deterministic PNG bytes.
"""

from __future__ import annotations

from services.caption.images.decode import (
    ALLOWED_FORMATS,
    DEFAULT_LIMITS,
    DecodedImage,
    DecodeLimits,
    ImageRejected,
    check_file_size,
    decode_image,
)
from services.caption.images.encode import encode_png
from services.caption.images.focal import FocalWeights, focal_point
from services.caption.images.geometry import (
    MAX_TILES,
    CropMode,
    GeometrySettings,
    ProcessedImage,
    center_box,
    focal_box,
    process_image,
    split_boxes,
)

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_LIMITS",
    "MAX_TILES",
    "CropMode",
    "DecodeLimits",
    "DecodedImage",
    "FocalWeights",
    "GeometrySettings",
    "ImageRejected",
    "ProcessedImage",
    "center_box",
    "check_file_size",
    "decode_image",
    "encode_png",
    "focal_box",
    "focal_point",
    "process_image",
    "split_boxes",
]
