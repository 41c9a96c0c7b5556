"""Measurements on one decoded image: sharpness, a perceptual hash, colour. Pure numpy/OpenCV on PIL images.

Each measure is taken at a fixed working size, so one threshold holds for a 400 px scan and a 6000 px photo.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image

__all__ = [
    "BLUR_WORKING_SIZE",
    "BLUR_THRESHOLD",
    "PHASH_DISTANCE",
    "GRAYSCALE_CHROMA",
    "laplacian_variance",
    "is_blurry",
    "phash",
    "hamming",
    "near_duplicate_groups",
    "is_grayscale",
]

# Sharpness is measured on the centre square scaled to the training size (512 px, SD1.5's, unless the lint is told
# another): what training sees.
BLUR_WORKING_SIZE = 512
# Variance of the 3x3 Laplacian of the 0-255 grayscale at 512 px. The usual rule of thumb is 100 at about 500 px;
# we flag below 50 because the seeds' pictures are mostly face close-ups, whose out-of-focus backgrounds pull the
# score down while the face is sharp. On the test pictures (shapes with a 4 px grain): sharp 600-1100, the same
# blurred with a Gaussian of sigma 1 px 60-120, of sigma 2 px 8-16.
BLUR_THRESHOLD = 50.0
# Hamming distance between 64-bit DCT hashes at or below which two images count as the same picture: a resized
# or re-compressed copy is within 0-4 bits, unrelated pictures sit around 32. 10 is the usual pHash cut-off.
PHASH_DISTANCE = 10
# A pixel's chroma is max(R, G, B) - min(R, G, B). An image is grayscale when 99% of its pixels have a chroma of at
# most this: JPEG noise in a black-and-white picture stays under 10, any visible colour is far above.
GRAYSCALE_CHROMA = 12

_HASH_SIZE = 32  # pHash: DCT of the 32x32 grayscale image, keep the 8x8 lowest frequencies
_HASH_BITS = 8


def _working_channels(image: Image.Image, working_size: int) -> np.ndarray:
    """The centre square scaled to `working_size`, as 0-255 R, G and B planes (float64, [3, S, S])."""
    rgb = np.asarray(image.convert("RGB"))
    height, width = rgb.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = rgb[top : top + side, left : left + side]
    # Area averaging when shrinking (no aliasing that would fake sharpness), cubic when enlarging: a small image
    # is enlarged for training too, and comes out as soft as it will look there.
    interpolation = cv2.INTER_AREA if side >= working_size else cv2.INTER_CUBIC
    resized = cv2.resize(square, (working_size, working_size), interpolation=interpolation)
    return resized.astype(np.float64).transpose(2, 0, 1)


def laplacian_variance(image: Image.Image, working_size: int = BLUR_WORKING_SIZE) -> float:
    """Variance of the Laplacian at the working size, in the channel with the most: low means few edges, i.e.
    blurred. Per channel, because an edge between two colours of the same brightness vanishes in grayscale."""
    return max(float(cv2.Laplacian(plane, cv2.CV_64F).var()) for plane in _working_channels(image, working_size))


def is_blurry(image: Image.Image, threshold: float = BLUR_THRESHOLD, working_size: int = BLUR_WORKING_SIZE) -> bool:
    return laplacian_variance(image, working_size) < threshold


def _dct_matrix(size: int) -> np.ndarray:
    """The (unnormalised) DCT-II basis: row k holds cos(pi * (2n + 1) * k / (2 * size))."""
    k = np.arange(size)[:, None]
    n = np.arange(size)[None, :]
    return np.cos(np.pi * (2 * n + 1) * k / (2 * size))


_DCT = _dct_matrix(_HASH_SIZE)


def phash(image: Image.Image) -> int:
    """64-bit perceptual hash (as imagehash's phash): bit set where a low DCT frequency is above their median."""
    small = image.convert("L").resize((_HASH_SIZE, _HASH_SIZE), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.float64)
    low = (_DCT @ pixels @ _DCT.T)[:_HASH_BITS, :_HASH_BITS]
    bits = (low > np.median(low)).flatten()
    return int(sum(1 << index for index, bit in enumerate(bits) if bit))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def near_duplicate_groups(hashes: Sequence[int], max_distance: int = PHASH_DISTANCE) -> list[list[int]]:
    """Indices of images that are near-duplicates, grouped (single linkage), groups of two or more, in order."""
    parent = list(range(len(hashes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            if hamming(hashes[i], hashes[j]) <= max_distance:
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(hashes)):
        groups.setdefault(root(i), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def is_grayscale(image: Image.Image) -> bool:
    """All channels (nearly) equal: a black-and-white picture, even when stored as RGB."""
    if image.mode in ("1", "L", "LA", "I", "I;16", "F"):
        return True
    rgb = image.convert("RGB")
    rgb.thumbnail((256, 256))  # colour is not a detail: a thumbnail decides it as well as the full image
    pixels = np.asarray(rgb, dtype=np.int16)
    chroma = pixels.max(axis=2) - pixels.min(axis=2)
    return float(np.percentile(chroma, 99)) <= GRAYSCALE_CHROMA
