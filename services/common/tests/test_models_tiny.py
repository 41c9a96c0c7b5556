"""The tiny models: deterministic builds, the real layouts, and that diffusers/transformers run them on CPU."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from services.common.models import tiny
from services.common.models.fingerprint import fingerprint_path
from services.common.models.tiny_vocab import WORDS


@pytest.fixture(scope="module")
def fresh_build(tmp_path_factory):
    return tiny.build_tiny_models(tmp_path_factory.mktemp("fresh"))


def test_two_builds_are_byte_identical(fresh_build, tmp_path):
    again = tiny.build_tiny_models(tmp_path / "again")
    for name, path in fresh_build.items():
        assert fingerprint_path(path) == fingerprint_path(again[name]), name
    for key in ("sd", "clip"):
        files = sorted(p.relative_to(fresh_build[key]) for p in fresh_build[key].rglob("*") if p.is_file())
        assert files, key
        for rel in files:
            assert (fresh_build[key] / rel).read_bytes() == (again[key] / rel).read_bytes(), (key, rel)


def test_layout_is_the_save_pretrained_one(tiny_models):
    sd = tiny_models["sd"]
    index = json.loads((sd / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["requires_safety_checker"] is False
    assert index["safety_checker"] == [None, None]
    for sub, files in {
        "unet": ["config.json", "diffusion_pytorch_model.safetensors"],
        "vae": ["config.json", "diffusion_pytorch_model.safetensors"],
        "text_encoder": ["config.json", "model.safetensors"],
        "tokenizer": ["merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"],
        "scheduler": ["scheduler_config.json"],
    }.items():
        assert sorted(p.name for p in (sd / sub).iterdir()) == files
    scheduler = json.loads((sd / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "PNDMScheduler"
    betas = (scheduler["beta_start"], scheduler["beta_end"], scheduler["beta_schedule"])
    assert betas == (0.00085, 0.012, "scaled_linear")
    assert scheduler["skip_prk_steps"] and scheduler["steps_offset"] == 1 and scheduler["clip_sample"] is False
    assert (tiny_models["blip"] / "config.json").is_file() and (tiny_models["blip"] / "model.safetensors").is_file()


def test_current_build_is_reused_and_stale_one_rebuilt(fresh_build):
    root = fresh_build["sd"].parent
    weight = fresh_build["sd"] / "unet" / "diffusion_pytorch_model.safetensors"
    before = weight.stat().st_ino
    tiny.build_tiny_models(root)
    assert weight.stat().st_ino == before, "a current build must not be rewritten"
    stamp = json.loads((root / tiny.STAMP_NAME).read_text())
    (root / tiny.STAMP_NAME).write_text(json.dumps({**stamp, "builder": "edited-builder"}))
    assert not tiny.is_current_build(root)
    (root / tiny.STAMP_NAME).write_text(json.dumps({**stamp, "version": tiny.BUILD_VERSION - 1}))
    assert not tiny.is_current_build(root)
    tiny.build_tiny_models(root)
    assert tiny.is_current_build(root)
    assert weight.stat().st_ino != before
    assert not [p for p in root.iterdir() if p.name.startswith(".tiny-build-")], "temp build folder left behind"


def test_clip_tokenizer_spells_common_words_as_one_token(tiny_models):
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tiny_models["sd"] / "tokenizer")
    assert [w for w in WORDS if len(tokenizer(w).input_ids) != 3] == []
    ids = tokenizer("a photo of a woman", padding="max_length", max_length=77).input_ids
    assert len(ids) == 77 and tokenizer.model_max_length == 77
    assert ids[0] == tokenizer.bos_token_id and ids[6:] == [tokenizer.eos_token_id] * 71  # pads with <|endoftext|>
    assert tokenizer.convert_ids_to_tokens(ids[1:3]) == ["a</w>", "photo</w>"]
    assert len(tokenizer.tokenize("unusualword")) <= 8  # fragments, not one token per byte


def test_pipeline_generates_from_the_folder(tiny_models):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_models["sd"])
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        "a photo of a woman",
        num_inference_steps=2,
        height=64,
        width=64,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    )
    assert out.images.shape == (1, 64, 64, 3)
    assert np.isfinite(out.images).all()


def test_single_file_checkpoint_equals_the_folder(tiny_models):
    from diffusers import StableDiffusionPipeline

    folder = StableDiffusionPipeline.from_pretrained(tiny_models["sd"])
    single = StableDiffusionPipeline.from_single_file(
        str(tiny_models["sd_single_file"]), config=str(tiny_models["sd"]), local_files_only=True
    )
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(folder, name).state_dict(), getattr(single, name).state_dict()
        assert a.keys() == b.keys(), name
        assert all(torch.equal(a[k], b[k]) for k in a), name
    gen = torch.Generator().manual_seed(0)
    ids = folder.tokenizer("a red circle", padding="max_length", max_length=77, return_tensors="pt").input_ids
    latents = torch.randn(1, 4, 32, 32, generator=gen)
    with torch.no_grad():
        text_a, text_b = folder.text_encoder(ids)[0], single.text_encoder(ids)[0]
        assert torch.equal(text_a, text_b)
        t = torch.tensor([10])
        assert torch.equal(folder.unet(latents, t, text_a).sample, single.unet(latents, t, text_b).sample)
        assert torch.equal(folder.vae.decode(latents).sample, single.vae.decode(latents).sample)


def test_blip_generates_bounded_text(tiny_models):
    from transformers import BlipForConditionalGeneration, BlipProcessor

    processor = BlipProcessor.from_pretrained(tiny_models["blip"])
    model = BlipForConditionalGeneration.from_pretrained(tiny_models["blip"]).eval()
    image = Image.new("RGB", (96, 80), (200, 30, 30))
    with torch.no_grad():
        out = model.generate(**processor(images=image, return_tensors="pt"), num_beams=1, min_length=24, max_length=48)
    assert 24 <= out.shape[1] <= 48
    assert out[0, 0].item() == model.config.text_config.bos_token_id == processor.tokenizer.bos_token_id
    text = processor.decode(out[0], skip_special_tokens=True)
    assert isinstance(text, str) and text.strip()
    assert "[DEC]" not in text and "[SEP]" not in text


def test_cli_builds_and_skips(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # main() sets it otherwise: keep the env unchanged
    monkeypatch.setattr(tiny, "build_tiny_sd", lambda *a: calls.append(a) or _fake_sd(*a))
    monkeypatch.setattr(tiny, "build_tiny_blip", lambda folder, **_: folder.mkdir())
    monkeypatch.setattr(tiny, "build_tiny_clip", lambda folder: folder.mkdir())
    monkeypatch.setattr(tiny, "build_tiny_sd2_768", lambda folder, **_: folder.mkdir())
    monkeypatch.setattr(
        tiny, "build_tiny_sdxl", lambda folder, single_file, **_: folder.mkdir() or single_file.write_bytes(b"")
    )
    assert tiny.main(["--out", str(tmp_path / "m")]) == 0
    assert tiny.main(["--out", str(tmp_path / "m")]) == 0
    assert len(calls) == 1
    expected = [
        ".tiny-models.lock",
        "tiny-blip",
        "tiny-clip",
        tiny.STAMP_NAME,
        "tiny-sd",
        "tiny-sd.safetensors",
        "tiny-sd2-768",
        "tiny-sdxl",
        "tiny-sdxl.safetensors",
    ]
    assert sorted(os.listdir(tmp_path / "m")) == expected


def _fake_sd(folder, single_file):
    folder.mkdir()
    single_file.write_bytes(b"x")


def test_clip_scores_images_and_texts(tiny_models):
    from transformers import CLIPModel, CLIPProcessor, CLIPTokenizer

    processor = CLIPProcessor.from_pretrained(tiny_models["clip"])
    model = CLIPModel.from_pretrained(tiny_models["clip"]).eval()
    assert type(processor.image_processor).__name__ == "CLIPImageProcessorPil"  # no torchvision: the PIL backend
    sd_tokenizer = CLIPTokenizer.from_pretrained(tiny_models["sd"] / "tokenizer")
    assert processor.tokenizer("a photo of a woman").input_ids == sd_tokenizer("a photo of a woman").input_ids
    assert (model.config.projection_dim, model.config.vision_config.image_size) == (32, 32)
    images = [Image.new("RGB", (48, 40), colour) for colour in ("red", "blue")]
    with torch.no_grad():
        pixels = processor(images=images, return_tensors="pt").pixel_values
        assert pixels.shape == (2, 3, 32, 32)
        out = model(pixel_values=pixels, **processor(text=["a red circle"], return_tensors="pt"))
    assert out.image_embeds.shape == (2, 32) and out.text_embeds.shape == (1, 32)
    assert not torch.allclose(out.image_embeds[0], out.image_embeds[1], atol=1e-3)  # features depend on the image
