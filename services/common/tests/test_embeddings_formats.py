"""Every format: round trips, the exact layout each tool writes, deterministic bytes, detection from content,
the trigger-word rules, and files as other tools (A1111, kohya, diffusers) write them."""

from __future__ import annotations

import base64
import io
import json

import pytest
import safetensors
import safetensors.torch
import torch
from PIL import Image, PngImagePlugin

from services.common.embeddings import (
    DIFFUSERS_NAMES,
    Embedding,
    EmbeddingFormat,
    MissingEmbeddingName,
    UnsupportedEmbeddingFormat,
    read_embedding,
    write_embedding,
    write_embedding_files,
)

FORMATS = list(EmbeddingFormat)
A1111_KEYS = {"string_to_token", "string_to_param", "name", "step", "sd_checkpoint", "sd_checkpoint_name"}


def _vectors(n: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed))


def _sd(n: int = 3, width: int = 32, step: int | None = 120) -> Embedding:
    return Embedding("anna", (_vectors(n, width),), step=step, metadata={"init_text": "woman", "tool_version": "1"})


def _sdxl() -> Embedding:
    return Embedding("anna", (_vectors(2, 768), _vectors(2, 1280, seed=1)), step=40, metadata={"init_text": "x"})


def _a1111_png(data: dict, image: Image.Image | None = None) -> bytes:
    """A PNG as A1111's train_embedding saves it: embedding_to_b64 (EmbeddingEncoder JSON, base64) in a
    `sd-ti-embedding` tEXt chunk."""

    class EmbeddingEncoder(json.JSONEncoder):
        def default(self, obj):
            if isinstance(obj, torch.Tensor):
                return {"TORCHTENSOR": obj.cpu().detach().numpy().tolist()}
            return json.JSONEncoder.default(self, obj)

    info = PngImagePlugin.PngInfo()
    info.add_text("sd-ti-embedding", base64.b64encode(json.dumps(data, cls=EmbeddingEncoder).encode()))
    buffer = io.BytesIO()
    (image or Image.new("RGB", (32, 32), (200, 10, 10))).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def _torch_bytes(obj: object, **kwargs) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_keeps_vectors_name_and_step(fmt):
    embedding = _sd()
    back, detected = read_embedding(
        write_embedding(embedding, fmt, sd_checkpoint="a1b2c3d4e5"), filename=f"anna.{fmt.value}"
    )
    assert detected is fmt
    assert back.name == "anna" and back.step == 120 and back.dims == (32,)
    assert torch.equal(back.vectors[0], embedding.vectors[0])
    assert back.metadata["sd_checkpoint"] == "a1b2c3d4e5" and back.metadata["trigger"] == "anna"


@pytest.mark.parametrize("fmt", [EmbeddingFormat.SAFETENSORS, EmbeddingFormat.DIFFUSERS])
def test_safetensors_forms_carry_all_metadata(fmt):
    back, _ = read_embedding(write_embedding(_sd(), fmt, sd_checkpoint_name="sd15"), filename="anna.safetensors")
    assert back.metadata == {
        "init_text": "woman",
        "tool_version": "1",
        "trigger": "anna",
        "vectors": "3",
        "step": "120",
        "sd_checkpoint_name": "sd15",
    }


def test_sdxl_round_trips_through_safetensors_as_clip_l_and_clip_g(tmp_path):
    embedding = _sdxl()
    data = write_embedding(embedding, EmbeddingFormat.SAFETENSORS)
    assert set(safetensors.torch.load(data)) == {"clip_l", "clip_g"}
    back, fmt = read_embedding(data, filename="anna.safetensors")
    assert fmt is EmbeddingFormat.SAFETENSORS and back.encoders == ("clip_l", "clip_g") and back.step == 40
    assert all(torch.equal(a, b) for a, b in zip(back.vectors, embedding.vectors, strict=True))


def test_sdxl_in_diffusers_form_is_two_files_one_per_text_encoder():
    embedding = _sdxl()
    files = write_embedding_files(embedding, EmbeddingFormat.DIFFUSERS)
    assert list(files) == list(DIFFUSERS_NAMES)
    for (name, data), vectors in zip(files.items(), embedding.vectors, strict=True):
        tensors = safetensors.torch.load(data)
        assert list(tensors) == ["anna"] and torch.equal(tensors["anna"], vectors), name
    with pytest.raises(UnsupportedEmbeddingFormat, match="write_embedding_files"):
        write_embedding(embedding, EmbeddingFormat.DIFFUSERS)


@pytest.mark.parametrize("fmt", [EmbeddingFormat.A1111_PT, EmbeddingFormat.PNG])
def test_sdxl_is_refused_by_single_encoder_forms(fmt):
    with pytest.raises(UnsupportedEmbeddingFormat, match="SAFETENSORS"):
        write_embedding(_sdxl(), fmt)


def test_a1111_pt_is_a1111s_exact_dict_and_loads_weights_only():
    embedding = _sd(step=None)
    data = write_embedding(embedding, EmbeddingFormat.A1111_PT)
    loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    assert set(loaded) == A1111_KEYS
    assert loaded["string_to_token"] == {"*": 265}
    assert list(loaded["string_to_param"]) == ["*"] and torch.equal(
        loaded["string_to_param"]["*"], embedding.vectors[0]
    )
    assert loaded["string_to_param"]["*"].dtype == torch.float32
    assert (loaded["name"], loaded["step"], loaded["sd_checkpoint"], loaded["sd_checkpoint_name"]) == (
        "anna",
        None,
        None,
        None,
    )
    with_checkpoint = write_embedding(
        embedding, EmbeddingFormat.A1111_PT, sd_checkpoint="abc", sd_checkpoint_name="sd15"
    )
    loaded = torch.load(io.BytesIO(with_checkpoint), map_location="cpu", weights_only=True)
    assert (loaded["sd_checkpoint"], loaded["sd_checkpoint_name"]) == ("abc", "sd15")


def test_a1111_pt_stores_only_the_vectors_not_a_larger_parent_storage():
    matrix = _vectors(1000, 32)  # e.g. the rows of a text encoder's embedding table
    embedding = Embedding("anna", (matrix[10:12],))
    assert len(write_embedding(embedding, EmbeddingFormat.A1111_PT)) < 4096


def test_safetensors_default_form_is_emb_params_with_string_metadata(tmp_path):
    path = tmp_path / "anna.safetensors"
    path.write_bytes(write_embedding(_sd(), EmbeddingFormat.SAFETENSORS))
    with safetensors.safe_open(str(path), framework="pt") as handle:
        assert list(handle.keys()) == ["emb_params"]
        assert handle.get_tensor("emb_params").dtype == torch.float32
        assert handle.metadata()["trigger"] == "anna" and handle.metadata()["vectors"] == "3"


@pytest.mark.parametrize("fmt", FORMATS)
def test_bytes_are_deterministic_whatever_the_metadata_order(fmt):
    one = Embedding("anna", (_vectors(2, 32),), step=3, metadata={f"k{i}": str(i) for i in range(20)})
    two = Embedding("anna", (_vectors(2, 32),), step=3, metadata={f"k{i}": str(i) for i in reversed(range(20))})
    assert write_embedding(one, fmt) == write_embedding(two, fmt) == write_embedding(one, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("extension", [".pt", ".bin", ".safetensors", ".png", ".txt", ""])
def test_format_is_detected_from_bytes_not_extension(fmt, extension):
    _, detected = read_embedding(write_embedding(_sd(), fmt), filename=f"anna{extension}")
    assert detected is fmt


def test_trigger_is_the_file_name_as_in_a1111_and_the_stored_name_stays_in_metadata():
    data = write_embedding(_sd(), EmbeddingFormat.A1111_PT)
    back, _ = read_embedding(data, filename="embeddings/anna-v2.pt")
    assert back.name == "anna-v2" and back.metadata["trigger"] == "anna"
    assert read_embedding(data, filename="anna-v2.pt", name="zelda")[0].name == "zelda"
    assert read_embedding(data, filename="")[0].name == "anna"


def test_png_trigger_is_the_stored_name_as_in_a1111():
    data = write_embedding(_sd(), EmbeddingFormat.PNG)
    assert read_embedding(data, filename="anna-500.png")[0].name == "anna"


def test_diffusers_generic_file_name_uses_the_token():
    data = write_embedding(Embedding("<cat-toy>", (_vectors(1, 32),)), EmbeddingFormat.DIFFUSERS)
    assert read_embedding(data, filename="cat/learned_embeds.safetensors")[0].name == "<cat-toy>"
    assert read_embedding(data, filename="cat-toy.safetensors")[0].name == "cat-toy"


def test_no_file_name_and_no_stored_name_asks_for_a_name():
    data = safetensors.torch.save({"emb_params": _vectors(1, 32)})
    with pytest.raises(MissingEmbeddingName, match="pass name="):
        read_embedding(data, filename="")
    assert read_embedding(data, filename="", name="anna")[0].name == "anna"


def test_reads_safetensors_written_by_the_safetensors_library():
    vectors = _vectors(4, 32)
    data = safetensors.torch.save({"emb_params": vectors.half()}, metadata={"ss_steps": "400"})
    back, fmt = read_embedding(data, filename="kohya.safetensors")
    assert fmt is EmbeddingFormat.SAFETENSORS and back.name == "kohya" and back.metadata == {"ss_steps": "400"}
    assert torch.equal(back.vectors[0], vectors.half().float())
    sdxl = safetensors.torch.save({"clip_g": _vectors(2, 1280), "clip_l": _vectors(2, 768)})
    assert read_embedding(sdxl, filename="x.safetensors")[0].dims == (768, 1280)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_a1111_files_of_any_float_dtype_read_as_float32(dtype):
    vectors = _vectors(2, 32).to(dtype)
    data = _torch_bytes({"string_to_param": {"*": torch.nn.Parameter(vectors)}, "name": "anna", "step": 9})
    back, fmt = read_embedding(data, filename="anna.pt")
    assert fmt is EmbeddingFormat.A1111_PT and back.step == 9
    assert back.vectors[0].dtype == torch.float32 and torch.equal(back.vectors[0], vectors.float())


def test_reads_a1111_file_from_the_legacy_non_zip_torch_format():
    vectors = _vectors(2, 32)
    data = _torch_bytes({"string_to_param": {"*": vectors}, "name": "anna"}, _use_new_zipfile_serialization=False)
    assert not data.startswith(b"PK")
    back, fmt = read_embedding(data, filename="old.pt")
    assert fmt is EmbeddingFormat.A1111_PT and torch.equal(back.vectors[0], vectors)


@pytest.mark.parametrize(
    ("obj", "filename", "name", "expected"),
    [
        ({"<cat-toy>": "V2"}, "learned_embeds.bin", None, "<cat-toy>"),  # diffusers .bin
        ({"emb_params": "V2"}, "kohya.pt", None, "kohya"),  # kohya's .pt
        ("V2", "tensor.pt", "mytoken", "mytoken"),  # a bare tensor, as diffusers accepts with token=
        ({"<t>": "V1"}, "learned_embeds.bin", None, "<t>"),  # a 1-D vector, unsqueezed as A1111 and diffusers do
    ],
)
def test_reads_other_pickled_forms(obj, filename, name, expected):
    vectors = {"V2": _vectors(2, 32), "V1": _vectors(1, 32).squeeze(0)}
    resolve = (lambda o: vectors[o]) if isinstance(obj, str) else (lambda o: {k: vectors[v] for k, v in o.items()})
    back, fmt = read_embedding(_torch_bytes(resolve(obj)), filename=filename, name=name)
    assert fmt is EmbeddingFormat.DIFFUSERS and back.name == expected and back.vectors[0].dim() == 2


def test_reads_diffusers_expanded_tokens_in_order():
    rows = _vectors(3, 32)
    data = safetensors.torch.save({"<t>_2": rows[2], "<t>": rows[0], "<t>_1": rows[1]})
    back, fmt = read_embedding(data, filename="learned_embeds.safetensors")
    assert fmt is EmbeddingFormat.DIFFUSERS and back.name == "<t>" and torch.equal(back.vectors[0], rows)


def test_reads_a1111_png_text_chunk_built_as_a1111_writes_it():
    vectors = _vectors(2, 32).requires_grad_()  # A1111 saves the live, trainable vector
    data = {
        "string_to_token": {"*": 265},
        "string_to_param": {"*": vectors},
        "name": "anna-300",
        "step": 299,
        "sd_checkpoint": "e1441589a6",
        "sd_checkpoint_name": "v1-5-pruned",
    }
    back, fmt = read_embedding(_a1111_png(data), filename="anna-300.png")
    assert fmt is EmbeddingFormat.PNG and back.name == "anna-300" and back.step == 299
    assert torch.equal(back.vectors[0], vectors.detach())
    assert back.metadata["sd_checkpoint"] == "e1441589a6" and back.metadata["sd_checkpoint_name"] == "v1-5-pruned"


def test_our_png_chunk_is_a1111s_encoding():
    data = write_embedding(_sd(), EmbeddingFormat.PNG)
    text = Image.open(io.BytesIO(data)).info["sd-ti-embedding"]
    decoded = json.loads(base64.b64decode(text))
    assert set(decoded) == A1111_KEYS and decoded["string_to_token"] == {"*": 265}
    assert torch.equal(torch.tensor(decoded["string_to_param"]["*"]["TORCHTENSOR"]), _sd().vectors[0])


def _a1111_painted(image: Image.Image, data: dict) -> Image.Image:
    """A1111's insert_image_data_embed, step for step (its lcg, xor_block, style_block and layout)."""
    import zlib

    import numpy as np
    from PIL import ImageDraw

    def lcg(m=2**32, a=1664525, c=1013904223, seed=0):
        while True:
            seed = (a * seed + c) % m
            yield seed % 255

    def xor_block(block):
        g = lcg()
        rand = np.array([next(g) for _ in range(int(np.prod(block.shape)))]).astype(np.uint8).reshape(block.shape)
        return np.bitwise_xor(block.astype(np.uint8), rand & 0x0F)

    def style_block(block, sequence):
        im = Image.new("RGB", (block.shape[1], block.shape[0]))
        draw = ImageDraw.Draw(im)
        i = 0
        for x in range(-6, im.size[0], 8):
            for yi, y in enumerate(range(-6, im.size[1], 8)):
                offset = 4 if yi % 2 == 0 else 0
                shade = int(sequence[i % len(sequence)])
                i += 1
                draw.ellipse((x + offset, y, x + 6 + offset, y + 6), fill=(shade, shade, shade))
        return block ^ (np.array(im).astype(np.uint8) & 0xF0)

    def encode(obj):
        return {"TORCHTENSOR": obj.cpu().detach().numpy().tolist()} if isinstance(obj, torch.Tensor) else obj

    d, h = 3, image.size[1]
    payload = np.frombuffer(zlib.compress(json.dumps(data, default=encode).encode(), level=9), np.uint8).copy()
    high, low = payload >> 4, payload & 0x0F
    size = low.shape[0] + (h - (low.shape[0] % h))
    size = size + ((h * d) - (size % (h * d)))
    low, high = np.resize(low, size).reshape((h, -1, d)), np.resize(high, size).reshape((h, -1, d))
    edge = list(data["string_to_param"].values())[0].numpy().tolist()[0][:1024]
    edge = (np.abs(edge) / np.max(np.abs(edge)) * 255).astype(np.uint8)
    im_low = Image.fromarray(xor_block(style_block(low, edge)), mode="RGB")
    im_high = Image.fromarray(xor_block(style_block(high, edge[::-1])), mode="RGB")
    background = Image.new("RGB", (image.size[0] + im_low.size[0] + im_high.size[0] + 2, h), (0, 0, 0))
    background.paste(im_low, (0, 0))
    background.paste(image, (im_low.size[0] + 1, 0))
    background.paste(im_high, (im_low.size[0] + 1 + image.size[0] + 1, 0))
    return background


def test_reads_the_embedding_a1111_paints_into_the_pixels_when_the_chunk_is_gone():
    vectors = _vectors(6, 768)  # large enough that the blocks outgrow one 4096-value run of the XOR stream
    picture = Image.linear_gradient("L").resize((48, 64)).convert("RGB")
    painted = _a1111_painted(picture, {"string_to_param": {"*": vectors}, "name": "anna", "step": 12})
    buffer = io.BytesIO()
    painted.save(buffer, "PNG")  # no text chunk: only the pixels carry it
    back, fmt = read_embedding(buffer.getvalue(), filename="shared.png")
    assert fmt is EmbeddingFormat.PNG and back.name == "anna" and back.step == 12
    assert torch.equal(back.vectors[0], vectors)
