"""diffusers -> original (LDM / A1111) single-file Stable Diffusion 1.x and SDXL state-dict conversion.

A port of diffusers' `scripts/convert_diffusers_to_original_stable_diffusion.py`, generalised from SD1.5's fixed
4 blocks x 2 layers to whatever the UNet/VAE configs say, so that it also writes the tiny test checkpoint. The
inverse (what `from_single_file` reads) is `diffusers.loaders.single_file_utils.convert_ldm_*_checkpoint`.

Key prefixes of the result: `model.diffusion_model.*` (UNet), `first_stage_model.*` (VAE),
`cond_stage_model.transformer.text_model.*` (CLIP text encoder, as in SD1.x checkpoints). SDXL checkpoints keep
the UNet and VAE prefixes (the UNet adds `label_emb.0.*`, its size and pooled-text embedding) and hold the encoders
under `conditioner.embedders.0.transformer.text_model.*` (CLIP-L, transformers' names) and
`conditioner.embedders.1.model.*` (OpenCLIP-G in open_clip's names: fused q/k/v, `resblocks`, a [width, proj]
`text_projection`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file

__all__ = [
    "unet_to_ldm",
    "vae_to_ldm",
    "clip_text_to_ldm",
    "pipeline_to_ldm",
    "sdxl_pipeline_to_ldm",
    "open_clip_to_ldm",
    "save_ldm_checkpoint",
]

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer.text_model."

# (LDM, diffusers) pairs, applied as substring replacements like the upstream script.
_UNET_TOP = [
    ("time_embed.0.", "time_embedding.linear_1."),
    ("time_embed.2.", "time_embedding.linear_2."),
    ("input_blocks.0.0.", "conv_in."),
    ("out.0.", "conv_norm_out."),
    ("out.2.", "conv_out."),
    ("label_emb.0.0.", "add_embedding.linear_1."),  # SDXL: time ids + pooled text -> the time embedding
    ("label_emb.0.2.", "add_embedding.linear_2."),
]
_UNET_RESNET = [
    ("in_layers.0", "norm1"),
    ("in_layers.2", "conv1"),
    ("out_layers.0", "norm2"),
    ("out_layers.3", "conv2"),
    ("emb_layers.1", "time_emb_proj"),
    ("skip_connection", "conv_shortcut"),
]
_VAE_ATTN = [("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."), ("proj_out.", "to_out.0.")]


def _unet_block_prefixes(config: Mapping) -> list[tuple[str, str]]:
    """(LDM prefix, diffusers prefix) for every UNet block, from the block types and layers per block."""
    down, up = list(config["down_block_types"]), list(config["up_block_types"])
    n = int(config["layers_per_block"])
    pairs: list[tuple[str, str]] = []
    for i, block in enumerate(down):
        for j in range(n):
            pairs.append((f"input_blocks.{(n + 1) * i + j + 1}.0.", f"down_blocks.{i}.resnets.{j}."))
            if block.startswith("CrossAttn"):
                pairs.append((f"input_blocks.{(n + 1) * i + j + 1}.1.", f"down_blocks.{i}.attentions.{j}."))
        if i < len(down) - 1:
            pairs.append((f"input_blocks.{(n + 1) * (i + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv."))
    for i, block in enumerate(up):
        has_attn = block.startswith("CrossAttn")
        for j in range(n + 1):
            pairs.append((f"output_blocks.{(n + 1) * i + j}.0.", f"up_blocks.{i}.resnets.{j}."))
            if has_attn:
                pairs.append((f"output_blocks.{(n + 1) * i + j}.1.", f"up_blocks.{i}.attentions.{j}."))
        if i < len(up) - 1:
            pairs.append((f"output_blocks.{(n + 1) * i + n}.{2 if has_attn else 1}.", f"up_blocks.{i}.upsamplers.0."))
    pairs.append(("middle_block.1.", "mid_block.attentions.0."))
    for j in range(2):
        pairs.append((f"middle_block.{2 * j}.", f"mid_block.resnets.{j}."))
    return pairs


def unet_to_ldm(state_dict: Mapping[str, torch.Tensor], config: Mapping) -> dict[str, torch.Tensor]:
    """A diffusers UNet2DConditionModel state dict -> LDM keys (without the `model.diffusion_model.` prefix)."""
    mapping = {k: k for k in state_dict}
    for ldm, hf in _UNET_TOP:
        for k in mapping:
            if k.startswith(hf):
                mapping[k] = ldm + k[len(hf) :]
    for ldm_prefix, hf_prefix in _unet_block_prefixes(config):
        for k, v in mapping.items():
            if v.startswith(hf_prefix):
                rest = v[len(hf_prefix) :]
                if ".resnets." in hf_prefix:
                    for sd_part, hf_part in _UNET_RESNET:
                        rest = rest.replace(hf_part, sd_part)
                mapping[k] = ldm_prefix + rest
    unconverted = sorted(k for k, v in mapping.items() if k == v)
    if unconverted:
        raise ValueError(f"UNet keys with no LDM name (unsupported block layout?): {unconverted[:5]}")
    return {mapping[k]: v for k, v in state_dict.items()}


def _vae_prefixes(config: Mapping) -> list[tuple[str, str]]:
    n_blocks = len(config["block_out_channels"])
    n = int(config["layers_per_block"])
    pairs = [
        ("nin_shortcut", "conv_shortcut"),
        ("norm_out", "conv_norm_out"),
        ("mid.attn_1.", "mid_block.attentions.0."),
    ]
    for i in range(n_blocks):
        for j in range(n):
            pairs.append((f"encoder.down.{i}.block.{j}.", f"encoder.down_blocks.{i}.resnets.{j}."))
        if i < n_blocks - 1:
            pairs.append((f"down.{i}.downsample.", f"down_blocks.{i}.downsamplers.0."))
            pairs.append((f"up.{n_blocks - 1 - i}.upsample.", f"up_blocks.{i}.upsamplers.0."))
        for j in range(n + 1):
            pairs.append((f"decoder.up.{n_blocks - 1 - i}.block.{j}.", f"decoder.up_blocks.{i}.resnets.{j}."))
    for i in range(2):
        pairs.append((f"mid.block_{i + 1}.", f"mid_block.resnets.{i}."))
    return pairs


def vae_to_ldm(state_dict: Mapping[str, torch.Tensor], config: Mapping) -> dict[str, torch.Tensor]:
    """A diffusers AutoencoderKL state dict -> LDM keys; attention projections become 1x1 convs as in SD1.x."""
    mapping = {k: k for k in state_dict}
    for ldm, hf in _vae_prefixes(config):
        for k, v in mapping.items():
            mapping[k] = v.replace(hf, ldm)
    out: dict[str, torch.Tensor] = {}
    for k, tensor in state_dict.items():
        new = mapping[k]
        if "attentions" in k:
            for ldm, hf in _VAE_ATTN:
                new = new.replace(hf, ldm)
            if tensor.ndim == 2 and k.endswith("weight"):
                tensor = tensor.reshape(*tensor.shape, 1, 1)
        out[new] = tensor
    return out


def clip_text_to_ldm(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CLIPTextModel state dict -> `text_model.*` keys (transformers 5 flattened the `text_model` wrapper)."""
    return {(k if k.startswith("text_model.") else "text_model." + k): v for k, v in state_dict.items()}


def _unet_and_vae_to_ldm(unet, vae) -> dict[str, torch.Tensor]:
    """The UNet and VAE under their LDM prefixes, which SD1.x and SDXL checkpoints share."""
    out = {UNET_PREFIX + k: v for k, v in unet_to_ldm(unet.state_dict(), unet.config).items()}
    out.update({VAE_PREFIX + k: v for k, v in vae_to_ldm(vae.state_dict(), vae.config).items()})
    return out


def pipeline_to_ldm(unet, vae, text_encoder) -> dict[str, torch.Tensor]:
    """One SD1.x original-format state dict from the three diffusers/transformers modules."""
    out = _unet_and_vae_to_ldm(unet, vae)
    for k, v in clip_text_to_ldm(text_encoder.state_dict()).items():
        out["cond_stage_model.transformer." + k] = v
    return out


_OPEN_CLIP_LAYER = [
    ("self_attn.out_proj.", "attn.out_proj."),
    ("layer_norm1.", "ln_1."),
    ("layer_norm2.", "ln_2."),
    ("mlp.fc1.", "mlp.c_fc."),
    ("mlp.fc2.", "mlp.c_proj."),
]


def open_clip_to_ldm(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CLIPTextModelWithProjection state dict -> open_clip keys (SDXL's `conditioner.embedders.1.model.*`)."""
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        name = key.removeprefix("text_model.")
        if name == "embeddings.token_embedding.weight":
            out["token_embedding.weight"] = tensor
        elif name == "embeddings.position_embedding.weight":
            out["positional_embedding"] = tensor
        elif name.startswith("final_layer_norm."):
            out["ln_final." + name.removeprefix("final_layer_norm.")] = tensor
        elif key == "text_projection.weight":
            out["text_projection"] = tensor.T.contiguous()  # open_clip multiplies x @ projection
        elif name.startswith("encoder.layers."):
            index, rest = name.removeprefix("encoder.layers.").split(".", 1)
            prefix = f"transformer.resblocks.{index}."
            if rest.startswith("self_attn.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                projection, kind = rest.split(".")[1:3]
                fused.setdefault(f"{prefix}attn.in_proj_{kind}", {})[projection] = tensor
                continue
            for hf, ldm in _OPEN_CLIP_LAYER:
                rest = rest.replace(hf, ldm)
            out[prefix + rest] = tensor
        else:
            raise ValueError(f"text encoder key with no open_clip name: {key}")
    for key, parts in fused.items():
        out[key] = torch.cat([parts["q_proj"], parts["k_proj"], parts["v_proj"]])
    return out


def sdxl_pipeline_to_ldm(unet, vae, text_encoder, text_encoder_2) -> dict[str, torch.Tensor]:
    """One SDXL original-format state dict (as SDXL base ships) from the four diffusers/transformers modules."""
    out = _unet_and_vae_to_ldm(unet, vae)
    for k, v in clip_text_to_ldm(text_encoder.state_dict()).items():
        out["conditioner.embedders.0.transformer." + k] = v
    for k, v in open_clip_to_ldm(text_encoder_2.state_dict()).items():
        out["conditioner.embedders.1.model." + k] = v
    return out


def save_ldm_checkpoint(state_dict: Mapping[str, torch.Tensor], path: Path, *, half: bool = False) -> None:
    """Write a single-file safetensors checkpoint (contiguous tensors, sorted keys, `format: pt` metadata)."""
    tensors = {}
    for k in sorted(state_dict):
        t = state_dict[k].detach().cpu()
        if half and t.is_floating_point():
            t = t.half()
        tensors[k] = t.contiguous().clone()
    save_file(tensors, str(path), metadata={"format": "pt"})
