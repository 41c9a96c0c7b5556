"""The tiny SDXL and SD2-768 models: random, seeded, in the real models' diffusers layouts (see tiny.py).

`tiny-sdxl/` is a StableDiffusionXLPipeline folder shaped like SDXL base: two text encoders (a CLIP-L-like
`CLIPTextModel`, 32 wide, quick_gelu; an OpenCLIP-G-like `CLIPTextModelWithProjection`, 48 wide, gelu, with a
projection), the second tokenizer padding with "!" as SDXL's does, a UNet that reads both encoders' penultimate
hidden states side by side (cross-attention width 32 + 48 = 80) and the pooled text embedding with the six size and
crop time ids (`addition_embed_type="text_time"`), SDXL's VAE scaling factor (0.13025) and its Euler scheduler.
The widths differ from each other and from the tiny SD's so that a mismatch shows in every check.

`tiny-sd2-768/` is the tiny SD with SD2-768's traits: a gelu (OpenCLIP-like) text encoder that pads with "!", and a
v-prediction scheduler, so that family detection, v-prediction training and sampling run on it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from services.common.models.tiny_vocab import clip_vocab_and_merges

__all__ = ["build_tiny_sd2_768", "build_tiny_sdxl", "clip_tokenizer_folder", "tiny_unet", "tiny_vae"]

SDXL_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    steps_offset=1,
    timestep_spacing="leading",
    interpolation_type="linear",
    prediction_type="epsilon",
    use_karras_sigmas=False,
)
SD2_768_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    steps_offset=1,
    clip_sample=False,
    set_alpha_to_one=False,
    prediction_type="v_prediction",
)
_ADD_TIME_DIM = 8  # SDXL: 256


def clip_tokenizer_folder(folder: Path, *, pad_token: str = "<|endoftext|>"):
    """Write a CLIP tokenizer as SD ships it (vocab.json + merges.txt + configs) and load it back. SD1.x pads with
    the end token; SD2.x and SDXL's second tokenizer with "!"."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    merges_text = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    (folder / "merges.txt").write_text(merges_text, encoding="utf-8")
    end = "<|endoftext|>"
    specials = {"bos_token": "<|startoftext|>", "eos_token": end, "unk_token": end, "pad_token": pad_token}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, **specials}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return CLIPTokenizer.from_pretrained(folder)


def _text_config(tokenizer, *, width: int, layers: int, act: str):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=width * 2 + 5,
        num_hidden_layers=layers,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=width,
        hidden_act=act,
        layer_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def tiny_unet(cross_attention_dim: int, **family):
    """The tiny UNet every family shares (diffusers' fast-test sizes, 32x32 latents), with the family's extras."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=32,
        **family,
    )


def tiny_vae(scaling_factor: float = 0.18215):
    """The tiny VAE (two blocks: factor 2, 64 px <-> 32x32 latents); SD's scaling factor unless told otherwise."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        layers_per_block=2,
        scaling_factor=scaling_factor,
        sample_size=64,
    )


def _save(pipe, folder: Path) -> None:
    """save_pretrained, keeping the tokenizers in SD's vocab.json + merges.txt layout (it rewrites them)."""
    tokenizers = [p for p in folder.iterdir() if p.name.startswith("tokenizer")]
    kept = {p.name: {f.name: f.read_bytes() for f in p.iterdir()} for p in tokenizers}
    pipe.save_pretrained(folder, safe_serialization=True)
    for name, files in kept.items():
        shutil.rmtree(folder / name)
        (folder / name).mkdir()
        for file_name, data in files.items():
            (folder / name / file_name).write_bytes(data)


def build_tiny_sdxl(folder: Path, *, seed: int, single_file: Path | None = None) -> None:
    """The folder, and with `single_file` the same weights as one original-format SDXL checkpoint."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = clip_tokenizer_folder(folder / "tokenizer")
    tokenizer_2 = clip_tokenizer_folder(folder / "tokenizer_2", pad_token="!")
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(_text_config(tokenizer, width=32, layers=3, act="quick_gelu"))
    torch.manual_seed(seed + 1)
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(tokenizer_2, width=48, layers=3, act="gelu"))
    torch.manual_seed(seed + 2)
    unet = tiny_unet(
        32 + 48,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=_ADD_TIME_DIM,
        projection_class_embeddings_input_dim=48 + 6 * _ADD_TIME_DIM,  # pooled width + six time ids
    )
    torch.manual_seed(seed + 3)
    vae = tiny_vae(0.13025)  # SDXL's VAE scaling factor
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=EulerDiscreteScheduler(**SDXL_SCHEDULER),
    )
    _save(pipe, folder)
    if single_file is not None:
        from services.common.models.ldm_checkpoint import save_ldm_checkpoint, sdxl_pipeline_to_ldm

        save_ldm_checkpoint(sdxl_pipeline_to_ldm(unet, vae, text_encoder, text_encoder_2), single_file)


def build_tiny_sd2_768(folder: Path, *, seed: int) -> None:
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextModel

    tokenizer = clip_tokenizer_folder(folder / "tokenizer", pad_token="!")
    torch.manual_seed(seed)
    unet = tiny_unet(40, use_linear_projection=True)
    torch.manual_seed(seed + 1)
    vae = tiny_vae()
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(_text_config(tokenizer, width=40, layers=3, act="gelu"))
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(**SD2_768_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    _save(pipe, folder)
