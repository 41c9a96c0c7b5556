"""Where the subject is: A1111's focal point, a weighted mean of a face, an entropy and an edge point.

Like A1111 (`modules/textual_inversion/autocrop.py`), each detector yields points; each detector's points are
averaged into one centroid; the centroids are averaged with the user's weights, renormalised over the detectors
that found something; with none, the image centre. Where A1111 has bugs we keep its intent instead:
- entropy is the Shannon entropy of the grayscale histogram (A1111 sums -log2(p) over a dithered 1-bit image,
  which peaks on almost-uniform windows); ties choose the middle of the best run, not its first window;
- a flat image yields no entropy point (A1111 returns the first window, pulling the crop to one side);
- only the Haar cascades that ship with OpenCV are used: nothing is downloaded at run time.
All analysis runs on a copy whose short side is at most ANALYSIS_SIDE (A1111 analyses at the crop size), so a
4000x3000 photo costs about as much as a 512 px one.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, fields

import cv2
import numpy as np
from PIL import Image

from services.common.errors import InvalidArgument

__all__ = ["ANALYSIS_SIDE", "FocalWeights", "focal_point"]

log = logging.getLogger(__name__)

ANALYSIS_SIDE = 512  # short side of the analysis copy
_ANALYSIS_LONG_SIDE = 2048  # and its long side, so a 20:1 panorama does not cost 20 crops' worth of cascades
# Tried in order; the first that finds anything wins (A1111 order, minus the eye/upper-body cascades that fire on
# texture, and minus those that add time without finding faces the first three miss).
_CASCADES = (
    "haarcascade_frontalface_default.xml",
    "haarcascade_frontalface_alt2.xml",
    "haarcascade_profileface.xml",
)
_FACE_MIN_SHARE = 0.05  # a face must span 5% of the short side (A1111)
_WATERMARK_SHARE = 0.1  # the bottom 10% is masked for edges: watermarks and signatures live there (A1111)
_local = threading.local()  # cv2.CascadeClassifier is not thread-safe: one set per thread


@dataclass(frozen=True)
class FocalWeights:
    face: float = 0.9
    entropy: float = 0.15
    edges: float = 0.5

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise InvalidArgument(
                    f"focal point {spec.name} weight must be a finite number >= 0 (0 turns it off); got {value!r}",
                    field=f"options.focal_point.{spec.name}",
                )


def _classifiers() -> list[cv2.CascadeClassifier]:
    loaded = getattr(_local, "classifiers", None)
    if loaded is None:
        loaded = []
        for file_name in _CASCADES:
            classifier = cv2.CascadeClassifier(cv2.data.haarcascades + file_name)
            if classifier.empty():
                log.warning("face cascade %s could not be loaded; focal points skip it", file_name)
            else:
                loaded.append(classifier)
        _local.classifiers = loaded
    return loaded


def _face_point(gray: np.ndarray) -> tuple[float, float] | None:
    minimum = max(1, int(min(gray.shape) * _FACE_MIN_SHARE))
    for classifier in _classifiers():
        faces = classifier.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=7, minSize=(minimum, minimum))
        if len(faces):
            centres = np.array([(x + w / 2, y + h / 2) for x, y, w, h in faces], dtype=np.float64)
            x, y = centres.mean(axis=0)
            return float(x), float(y)
    return None


def _entropy_point(gray: np.ndarray) -> tuple[float, float] | None:
    """Centre of the square window (side = short side) with the most grayscale entropy along the long axis."""
    height, width = gray.shape
    if height == width:
        return None  # one possible window: it says nothing about where the subject is
    strip = gray if width > height else gray.T  # long axis along columns
    side, length = strip.shape
    # Histogram per column, then windows by differences of cumulative sums: every offset in one pass.
    index = np.arange(length, dtype=np.int64)[None, :] * 256 + strip
    per_column = np.bincount(index.ravel(), minlength=length * 256).reshape(length, 256)
    cumulative = np.concatenate([np.zeros((1, 256), np.int64), np.cumsum(per_column, axis=0)])
    p = (cumulative[side:] - cumulative[:-side]) / float(side * side)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)
    best = float(entropy.max())
    if best <= 1e-9:
        return None  # a flat image has no informative window
    start = int(np.argmax(entropy))
    end = start
    while end + 1 < len(entropy) and entropy[end + 1] >= best - 1e-9:
        end += 1
    along = (start + end) / 2 + side / 2
    return (along, side / 2) if width > height else (side / 2, along)


def _edge_point(gray: np.ndarray) -> tuple[float, float] | None:
    height, width = gray.shape
    masked = gray.copy()
    masked[int(height * (1 - _WATERMARK_SHARE)) :, :] = 153
    corners = cv2.goodFeaturesToTrack(
        masked, maxCorners=100, qualityLevel=0.04, minDistance=min(height, width) * 0.06, useHarrisDetector=False
    )
    if corners is None or not len(corners):
        return None
    x, y = corners.reshape(-1, 2).astype(np.float64).mean(axis=0) + 0.5  # OpenCV puts pixel centres on integers
    return float(x), float(y)


def focal_point(image: Image.Image, weights: FocalWeights) -> tuple[float, float]:
    """(x, y) in pixels of `image` (continuous coordinates: (0, 0) is the top-left corner of the first pixel).

    A1111's weighted combination of the face, entropy and edge points; the image centre when no detector with a
    positive weight finds anything.
    """
    width, height = image.size
    scale = min(1.0, ANALYSIS_SIDE / min(width, height), _ANALYSIS_LONG_SIDE / max(width, height))
    gray_image = image.convert("L")
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        gray_image = gray_image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    gray = np.asarray(gray_image, dtype=np.uint8)
    detectors = ((weights.face, _face_point), (weights.entropy, _entropy_point), (weights.edges, _edge_point))
    found = [(weight, point) for weight, detect in detectors if weight > 0 and (point := detect(gray)) is not None]
    if not found:
        return width / 2, height / 2
    total = sum(weight for weight, _ in found)
    x = sum(weight * point[0] for weight, point in found) / total
    y = sum(weight * point[1] for weight, point in found) / total
    return x * width / gray.shape[1], y * height / gray.shape[0]
