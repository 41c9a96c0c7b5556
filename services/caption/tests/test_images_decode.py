"""Decoding untrusted bytes: every corpus entry meets its fate, conversions keep the right pixel values, limits
are enforced before decoding."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from services.caption.images import (
    DecodedImage,
    DecodeLimits,
    GeometrySettings,
    ImageRejected,
    decode_image,
    process_image,
)
from services.caption.tests.corpus import CORPUS_EXPECTATIONS, MARKER_RGB, build_corpus, gradient, huge_header_png
from services.common.diagnostics import Severity

CORPUS = build_corpus()


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _fate(name: str, data: bytes) -> tuple[str, list[str]]:
    try:
        decoded = decode_image(data, name=name)
        _, notes = process_image(decoded, GeometrySettings())
    except ImageRejected as rejected:
        return "skipped", [rejected.diagnostic.code]
    return "kept", [note.code for note in decoded.notes + notes]


def _rejection(data: bytes, name: str = "x.png", limits: DecodeLimits | None = None) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        decode_image(data, name=name, limits=limits or DecodeLimits())
    return caught.value


@pytest.mark.parametrize("name", sorted(CORPUS_EXPECTATIONS))
def test_corpus_entry_meets_its_fate(name: str) -> None:
    fate, code = CORPUS_EXPECTATIONS[name]
    got_fate, codes = _fate(name, CORPUS[name])
    assert got_fate == fate, codes
    if code is None:
        assert codes == []
    else:
        assert code in codes


@pytest.mark.parametrize("name", sorted(n for n, (fate, _) in CORPUS_EXPECTATIONS.items() if fate == "skipped"))
def test_rejections_name_the_file_and_say_what_to_do(name: str) -> None:
    with pytest.raises(ImageRejected) as caught:
        process_image(decode_image(CORPUS[name], name=name), GeometrySettings())
    diagnostic = caught.value.diagnostic
    assert diagnostic.severity is Severity.ERROR
    assert name in diagnostic.message and str(caught.value) == diagnostic.message
    assert diagnostic.suggestion


def test_the_corpus_is_deterministic() -> None:
    assert build_corpus() == CORPUS
    assert build_corpus() is not build_corpus()  # callers may mutate their copy


def test_good_formats_decode_to_the_same_pixels() -> None:
    expected = np.asarray(gradient(640, 512, seed=1))
    for name in ("good.png", "good.webp", "good.bmp", "good.tiff"):
        decoded = decode_image(CORPUS[name], name=name)
        assert decoded.rgb.mode == "RGB" and decoded.alpha is None and decoded.source_mode == "RGB"
        assert decoded.format == name.split(".")[1].upper()
        assert np.array_equal(np.asarray(decoded.rgb), expected), name
    jpeg = decode_image(CORPUS["good.jpg"], name="good.jpg")
    assert jpeg.format == "JPEG"
    assert np.abs(np.asarray(jpeg.rgb).astype(int) - expected).mean() < 4


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    decoded = decode_image(CORPUS["gray16.png"], name="gray16.png")
    assert decoded.source_mode == "I;16"
    pixels = np.asarray(decoded.rgb)
    levels = np.tile(np.linspace(0, 65535, 512).astype(np.uint16), (512, 1))
    levels[:8, :8] = 65535
    expected = np.rint(levels / 257.0).astype(np.uint8)
    assert pixels[0, 0].tolist() == [255, 255, 255]
    assert np.array_equal(pixels[..., 0], expected) and np.array_equal(pixels[..., 2], expected)
    assert pixels[100, 256, 0] == 128  # mid-grey stays mid-grey (a clipping convert would give 255)
    assert {n.code for n in decoded.notes} == {"BIT_DEPTH_REDUCED", "GRAYSCALE"}


def test_palette_transparency_is_composited_on_white_and_kept_as_alpha() -> None:
    decoded = decode_image(CORPUS["palette-transparent.png"], name="p.png")
    assert decoded.source_mode == "P" and decoded.alpha is not None and decoded.alpha.mode == "L"
    assert decoded.rgb.getpixel((10, 10)) == (255, 255, 255)  # transparent red became white
    assert decoded.rgb.getpixel((500, 10)) == (0, 0, 255)
    assert decoded.alpha.getpixel((10, 10)) == 0 and decoded.alpha.getpixel((500, 10)) == 255


def test_la_is_blended_with_white_by_its_alpha() -> None:
    image = Image.new("LA", (80, 80), (100, 128))
    decoded = decode_image(_save(image, "PNG"), name="la.png")
    expected = round(100 * 128 / 255 + 255 * (1 - 128 / 255))
    assert all(abs(channel - expected) <= 1 for channel in decoded.rgb.getpixel((5, 5)))
    assert decoded.alpha is not None and decoded.alpha.getpixel((5, 5)) == 128
    assert "ALPHA_COMPOSITED" in {n.code for n in decoded.notes}


def test_opaque_rgba_keeps_alpha_without_a_note() -> None:
    decoded = decode_image(_save(Image.new("RGBA", (80, 80), (1, 2, 3, 255)), "PNG"), name="o.png")
    assert decoded.alpha is not None and decoded.alpha.getextrema() == (255, 255)
    assert decoded.rgb.getpixel((0, 0)) == (1, 2, 3) and decoded.notes == []


def test_cmyk_becomes_rgb() -> None:
    decoded = decode_image(CORPUS["cmyk.jpg"], name="cmyk.jpg")
    assert decoded.source_mode == "CMYK" and decoded.rgb.mode == "RGB"
    cyan, black = decoded.rgb.getpixel((100, 100)), decoded.rgb.getpixel((400, 100))
    assert cyan[0] < 20 and cyan[1] > 235 and cyan[2] > 235
    assert max(black) < 20
    assert [n.code for n in decoded.notes] == ["CMYK_CONVERTED"]


@pytest.mark.parametrize("mode", ["L", "1"])
def test_grayscale_becomes_gray_rgb(mode: str) -> None:
    decoded = decode_image(_save(Image.new(mode, (70, 70), 255), "PNG"), name="g.png")
    assert decoded.rgb.mode == "RGB" and decoded.rgb.getpixel((3, 3)) == (255, 255, 255)
    assert [n.code for n in decoded.notes] == ["GRAYSCALE"]


def test_exif_orientation_six_turns_landscape_into_portrait() -> None:
    decoded = decode_image(CORPUS["exif-rotated.jpg"], name="r.jpg")
    assert decoded.rgb.size == (512, 640)
    # Orientation 6 = display rotated 90° clockwise: the stored top-left corner ends up top-right.
    top_right = decoded.rgb.getpixel((512 - 32, 32))
    assert top_right[0] > 200 and top_right[1] < 60 and top_right[2] < 60, top_right
    assert decoded.rgb.getpixel((32, 32)) != pytest.approx(MARKER_RGB, abs=60)
    assert [n.code for n in decoded.notes] == ["EXIF_ROTATED"]
    assert decoded.rgb.info == {}  # the orientation must not be applied twice by a later reader


def test_animated_gif_uses_the_first_frame() -> None:
    decoded = decode_image(CORPUS["animated.gif"], name="a.gif")
    assert decoded.rgb.getpixel((10, 10)) == (255, 0, 0)
    (note,) = decoded.notes
    assert note.code == "FIRST_FRAME" and "12 frames" in note.message and note.severity is Severity.INFO


def test_multi_page_tiff_uses_the_first_page() -> None:
    pages = [Image.new("RGB", (64, 64), colour) for colour in ((0, 0, 255), (0, 255, 0))]
    decoded = decode_image(_save(pages[0], "TIFF", save_all=True, append_images=pages[1:]), name="m.tiff")
    assert decoded.rgb.getpixel((0, 0)) == (0, 0, 255)
    assert "multi-page, 2 frames" in decoded.notes[0].message


def test_file_size_limit_is_checked_first() -> None:
    data = CORPUS["good.png"]
    assert decode_image(data, name="ok.png", limits=DecodeLimits(max_file_bytes=len(data))).rgb.size == (640, 512)
    rejected = _rejection(data, "big.png", DecodeLimits(max_file_bytes=len(data) - 1))
    assert rejected.diagnostic.code == "FILE_TOO_LARGE"
    assert _rejection(b"x" * 11, "t.txt", DecodeLimits(max_file_bytes=10)).diagnostic.code == "FILE_TOO_LARGE"


def test_pixel_limit_is_checked_from_the_header() -> None:
    data = _save(Image.new("RGB", (100, 100)), "PNG")
    assert decode_image(data, name="ok.png", limits=DecodeLimits(max_pixels=10_000)).rgb.size == (100, 100)
    rejected = _rejection(data, "big.png", DecodeLimits(max_pixels=9_999))
    assert rejected.diagnostic.code == "TOO_MANY_PIXELS" and "100x100" in rejected.diagnostic.message


def test_a_header_only_bomb_is_refused_before_decoding() -> None:
    # 9500x9500 is above Pillow's own warning threshold (which pytest turns into an error) but below its hard
    # limit: our check must run and win, with our message, without decompressing anything.
    bomb = huge_header_png(9500, 9500)
    rejected = _rejection(bomb, "bomb.png", DecodeLimits(max_pixels=90_000_000))
    assert rejected.diagnostic.code == "TOO_MANY_PIXELS" and "9500x9500" in rejected.diagnostic.message
    # Under the limit the same file gets as far as decoding, where its missing data shows.
    small = huge_header_png(2000, 2000)
    assert _rejection(small, "small.png").diagnostic.code in {"TRUNCATED", "CORRUPT"}


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "UNSUPPORTED_FORMAT", "SVG"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "UNSUPPORTED_FORMAT", "PDF"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1" + bytes(32), "UNSUPPORTED_FORMAT", "AVIF"),
        (b"8BPS\x00\x01" + bytes(40), "UNSUPPORTED_FORMAT", "PSD"),
        (bytes(range(256)) * 4, "NOT_AN_IMAGE", "recognise"),
        ("caption: ünïcödé text\n".encode(), "NOT_AN_IMAGE", "text"),
        (b"\x89PNG\r\n\x1a\n" + bytes(40), "CORRUPT", "PNG"),
    ],
)
def test_non_images_get_a_precise_reason(data: bytes, code: str, words: str) -> None:
    diagnostic = _rejection(data, "upload.png").diagnostic
    assert diagnostic.code == code and words in diagnostic.message and "upload.png" in diagnostic.message


def test_truncated_webp_is_truncated() -> None:
    data = CORPUS["good.webp"]
    assert _rejection(data[: len(data) // 2], "t.webp").diagnostic.code == "TRUNCATED"


def test_damaged_data_is_corrupt() -> None:
    data = bytearray(CORPUS["good.png"])
    data[len(data) // 2] ^= 0xFF  # zlib stream broken in the middle of the pixels
    assert _rejection(bytes(data), "d.png").diagnostic.code == "CORRUPT"


def test_a_one_pixel_image_decodes() -> None:
    decoded = decode_image(CORPUS["one-pixel.png"], name="one.png")
    assert isinstance(decoded, DecodedImage) and decoded.rgb.size == (1, 1) and decoded.name == "one.png"


def test_concurrent_decoding_matches_sequential() -> None:
    def summary(name: str) -> tuple[str, object]:
        try:
            decoded = decode_image(CORPUS[name], name=name)
        except ImageRejected as rejected:
            return "skipped", rejected.diagnostic.code
        return "kept", (decoded.rgb.tobytes(), [n.code for n in decoded.notes])

    names = sorted(CORPUS) * 3
    sequential = [summary(name) for name in names]
    with ThreadPoolExecutor(max_workers=6) as pool:
        assert list(pool.map(summary, names)) == sequential


def test_damaged_exif_costs_a_note_not_the_picture() -> None:
    broken_exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12\x00\x03"  # an IFD cut off mid-entry
    decoded = decode_image(_save(Image.new("RGB", (80, 60), (1, 2, 3)), "JPEG", exif=broken_exif), name="e.jpg")
    assert decoded.rgb.size == (80, 60)
    assert [n.code for n in decoded.notes] == ["DECODER_WARNING"] and "e.jpg" in decoded.notes[0].message
