"""BlipCaptioner on the tiny BLIP: structure, determinism, token lengths, prefixes, batching and sampling.

The tiny model's vision tower is initialised like BLIP's (std 1e-10), which makes it blind: every image gets the
same caption, so a test could not tell images apart. `image_sensitive` re-draws the vision weights and the
decoder's cross-attention with a fixed seed so that different images give different captions.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from services.caption.captioning import BlipCaptioner, GenerationSettings
from services.common.errors import InvalidArgument
from services.common.models import resolve_model
from services.common.models.loading import BlipComponents, load_blip

SHORT = GenerationSettings(min_length=4, max_length=12)


def blind(components: BlipComponents) -> BlipComponents:
    """The same model with its cross-attention zeroed: it no longer sees the image, so every caption is the same."""
    with torch.no_grad():
        for layer in components.model.text_decoder.bert.encoder.layer:
            layer.crossattention.self.value.weight.zero_()
    return components


def load_tiny_blip(path, cache_dir, *, sensitive: bool = True) -> BlipComponents:
    """The tiny BLIP (whose captions depend on the image), or a blind copy of it."""
    components = load_blip(resolve_model(str(path), cache_dir=cache_dir))
    return components if sensitive else blind(components)


def sample_images(count: int = 4) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    solid = [Image.new("RGB", (48, 40), colour) for colour in ("red", "blue", "white")]
    noise = [Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)) for _ in range(max(0, count - 3))]
    return (solid + noise)[:count]


@pytest.fixture
def blip(tiny_models, tmp_path) -> BlipCaptioner:
    return BlipCaptioner(load_tiny_blip(tiny_models["blip"], tmp_path))


def test_one_caption_per_image_deterministic_and_image_dependent(blip):
    images = sample_images(4)
    captions = blip.caption(images, SHORT)
    assert len(captions) == 4
    assert all(isinstance(c, str) and c and c == c.strip() for c in captions)
    assert len(set(captions)) > 1  # images are captioned apart, not as one
    assert blip.caption(images, SHORT) == captions


def test_no_images_no_captions(blip):
    assert blip.caption([], GenerationSettings()) == []


@pytest.mark.parametrize(
    "settings",
    [GenerationSettings(), GenerationSettings(num_beams=3), GenerationSettings(prefix="a photo of")],
    ids=["greedy", "beams3", "prefix"],
)
def test_a_batch_gives_the_same_captions_as_single_calls(blip, settings):
    # Every image of a batch shares one prompt, so there is no padding and attention sees the same tokens alone
    # or batched; only float summation order could differ, far below the logit margins here.
    images = sample_images(3)
    batched = blip.caption(images, settings)
    assert len(set(batched)) == 3
    assert batched == [blip.caption([image], settings)[0] for image in images]


@pytest.mark.parametrize("vision_batch", [1, 2, 8])
@pytest.mark.parametrize(
    "settings",
    [GenerationSettings(), GenerationSettings(num_beams=2, prefix="a photo of", min_length=0, max_length=30)],
    ids=["greedy", "beams-prefix"],
)
def test_tokens_equal_transformers_blip_generate(tiny_models, tmp_path, settings, vision_batch):
    blip = BlipCaptioner(load_tiny_blip(tiny_models["blip"], tmp_path), vision_batch=vision_batch)
    images = sample_images(3)
    inputs = blip.processor(images=images, text=[settings.prefix] * 3 if settings.prefix else None, return_tensors="pt")
    with torch.inference_mode():
        reference = blip.model.generate(
            **inputs,
            num_beams=settings.num_beams,
            min_new_tokens=settings.min_length,
            max_new_tokens=settings.max_length,
        )
    prompt = blip.prompt_ids(settings)
    assert reference[:, : len(prompt)].tolist() == [prompt] * 3  # the same prompt: [DEC] + the prefix
    end = blip.model.config.text_config.sep_token_id  # BLIP's end token; padding follows it in a batch
    expected = [row[: row.index(end)] if end in row else row for row in reference[:, len(prompt) :].tolist()]
    assert blip.new_token_ids(blip.pixel_values(images), settings) == expected


@pytest.mark.parametrize(("low", "high"), [(0, 1), (5, 5), (3, 12), (24, 48)])
@pytest.mark.parametrize("prefix", ["", "a photo of a"])
def test_new_tokens_stay_within_min_and_max_length(blip, low, high, prefix):
    settings = GenerationSettings(min_length=low, max_length=high, prefix=prefix)
    lengths = [len(ids) for ids in blip.new_token_ids(blip.pixel_values(sample_images(3)), settings)]
    assert all(low <= n <= high for n in lengths), lengths
    if low == high:
        assert lengths == [low] * 3


def test_a_prefix_starts_the_caption(blip):
    settings = GenerationSettings(prefix="A Photo of", min_length=3, max_length=8)
    captions = blip.caption(sample_images(3), settings)
    # The BERT tokenizer lowercases, so the prefix comes back lowercased.
    # (A continuation may start with a "##" word piece, which WordPiece joins to "of" without a space.)
    assert all(c.startswith("a photo of") and len(c) > len("a photo of") for c in captions), captions
    new_ids = blip.new_token_ids(blip.pixel_values(sample_images(3)), settings)
    tokenizer = blip.processor.tokenizer
    prompt = tokenizer("a photo of", add_special_tokens=False)["input_ids"]
    assert [tokenizer.decode(prompt + ids, skip_special_tokens=True).strip() for ids in new_ids] == captions


def test_a_prefix_too_long_for_the_decoder_names_max_length(blip):
    with pytest.raises(InvalidArgument) as caught:
        blip.caption(sample_images(1), GenerationSettings(prefix="a red square " * 10, max_length=48))
    assert caught.value.field == "options.max_length"
    assert "shorten the prefix" in caught.value.message


def test_sampled_captions_depend_on_image_and_seed_not_on_the_batch(blip):
    images = sample_images(3)
    sampled = GenerationSettings(sample=True, seed=7, top_p=0.95, min_length=4, max_length=16)
    batched = blip.caption(images, sampled)
    assert batched == [blip.caption([image], sampled)[0] for image in reversed(images)][::-1]
    other_seeds = [blip.caption(images, GenerationSettings(**{**sampled.__dict__, "seed": s})) for s in (8, 9)]
    assert any(captions != batched for captions in other_seeds)


def test_sampling_leaves_the_global_rng_alone(blip):
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    blip.caption(sample_images(2), GenerationSettings(sample=True, seed=3, max_length=8, min_length=1))
    assert torch.equal(torch.rand(3), expected)


def test_repetition_penalty_reaches_generate(blip):
    images = sample_images(4)
    plain = blip.caption(images, GenerationSettings())
    penalised = blip.caption(images, GenerationSettings(repetition_penalty=3.0))
    assert plain != penalised


def test_other_modes_are_converted_to_rgb_and_transparency_to_white(blip):
    rgb = sample_images(4)[3]
    for converted in (rgb.convert("L"), rgb.convert("P"), rgb.convert("RGBA"), rgb.convert("CMYK")):
        expected = converted.convert("RGB")
        np.testing.assert_array_equal(blip.pixel_values([converted]), blip.pixel_values([expected]), converted.mode)
    clear = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    white = Image.new("RGB", (32, 32), "white")
    np.testing.assert_array_equal(blip.pixel_values([clear]), blip.pixel_values([white]))


def test_not_an_image_is_an_invalid_argument(blip):
    with pytest.raises(InvalidArgument, match="expected a PIL image"):
        blip.caption([np.zeros((8, 8, 3), dtype=np.uint8)], GenerationSettings())


def test_bfloat16_on_cpu_still_captions(tiny_models, tmp_path):
    blip = BlipCaptioner(load_tiny_blip(tiny_models["blip"], tmp_path), dtype=torch.bfloat16)
    assert {p.dtype for p in blip.model.parameters()} == {torch.bfloat16}
    captions = blip.caption(sample_images(2), SHORT)
    assert len(captions) == 2 and all(captions)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
def test_captions_on_cuda(tiny_models, tmp_path, dtype):
    images = sample_images(3)
    cpu = BlipCaptioner(load_tiny_blip(tiny_models["blip"], tmp_path)).caption(images, SHORT)
    cuda = BlipCaptioner(load_tiny_blip(tiny_models["blip"], tmp_path), device="cuda", dtype=dtype)
    assert {(p.device.type, p.dtype) for p in cuda.model.parameters()} == {("cuda", dtype)}
    captions = cuda.caption(images, SHORT)
    assert len(captions) == 3 and all(captions)
    if dtype == torch.float32:
        assert captions == cpu  # greedy ids match: fp32 differences stay far below the logit margins
    sampled = GenerationSettings(sample=True, seed=1, max_length=12)
    assert cuda.caption(images, sampled) == cuda.caption(images, sampled)
