"""Families and their prompt path: the tiny SD1.x, SD2-768 and SDXL models load with the right family, widths and
size, and PromptEncoder gives what diffusers' own pipelines feed their UNets."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from services.common.models import resolve_model
from services.common.models.loading import load_stable_diffusion
from services.common.prompts import Conditioning, PromptEncoder, encode_together, sdxl_time_ids


@pytest.fixture(scope="module")
def families(tiny_models):
    return {name: load_stable_diffusion(resolve_model(str(tiny_models[name]))) for name in ("sd", "sd2_768", "sdxl")}


def test_each_family_is_detected_with_its_widths_and_size(families):
    sd, sd2, sdxl = families["sd"], families["sd2_768"], families["sdxl"]
    assert (sd.family, sd.prediction_type, sd.embedding_dims) == ("sd1", "epsilon", (32,))
    assert (sd2.family, sd2.prediction_type, sd2.embedding_dims) == ("sd2", "v_prediction", (40,))
    assert (sdxl.family, sdxl.embedding_dims) == ("sdxl", (32, 48))
    # the UNet's own size: 64 px for every tiny model (SD1.5 512, SD2-768 768, SDXL 1024 on real weights)
    assert sd.default_size == sd2.default_size == sdxl.default_size == 64
    assert sdxl.tokenizer_2.pad_token == "!" and len(sdxl.text_encoders) == 2
    assert sd.text_encoder_2 is None and sd.tokenizers == (sd.tokenizer,)


def test_the_empty_negative_rule_comes_from_the_sdxl_pipeline_config(families, tiny_models, tmp_path):
    assert families["sdxl"].force_zeros_for_empty_prompt and not families["sd"].force_zeros_for_empty_prompt
    copy = tmp_path / "sdxl-keeps-empty-negatives"
    shutil.copytree(tiny_models["sdxl"], copy)
    index = json.loads((copy / "model_index.json").read_text())
    (copy / "model_index.json").write_text(json.dumps({**index, "force_zeros_for_empty_prompt": False}))
    assert not load_stable_diffusion(resolve_model(str(copy))).force_zeros_for_empty_prompt


def test_an_sdxl_single_file_checkpoint_loads_the_same_model_as_its_folder(families, tiny_models):
    single = load_stable_diffusion(resolve_model(str(tiny_models["sdxl_single_file"]), config=str(tiny_models["sdxl"])))
    folder = families["sdxl"]
    assert (single.family, single.embedding_dims) == ("sdxl", (32, 48))
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        ours, theirs = getattr(single, name).state_dict(), getattr(folder, name).state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[key], theirs[key]) for key in ours), name


def test_sd1_conditioning_is_the_text_encoder_s_last_hidden_state(families):
    sd = families["sd"]
    encoder = PromptEncoder(sd, {})
    prompts = ["a photo of a cat", "a red square on a blue background"]
    cond = encoder(encoder.batch(prompts), (torch.zeros(1, 32),))
    ids = sd.tokenizer(prompts, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = sd.text_encoder(ids).last_hidden_state
    assert cond.pooled is None
    torch.testing.assert_close(cond.hidden, expected, rtol=0, atol=1e-6)
    assert cond.unet_kwargs() == {"encoder_hidden_states": cond.hidden}


def test_sdxl_conditioning_matches_diffusers_encode_prompt(families):
    from diffusers import StableDiffusionXLPipeline

    sdxl = families["sdxl"]
    pipe = StableDiffusionXLPipeline(
        vae=sdxl.vae,
        text_encoder=sdxl.text_encoder,
        text_encoder_2=sdxl.text_encoder_2,
        tokenizer=sdxl.tokenizer,
        tokenizer_2=sdxl.tokenizer_2,
        unet=sdxl.unet,
        scheduler=sdxl.scheduler,
    )
    prompts = ["a photo of a cat", "a green circle"]
    with torch.no_grad():
        hidden, _, pooled, _ = pipe.encode_prompt(prompts, device="cpu", do_classifier_free_guidance=False)
    encoder = PromptEncoder(sdxl, {})
    batches = encoder.batch(prompts)
    assert batches[1].ids[0, 0, -1] == sdxl.tokenizer_2.pad_token_id != batches[0].ids[0, 0, -1]
    with torch.no_grad():
        cond = encoder(batches, (torch.zeros(1, 32), torch.zeros(1, 48)))
    assert cond.hidden.shape == (2, 77, 80) and cond.pooled.shape == (2, 48)
    torch.testing.assert_close(cond.hidden, hidden, rtol=0, atol=1e-5)
    torch.testing.assert_close(cond.pooled, pooled, rtol=0, atol=1e-5)


def test_sdxl_vectors_go_to_their_own_encoder(families):
    sdxl = families["sdxl"]
    encoder = PromptEncoder(sdxl, {"h3artx": 2})
    batches = encoder.batch(["a photo of h3artx"])
    clip_l, clip_g = torch.randn(2, 32), torch.randn(2, 48)
    with torch.no_grad():
        base = encoder(batches, (clip_l, clip_g))
        moved_g = encoder(batches, (clip_l, clip_g + torch.randn(2, 48)))
    torch.testing.assert_close(moved_g.hidden[..., :32], base.hidden[..., :32], rtol=0, atol=0)
    assert not torch.allclose(moved_g.hidden[..., 32:], base.hidden[..., 32:])
    assert not torch.allclose(moved_g.pooled, base.pooled)


def test_sdxl_unet_runs_on_the_conditioning_with_time_ids(families):
    sdxl = families["sdxl"]
    encoder = PromptEncoder(sdxl, {})
    with torch.no_grad():
        cond = encoder(encoder.batch(["a blue star", "a pink heart"]), (torch.zeros(1, 32), torch.zeros(1, 48)))
        time_ids = sdxl_time_ids(64, 64, 2)
        assert time_ids.tolist()[0] == [64, 64, 0, 0, 64, 64]
        out = sdxl.unet(torch.randn(2, 4, 32, 32), torch.tensor([10, 500]), **cond.unet_kwargs(time_ids)).sample
    assert out.shape == (2, 4, 32, 32) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="time ids"):
        cond.unet_kwargs()


def test_batches_encoded_together_equal_each_alone(families):
    sdxl = families["sdxl"]
    a, b = PromptEncoder(sdxl, {"h3artx": 2}), PromptEncoder(sdxl, {"st4r": 1}, emphasis="no_norm")
    items = [
        (a, a.batch(["a photo of (h3artx:1.3)"]), (torch.randn(2, 32), torch.randn(2, 48))),
        (b, b.batch(["st4r", "a long prompt about st4r, " * 10]), (torch.randn(1, 32), torch.randn(1, 48))),
    ]
    with torch.no_grad():
        together = encode_together(items)
        alone = [encoder(batches, vectors) for encoder, batches, vectors in items]
    for joint, single in zip(together, alone, strict=True):
        torch.testing.assert_close(joint.hidden, single.hidden, rtol=0, atol=1e-5)
        torch.testing.assert_close(joint.pooled, single.pooled, rtol=0, atol=1e-5)
    stacked = Conditioning.cat([alone[0], alone[0]])
    assert stacked.hidden.shape[0] == 2 and stacked.pooled.shape[0] == 2
