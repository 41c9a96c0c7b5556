"""A1111 infotext: the exact layout A1111 writes, its parse, and the PNG `parameters` chunk that carries it."""

from __future__ import annotations

import io
import zlib

import pytest
from PIL import Image

from services.preview.infotext import Infotext, parse_infotext, png_with_infotext, read_png_infotext

MODEL_HASH = "6ce0161689"


def _infotext(**changes) -> Infotext:
    fields = dict(
        prompt="a photo of subj3ct",
        negative_prompt="blurry",
        steps=20,
        sampler="Euler a",
        cfg_scale=7.0,
        seed=1,
        width=512,
        height=512,
        model_hash=MODEL_HASH,
        model_name="sd15",
        ti_hashes=(("subj3ct", "1a2b3c4d5e6f"),),
        extra={"Version": "tistudio 0.1.0"},
    )
    fields.update(changes)
    return Infotext(**fields)


def _png_text_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(chunk type, body) of every tEXt/iTXt/zTXt chunk, read straight from the PNG bytes."""
    chunks, offset = [], 8
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        if kind in (b"tEXt", b"iTXt", b"zTXt"):
            chunks.append((kind, data[offset + 8 : offset + 8 + length]))
        offset += 12 + length
    return chunks


def test_text_is_the_a1111_layout() -> None:
    assert _infotext().text() == (
        "a photo of subj3ct\n"
        "Negative prompt: blurry\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Model hash: 6ce0161689, Model: sd15, "
        'TI hashes: "subj3ct: 1a2b3c4d5e6f", Version: tistudio 0.1.0'
    )


@pytest.mark.parametrize(("cfg", "shown"), [(7.0, "7"), (7.5, "7.5"), (1.0, "1"), (12.25, "12.25")])
def test_cfg_scale_drops_a_trailing_point_zero(cfg: float, shown: str) -> None:
    assert f", CFG scale: {shown}, " in _infotext(cfg_scale=cfg).text()


def test_the_negative_line_is_absent_when_there_is_no_negative_prompt() -> None:
    text = _infotext(negative_prompt="").text()
    assert "Negative prompt" not in text
    assert text.split("\n")[0] == "a photo of subj3ct"
    assert text.split("\n")[1].startswith("Steps: 20, ")
    assert len(text.split("\n")) == 2


def test_ti_hashes_is_left_out_without_embeddings_and_lists_every_one_with_them() -> None:
    assert "TI hashes" not in _infotext(ti_hashes=()).text()
    text = _infotext(ti_hashes=(("a", "111111111111"), ("b", "222222222222"))).text()
    assert 'TI hashes: "a: 111111111111, b: 222222222222", ' in text


def test_values_with_a_comma_colon_or_newline_are_json_quoted_and_extra_keys_follow_ti_hashes() -> None:
    extra = {"Plain": "value", "Comma": "a, b", "Colon": "x: y", "Newline": "one\ntwo", "Version": "v1"}
    last = _infotext(extra=extra).text().split("\n")[-1]
    assert last.endswith(
        'TI hashes: "subj3ct: 1a2b3c4d5e6f", Plain: value, Comma: "a, b", Colon: "x: y", '
        'Newline: "one\\ntwo", Version: v1'
    )
    assert "\n" not in last


def test_parse_reads_back_the_prompts_and_parameters() -> None:
    prompt, negative, params = parse_infotext(_infotext().text())
    assert prompt == "a photo of subj3ct"
    assert negative == "blurry"
    assert params == {
        "Steps": "20",
        "Sampler": "Euler a",
        "CFG scale": "7",
        "Seed": "1",
        "Size": "512x512",
        "Model hash": MODEL_HASH,
        "Model": "sd15",
        "TI hashes": "subj3ct: 1a2b3c4d5e6f",
        "Version": "tistudio 0.1.0",
    }


def test_multi_line_prompt_and_negative_prompt_round_trip() -> None:
    text = _infotext(
        prompt="a photo of subj3ct,\nsmiling, (detailed:1.2)\nBREAK outdoors",
        negative_prompt="blurry,\nlow quality\nwatermark",
        extra={"Newline": "one\ntwo"},
    ).text()
    prompt, negative, params = parse_infotext(text)
    assert prompt == "a photo of subj3ct,\nsmiling, (detailed:1.2)\nBREAK outdoors"
    assert negative == "blurry,\nlow quality\nwatermark"
    assert params["Newline"] == "one\ntwo"
    assert params["Steps"] == "20"


def test_parse_of_text_without_a_parameters_line_is_all_prompt() -> None:
    assert parse_infotext("just a prompt\nover two lines") == ("just a prompt\nover two lines", "", {})


def test_png_parameters_chunk_holds_exactly_the_text() -> None:
    text = _infotext().text()
    data = png_with_infotext(Image.new("RGB", (8, 8), "red"), text)
    assert read_png_infotext(data) == text
    chunks = _png_text_chunks(data)
    assert chunks == [(b"tEXt", b"parameters\x00" + text.encode("latin-1"))]
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (8, 8)
        assert image.getpixel((0, 0)) == (255, 0, 0)


def test_a_non_latin_1_prompt_survives_the_png_round_trip() -> None:
    text = _infotext(prompt="日本語の写真, subj3ct", negative_prompt="ぼやけた", extra={"Note": "é, ü"}).text()
    data = png_with_infotext(Image.new("RGB", (8, 8)), text)
    assert read_png_infotext(data) == text
    prompt, negative, params = parse_infotext(read_png_infotext(data))
    assert (prompt, negative, params["Note"]) == ("日本語の写真, subj3ct", "ぼやけた", "é, ü")
    [(kind, body)] = _png_text_chunks(data)
    assert kind == b"iTXt"
    keyword, rest = body.split(b"\x00", 1)
    assert keyword == b"parameters"
    compressed, _method = rest[0], rest[1]
    _language, _translated, value = rest[2:].split(b"\x00", 2)
    stored = zlib.decompress(value) if compressed else value
    assert stored.decode("utf-8") == text


def test_a_png_without_infotext_reads_as_empty() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    assert read_png_infotext(buffer.getvalue()) == ""
