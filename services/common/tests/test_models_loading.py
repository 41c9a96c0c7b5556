"""Loading resolved models: frozen SD components from a folder or a single file, BLIP, and broken folders."""

from __future__ import annotations

import shutil

import pytest
import torch

from services.common.models.fingerprint import fingerprint_path
from services.common.models.loading import load_blip, load_clip, load_stable_diffusion, sd_family
from services.common.models.reference import InvalidModel, resolve_model


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"


def _assert_frozen(*modules):
    for module in modules:
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())


def test_load_from_folder_and_single_file_agree(tiny_models, cache_dir):
    folder = load_stable_diffusion(resolve_model(str(tiny_models["sd"]), cache_dir=cache_dir))
    single = load_stable_diffusion(
        resolve_model(str(tiny_models["sd_single_file"]), config=str(tiny_models["sd"]), cache_dir=cache_dir)
    )
    for c in (folder, single):
        _assert_frozen(c.text_encoder, c.unet, c.vae)
        assert (c.family, c.prediction_type, c.vae_scale_factor) == ("sd1", "epsilon", 2)
        assert type(c.scheduler).__name__ == "PNDMScheduler"
        assert c.text_encoder.config.hidden_size == c.unet.config.cross_attention_dim == 32
    assert folder.fingerprint != single.fingerprint  # a folder and a file are hashed differently

    def encode(tokenizer):
        return tokenizer("a blue square", padding="max_length", max_length=77, return_tensors="pt").input_ids

    ids = encode(folder.tokenizer)
    assert torch.equal(ids, encode(single.tokenizer))
    with torch.no_grad():
        hidden = folder.text_encoder(ids)[0]
        assert torch.equal(hidden, single.text_encoder(ids)[0])
        latents = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(1))
        assert torch.equal(folder.unet(latents, 5, hidden).sample, single.unet(latents, 5, hidden).sample)


def test_dtype_is_applied(tiny_models, cache_dir):
    c = load_stable_diffusion(resolve_model(str(tiny_models["sd"]), cache_dir=cache_dir), dtype=torch.bfloat16)
    assert {p.dtype for m in (c.unet, c.vae, c.text_encoder) for p in m.parameters()} == {torch.bfloat16}


def test_load_blip(tiny_models, cache_dir):
    blip = load_blip(resolve_model(str(tiny_models["blip"]), cache_dir=cache_dir))
    _assert_frozen(blip.model)
    assert blip.processor.tokenizer.bos_token == "[DEC]"


def test_kind_mismatch(tiny_models, cache_dir):
    with pytest.raises(InvalidModel, match="not Stable Diffusion"):
        load_stable_diffusion(resolve_model(str(tiny_models["blip"]), cache_dir=cache_dir))
    with pytest.raises(InvalidModel, match="BLIP"):
        load_blip(resolve_model(str(tiny_models["sd"]), cache_dir=cache_dir))


def test_broken_folders_name_the_file(tiny_models, tmp_path, cache_dir):
    broken = tmp_path / "broken-sd"
    shutil.copytree(tiny_models["sd"], broken)
    resolved = resolve_model(str(broken), cache_dir=cache_dir)

    (broken / "vae" / "config.json").write_text("{ not json")
    with pytest.raises(InvalidModel, match=r"vae/config.json is not valid JSON"):
        load_stable_diffusion(resolved)
    shutil.copy(tiny_models["sd"] / "vae" / "config.json", broken / "vae" / "config.json")

    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(InvalidModel, match=r"unet has no weights file"):
        load_stable_diffusion(resolved)

    shutil.rmtree(broken / "text_encoder")
    with pytest.raises(InvalidModel, match=r"component folder .*text_encoder is missing"):
        load_stable_diffusion(resolved)


def test_truncated_weights_become_invalid_model(tiny_models, tmp_path, cache_dir):
    broken = tmp_path / "truncated-sd"
    shutil.copytree(tiny_models["sd"], broken)
    weights = broken / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(InvalidModel, match=r"cannot load .*vae"):
        load_stable_diffusion(resolve_model(str(broken), cache_dir=cache_dir))


def test_family_rules():
    class Config:
        def __init__(self, hidden_size, hidden_act):
            self.hidden_size, self.hidden_act = hidden_size, hidden_act

    assert sd_family(Config(768, "quick_gelu")) == "sd1"
    assert sd_family(Config(1024, "gelu")) == "sd2"
    assert sd_family(Config(32, "quick_gelu")) == "sd1"


def test_load_clip(tiny_models, cache_dir):
    clip = load_clip(resolve_model(str(tiny_models["clip"]), cache_dir=cache_dir))
    _assert_frozen(clip.model)
    assert type(clip.model).__name__ == "CLIPModel" and clip.model.config.projection_dim == 32
    assert clip.fingerprint == fingerprint_path(tiny_models["clip"])
    with torch.no_grad():
        text = clip.model.get_text_features(**clip.processor(text=["a dog"], return_tensors="pt"))
    assert text.pooler_output.shape == (1, 32)


def test_load_clip_refuses_other_models(tiny_models, tmp_path, cache_dir):
    with pytest.raises(InvalidModel, match=r"holds a 'blip' model, not CLIP .*pass a CLIPModel folder") as info:
        load_clip(resolve_model(str(tiny_models["blip"]), cache_dir=cache_dir))
    assert str(tiny_models["blip"]) in str(info.value)
    with pytest.raises(InvalidModel, match=r"is a diffusers model, not CLIP"):
        load_clip(resolve_model(str(tiny_models["sd"]), cache_dir=cache_dir))
    broken = tmp_path / "broken-clip"
    shutil.copytree(tiny_models["clip"], broken)
    (broken / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(InvalidModel, match=r"cannot load CLIP from .*broken-clip"):
        load_clip(resolve_model(str(broken), cache_dir=cache_dir))
