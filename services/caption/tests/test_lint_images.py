"""Image measurements of the lint: blur, perceptual hash, grayscale."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from services.caption.lint.image_checks import (
    BLUR_THRESHOLD,
    PHASH_DISTANCE,
    hamming,
    is_blurry,
    is_grayscale,
    laplacian_variance,
    near_duplicate_groups,
    phash,
)


def photo(seed: int, size: tuple[int, int] = (640, 640)) -> Image.Image:
    """A sharp, colourful stand-in for a photo: random shapes with a fine grain (as hair, skin, fabric have)."""
    rnd = np.random.default_rng(seed)
    width, height = size
    image = Image.new("RGB", size, tuple(int(v) for v in rnd.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = int(rnd.integers(0, width)), int(rnd.integers(0, height))
        box = [x, y, x + int(rnd.integers(width // 8, width // 2)), y + int(rnd.integers(height // 8, height // 2))]
        shape = draw.ellipse if rnd.random() < 0.5 else draw.rectangle
        shape(box, fill=tuple(int(v) for v in rnd.integers(0, 256, 3)))
    grain = np.kron(rnd.normal(0, 20, (height // 4 + 1, width // 4 + 1)), np.ones((4, 4)))[:height, :width, None]
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.float64) + grain, 0, 255).astype(np.uint8))


def jpeg(image: Image.Image, quality: int = 60) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def test_sharp_picture_is_not_blurry_and_its_blurred_copy_is():
    sharp = photo(1)
    blurred = sharp.filter(ImageFilter.GaussianBlur(3))
    assert laplacian_variance(sharp) > 4 * BLUR_THRESHOLD
    assert laplacian_variance(blurred) < BLUR_THRESHOLD
    assert not is_blurry(sharp) and is_blurry(blurred)


def test_blur_is_judged_at_a_fixed_working_size():
    # A large sharp picture is not penalised for its size, and a large picture blurred at its own scale is caught.
    big = photo(2, (2048, 1536))
    assert not is_blurry(big)
    assert is_blurry(big.filter(ImageFilter.GaussianBlur(9)))
    # A thumbnail enlarged to the working size is soft, as it will be when training enlarges it.
    assert laplacian_variance(photo(2, (128, 128))) < laplacian_variance(photo(2, (640, 640)))


def test_blur_is_judged_at_the_training_size_the_lint_is_given():
    # A sharp 64 px picture is soft once enlarged to 512, but sharp for a model that trains at 64 (the toy SD).
    small = Image.new("RGB", (64, 64), (40, 160, 60))
    ImageDraw.Draw(small).rectangle((16, 16, 47, 47), fill=(220, 30, 30))
    assert is_blurry(small) and not is_blurry(small, working_size=64)
    assert is_blurry(small.filter(ImageFilter.GaussianBlur(2)), working_size=64)


def test_an_edge_between_colours_of_the_same_brightness_is_sharp():
    # Red and this green are the same grey (ITU-R 601 luma 76), so a grayscale measure would see a flat picture.
    image = Image.new("RGB", (512, 512), (0, 130, 0))
    ImageDraw.Draw(image).rectangle((128, 128, 383, 383), fill=(255, 0, 0))
    assert np.ptp(np.asarray(image.convert("L"))) <= 1
    assert not is_blurry(image)


def test_a_flat_picture_is_blurry():
    assert is_blurry(Image.new("RGB", (600, 600), (120, 80, 40)))


def test_phash_is_64_bits_and_stable():
    image = photo(3)
    value = phash(image)
    assert 0 <= value < 2**64
    assert phash(image.copy()) == value
    assert hamming(value, value) == 0 and hamming(0, 2**64 - 1) == 64


def test_a_resized_recompressed_copy_is_a_near_duplicate():
    original = photo(4, (800, 800))
    copies = [jpeg(original.resize((512, 512))), jpeg(original, quality=40), original.resize((300, 300))]
    for copy in copies:
        assert hamming(phash(original), phash(copy)) <= PHASH_DISTANCE


def test_different_pictures_are_not_grouped():
    hashes = [phash(photo(seed)) for seed in range(10, 22)]
    assert near_duplicate_groups(hashes) == []
    assert min(hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]) > PHASH_DISTANCE


def test_groups_link_copies_and_keep_input_order():
    a, b = photo(30), photo(31)
    hashes = [phash(img) for img in (a, b, jpeg(a), jpeg(b.resize((400, 400))), photo(32), a.resize((500, 500)))]
    assert near_duplicate_groups(hashes) == [[0, 2, 5], [1, 3]]
    assert near_duplicate_groups([]) == [] and near_duplicate_groups([5]) == []


@pytest.mark.parametrize(
    ("image", "grayscale"),
    [
        (photo(5), False),
        (photo(5).convert("L"), True),
        (photo(5).convert("L").convert("RGB"), True),
        (jpeg(photo(5).convert("L").convert("RGB"), quality=30), True),
        (Image.new("RGB", (64, 64), (200, 30, 30)), False),
    ],
)
def test_grayscale(image, grayscale):
    assert is_grayscale(image) is grayscale


def test_a_small_colour_patch_on_gray_is_still_colour_when_visible():
    gray = photo(6).convert("L").convert("RGB")
    patch = gray.copy()
    patch.paste((255, 0, 0), (0, 0, 160, 160))  # 6% of the picture in red
    assert is_grayscale(gray) and not is_grayscale(patch)
