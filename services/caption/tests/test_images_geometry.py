"""Per-image geometry: crop boxes, Lanczos resize, flips, alpha alignment, A1111's split tiles, determinism."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image, ImageOps

from services.caption.images import (
    MAX_TILES,
    CropMode,
    DecodedImage,
    FocalWeights,
    GeometrySettings,
    ImageRejected,
    center_box,
    decode_image,
    encode_png,
    focal_box,
    process_image,
    split_boxes,
)
from services.caption.tests.corpus import build_corpus, gradient
from services.common.errors import InvalidArgument

LANCZOS = Image.Resampling.LANCZOS


def _decoded(width: int, height: int, alpha: Image.Image | None = None, seed: int = 0) -> DecodedImage:
    return DecodedImage(gradient(width, height, seed), alpha, "PNG", "RGB", [], name="pic.png")


def _same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and a.mode == b.mode and np.array_equal(np.asarray(a), np.asarray(b))


def _codes(notes: list) -> list[str]:
    return [note.code for note in notes]


@pytest.mark.parametrize(
    ("size", "box"),
    [((300, 200), (50, 0, 250, 200)), ((200, 301), (0, 50, 200, 250)), ((64, 64), (0, 0, 64, 64))],
)
def test_center_box_is_the_largest_centred_square(size: tuple[int, int], box: tuple[int, int, int, int]) -> None:
    assert center_box(*size) == box


def test_focal_box_follows_the_focus_and_stays_inside() -> None:
    assert focal_box(1000, 400, (700, 200)) == (500, 0, 900, 400)
    assert focal_box(1000, 400, (990, 200)) == (600, 0, 1000, 400)
    assert focal_box(1000, 400, (5, 200)) == (0, 0, 400, 400)
    assert focal_box(400, 1000, (200, 100)) == (0, 0, 400, 400)


@pytest.mark.parametrize("size", [512, 256, 768])
def test_center_crop_is_one_lanczos_resize_of_the_centre_box(size: int) -> None:
    image = _decoded(640, 480)
    outputs, _ = process_image(image, GeometrySettings(size=size))
    (only,) = outputs
    assert only.suffix == "" and not only.flipped and only.alpha is None
    assert only.rgb.size == (size, size) and only.rgb.mode == "RGB"
    assert _same(only.rgb, image.rgb.resize((size, size), LANCZOS, box=(80, 0, 560, 480)))


def test_flipped_copy_is_the_mirror_image() -> None:
    outputs, _ = process_image(_decoded(640, 512), GeometrySettings(flip_copies=True))
    assert [(o.suffix, o.flipped) for o in outputs] == [("", False), ("-flipped", True)]
    assert np.array_equal(np.asarray(outputs[1].rgb), np.asarray(outputs[0].rgb)[:, ::-1])


def test_alpha_gets_exactly_the_same_geometry() -> None:
    mask = np.full((480, 640), 255, dtype=np.uint8)
    mask[:, 80:200] = 0  # a transparent band left of centre
    image = _decoded(640, 480, alpha=Image.fromarray(mask, mode="L"))
    image.rgb.paste((255, 255, 255), (80, 0, 200, 480))  # as decode composites transparent areas on white
    outputs, _ = process_image(image, GeometrySettings(size=240, keep_alpha=True, flip_copies=True))
    main, flipped = outputs
    assert main.alpha is not None and main.alpha.size == (240, 240) and main.alpha.mode == "L"
    assert _same(main.alpha, image.alpha.resize((240, 240), LANCZOS, box=(80, 0, 560, 480)))
    assert flipped.alpha is not None and _same(flipped.alpha, ImageOps.mirror(main.alpha))
    # The band (source x 80-200) is output x 0-60: transparent exactly where the picture is white (Lanczos
    # blends the 3 output pixels next to an edge).
    alpha, rgb = np.asarray(main.alpha), np.asarray(main.rgb)
    assert alpha[:, 4:57].max() == 0 and rgb[:, 4:57].min() == 255
    assert alpha[:, 64:].min() == 255


def test_alpha_only_when_asked_and_present() -> None:
    with_alpha = _decoded(300, 300, alpha=Image.new("L", (300, 300), 9))
    assert process_image(with_alpha, GeometrySettings(size=256))[0][0].alpha is None
    assert process_image(_decoded(300, 300), GeometrySettings(size=256, keep_alpha=True))[0][0].alpha is None


def _a1111_split_offsets(width: int, height: int, size: int, overlap: float) -> list[int]:
    """A1111's split_pic arithmetic, for an image whose short side is already the output size."""
    long = max(width, height) * size // min(width, height)
    count = math.ceil((long - size * overlap) / (size * (1.0 - overlap)))
    step = (long - size) / (count - 1)
    return [int(step * i) for i in range(count)]


def test_split_tiles_a_panorama_like_a1111() -> None:
    panorama = decode_image(build_corpus()["panorama.jpg"], name="panorama.jpg")
    outputs, notes = process_image(panorama, GeometrySettings(split=True))
    offsets = _a1111_split_offsets(10240, 512, 512, 0.2)
    assert len(offsets) == 25 and [o.suffix for o in outputs] == [f"-tile{i}" for i in range(1, 26)]
    for output, x in zip(outputs, offsets, strict=True):
        assert _same(output.rgb, panorama.rgb.crop((x, 0, x + 512, 512)))
    assert all(b - a <= 512 * 0.8 for a, b in zip(offsets, offsets[1:], strict=False))  # >= 20% overlap
    assert offsets[-1] + 512 == 10240 and notes == []


def test_split_boxes_scale_and_run_along_the_long_axis() -> None:
    # 1000x4000 at size 512: A1111 scales to 512x2048 -> ceil((2048 - 102.4) / 409.6) = 5 tiles down the image.
    boxes = split_boxes(1000, 4000, 512, 0.5, 0.2)
    assert [box[1] for box in boxes] == [0, 750, 1500, 2250, 3000]
    assert all(box[0] == 0 and box[2] == 1000 and box[3] - box[1] == 1000 for box in boxes)


def test_split_threshold_is_inclusive_like_a1111() -> None:
    assert len(split_boxes(1024, 512, 512, 0.5, 0.2)) == 3  # 0.5 <= 0.5: split
    assert split_boxes(1000, 512, 512, 0.5, 0.2) == []  # 0.512 > 0.5: crop
    assert split_boxes(512, 512, 512, 1.0, 0.2) == []  # a square is never split


def test_split_with_flips_interleaves_each_tile_and_its_mirror() -> None:
    outputs, _ = process_image(_decoded(1024, 512), GeometrySettings(split=True, flip_copies=True))
    assert [o.suffix for o in outputs] == [
        "-tile1",
        "-tile1-flipped",
        "-tile2",
        "-tile2-flipped",
        "-tile3",
        "-tile3-flipped",
    ]


def test_tile_count_is_capped() -> None:
    assert len(split_boxes(51200, 512, 512, 0.5, 0.9)) == MAX_TILES
    outputs, notes = process_image(_decoded(6400, 64), GeometrySettings(size=64, split=True, split_overlap=0.9))
    assert len(outputs) == MAX_TILES and "TILES_CAPPED" in _codes(notes)


def test_extreme_aspect_warns_only_when_split_is_off() -> None:
    image = _decoded(2048, 512)
    outputs, notes = process_image(image, GeometrySettings())
    assert len(outputs) == 1 and _codes(notes) == ["EXTREME_ASPECT"]
    assert notes[0].field == "options.split" and "pic.png" in notes[0].message and "4.0:1" in notes[0].message
    assert process_image(image, GeometrySettings(split=True))[1] == []
    assert process_image(_decoded(900, 512), GeometrySettings())[1] == []  # 0.57 keeps more than half


def test_small_images_warn_upscaled_and_tiny_ones_are_rejected() -> None:
    _, notes = process_image(_decoded(300, 400), GeometrySettings())
    assert _codes(notes) == ["UPSCALED"] and "300 px" in notes[0].message
    assert process_image(_decoded(512, 600), GeometrySettings())[1] == []
    assert process_image(_decoded(64, 80), GeometrySettings(size=64, min_side=64))[0][0].rgb.size == (64, 64)
    with pytest.raises(ImageRejected) as caught:
        process_image(_decoded(63, 200), GeometrySettings(min_side=64))
    assert caught.value.diagnostic.code == "TOO_SMALL" and "pic.png" in caught.value.diagnostic.message


def test_outputs_are_byte_identical_across_runs() -> None:
    settings = GeometrySettings(crop=CropMode.FOCAL_POINT, flip_copies=True, keep_alpha=True)
    data = build_corpus()["rgba.png"]

    def run() -> list[bytes]:
        decoded = decode_image(data, name="rgba.png")
        decoded.rgb = gradient(700, 512, seed=4)  # a non-square picture so the focal point has work to do
        decoded.alpha = decoded.alpha.resize((700, 512)) if decoded.alpha else None
        outputs, _ = process_image(decoded, settings)
        return [encode_png(o.rgb) for o in outputs] + [encode_png(o.alpha) for o in outputs if o.alpha]

    first = run()
    assert len(first) == 4 and run() == first


def test_encode_png_writes_pixels_only() -> None:
    image = gradient(64, 48)
    image.info = {"icc_profile": b"fake-profile", "transparency": (0, 0, 0), "dpi": (300, 300)}
    data = encode_png(image)
    assert data == encode_png(gradient(64, 48))  # metadata in .info changes nothing
    for chunk in (b"iCCP", b"tRNS", b"tIME", b"tEXt", b"pHYs", b"eXIf"):
        assert chunk not in data
    assert _same(Image.open(io.BytesIO(data)).convert("RGB"), gradient(64, 48))


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"size": 32}, "options.size"),
        ({"size": 5000}, "options.size"),
        ({"size": 500}, "options.size"),
        ({"split_threshold": 0.0}, "options.split.threshold"),
        ({"split_threshold": 1.5}, "options.split.threshold"),
        ({"split_overlap": -0.1}, "options.split.overlap"),
        ({"split_overlap": 0.95}, "options.split.overlap"),
        ({"min_side": 0}, "options.min_side"),
        ({"crop": "center"}, "options.crop"),
    ],
)
def test_invalid_settings_name_their_field(options: dict, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        GeometrySettings(**options)
    assert caught.value.field == field


@pytest.mark.parametrize("name", ["face", "entropy", "edges"])
@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf")])
def test_invalid_focal_weights_name_their_field(name: str, value: float) -> None:
    with pytest.raises(InvalidArgument) as caught:
        FocalWeights(**{name: value})
    assert caught.value.field == f"options.focal_point.{name}"
