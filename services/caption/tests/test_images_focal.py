"""Focal point (A1111's face / entropy / edge weighting) and the focal crop that uses it.

The acceptance test from issue 3: a focal-point crop keeps a face that a centre crop would cut. The face is drawn
(hair, skin, brows, eyes, nose, mouth, slightly blurred), which OpenCV's frontal-face Haar cascade detects.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from services.caption.images import (
    CropMode,
    DecodedImage,
    FocalWeights,
    GeometrySettings,
    center_box,
    focal_box,
    focal_point,
    process_image,
)

FACE_ONLY = FocalWeights(face=1.0, entropy=0.0, edges=0.0)
ENTROPY_ONLY = FocalWeights(face=0.0, entropy=1.0, edges=0.0)
EDGES_ONLY = FocalWeights(face=0.0, entropy=0.0, edges=1.0)
BACKGROUND = (120, 160, 200)


def _draw_face(width: int) -> Image.Image:
    """A frontal cartoon face, width x 1.25 width, on the background colour."""
    w, h = width, int(width * 1.25)
    face = Image.new("RGB", (w, h), BACKGROUND)
    d = ImageDraw.Draw(face)
    d.ellipse([w * 0.08, h * 0.02, w * 0.92, h * 0.75], fill=(60, 40, 25))  # hair
    d.ellipse([w * 0.15, h * 0.12, w * 0.85, h * 0.95], fill=(225, 180, 150))  # skin
    for left in (0.27, 0.55):  # brows, eye sockets, eyes, pupils
        d.rectangle([w * left, h * 0.36, w * (left + 0.18), h * 0.39], fill=(50, 35, 25))
        d.ellipse([w * (left - 0.01), h * 0.41, w * (left + 0.19), h * 0.50], fill=(170, 130, 110))
        d.ellipse([w * (left + 0.02), h * 0.43, w * (left + 0.16), h * 0.48], fill=(250, 250, 250))
        d.ellipse([w * (left + 0.06), h * 0.435, w * (left + 0.12), h * 0.475], fill=(20, 20, 20))
    d.polygon([(w * 0.5, h * 0.50), (w * 0.44, h * 0.64), (w * 0.56, h * 0.64)], fill=(195, 150, 125))
    d.ellipse([w * 0.44, h * 0.62, w * 0.56, h * 0.66], fill=(150, 105, 90))
    d.ellipse([w * 0.38, h * 0.72, w * 0.62, h * 0.78], fill=(150, 60, 60))
    return face.filter(ImageFilter.GaussianBlur(width / 100))


def _scene(width: int = 768, height: int = 512, face_at: tuple[int, int] = (560, 120), face_width: int = 160):
    """A plain scene with a face; returns it and the face's box."""
    scene = Image.new("RGB", (width, height), BACKGROUND)
    face = _draw_face(face_width)
    scene.paste(face, face_at)
    return scene, (face_at[0], face_at[1], face_at[0] + face.width, face_at[1] + face.height)


def _contains(outer: tuple[int, int, int, int], inner: tuple[int, int, int, int]) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def _inside(point: tuple[float, float], box: tuple[int, int, int, int]) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def test_focal_crop_keeps_a_face_that_centre_crop_cuts() -> None:
    scene, face = _scene()
    assert not _contains(center_box(*scene.size), face)  # the premise: the centre crop cuts the face
    point = focal_point(scene, FACE_ONLY)
    assert _inside(point, face)  # found by the cascade, not the centre fallback
    box = focal_box(*scene.size, focal_point(scene, FocalWeights()))  # A1111's default weights
    assert _contains(box, face)
    decoded = DecodedImage(scene, None, "PNG", "RGB", [], name="portrait.png")
    (output,), _ = process_image(decoded, GeometrySettings(crop=CropMode.FOCAL_POINT))
    assert np.array_equal(np.asarray(output.rgb), np.asarray(scene.resize((512, 512), box=box)))


def test_face_is_found_in_a_large_photo_at_the_right_place() -> None:
    scene, face = _scene(3072, 2048, face_at=(2300, 600), face_width=560)  # analysed on a 768x512 copy
    assert _inside(focal_point(scene, FACE_ONLY), face)


def test_face_low_in_a_portrait_image() -> None:
    scene, face = _scene(512, 900, face_at=(170, 680), face_width=160)
    scene = scene.crop((0, 0, 512, 900))
    x, y = focal_point(scene, FACE_ONLY)
    assert _inside((x, y), face)
    assert _contains(focal_box(512, 900, (x, y)), (face[0], face[1], face[2], min(face[3], 900)))


def _detailed_patch(scene: Image.Image, box: tuple[int, int, int, int], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    width, height = box[2] - box[0], box[3] - box[1]
    scene.paste(Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)), box[:2])


def test_entropy_finds_a_detailed_subject_on_a_flat_background() -> None:
    scene = Image.new("RGB", (1600, 400), (90, 90, 90))
    subject = (300, 100, 500, 300)
    _detailed_patch(scene, subject)
    assert not _contains(center_box(1600, 400), subject)
    point = focal_point(scene, ENTROPY_ONLY)
    assert _contains(focal_box(1600, 400, point), subject)
    # Every window that holds the whole patch ties; the middle of that run is centred on the patch (A1111 would
    # take the first, flush against the patch's right edge).
    assert point == pytest.approx((400, 200), abs=1)


def test_edges_find_corners_and_ignore_the_watermark_strip() -> None:
    scene = Image.new("RGB", (900, 300), (200, 200, 200))
    ImageDraw.Draw(scene).rectangle([700, 100, 760, 160], fill=(0, 0, 0))
    x, y = focal_point(scene, EDGES_ONLY)
    assert 700 <= x <= 761 and 100 <= y <= 161
    signature = Image.new("RGB", (900, 300), (200, 200, 200))
    ImageDraw.Draw(signature).rectangle([750, 280, 800, 295], fill=(0, 0, 0))  # in the bottom 10%
    assert focal_point(signature, EDGES_ONLY) == (450, 150)


def test_weights_average_the_detectors_that_found_something() -> None:
    scene, _ = _scene(1200, 512, face_at=(950, 120))
    _detailed_patch(scene, (20, 150, 220, 350), seed=1)
    face, entropy = focal_point(scene, FACE_ONLY), focal_point(scene, ENTROPY_ONLY)
    both = focal_point(scene, FocalWeights(face=0.9, entropy=0.3, edges=0.0))
    assert both == pytest.approx(((0.9 * face[0] + 0.3 * entropy[0]) / 1.2, (0.9 * face[1] + 0.3 * entropy[1]) / 1.2))


def test_nothing_found_means_the_centre() -> None:
    flat = Image.new("RGB", (1000, 400), (30, 30, 30))
    assert focal_point(flat, FocalWeights()) == (500, 200)
    scene, _ = _scene()
    assert focal_point(scene, FocalWeights(face=0, entropy=0, edges=0)) == (384, 256)


def test_centre_crop_mode_ignores_the_face() -> None:
    scene, _ = _scene()
    decoded = DecodedImage(scene, None, "PNG", "RGB", [], name="p.png")
    (output,), _ = process_image(decoded, GeometrySettings(crop=CropMode.CENTER))
    assert np.array_equal(np.asarray(output.rgb), np.asarray(scene.resize((512, 512), box=center_box(768, 512))))


def test_focal_point_is_deterministic_across_threads() -> None:
    scene, _ = _scene()
    expected = focal_point(scene, FocalWeights())
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert set(pool.map(lambda _: focal_point(scene, FocalWeights()), range(12))) == {expected}
