"""txt2img sampling for a batch of images that share a model, sampler, step count and size.

Each image brings its own conditioning, seed and CFG scale, so one batch can hold images of several requests:

    latents_0[i] = randn([1, C, h, w], generator=cpu_generator(seed_i)) * init_noise_sigma     drawn on the CPU
    for t in timesteps:
        x            = scale_model_input(latents, t)                                          [B, C, h, w]
        eps_u, eps_c = unet([x, x], t, [uncond, cond]).chunk(2)                             one UNet call
        eps          = eps_u + cfg[i] * (eps_c - eps_u)                                       per-image CFG
        latents      = scheduler.step(eps, t, latents, generator=[generator_i]).prev_sample  ancestral noise: CPU too
    images = vae.decode(latents / scaling_factor) / 2 + 0.5, clamped, rounded to uint8      (diffusers' rounding)

Noise comes from one CPU generator per image (as A1111's default "CPU" RNG source does), so a seed gives the same
noise whatever the device, batch size or batch neighbours. Where the prompt and negative prompt have different
lengths (a chunk more on one side), the two halves run as separate UNet calls, as A1111 does without padding.

SDXL's conditioning also carries the pooled text embedding, and the UNet gets time ids for the batch's one size
(original = target = (H, W), crop (0, 0), as diffusers generates): guidance runs on both, the negative half with its
own pooled embedding and the same time ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from services.common.models.loading import StableDiffusionComponents
from services.common.prompts import Conditioning, sdxl_time_ids
from services.preview.samplers import Sampler

__all__ = ["DenoiseItem", "SamplingShape", "sample", "decode"]


@dataclass(frozen=True)
class SamplingShape:
    """What images must share to be sampled in one batch (besides the model and the conditioning lengths)."""

    sampler: Sampler
    steps: int
    width: int
    height: int


@dataclass(frozen=True)
class DenoiseItem:
    cond: Conditioning  # the prompt's, batch 1, on the model's device: hidden [1, L, D] (SDXL: and pooled [1, P])
    uncond: Conditioning  # the negative prompt's: hidden [1, L', D]
    seed: int
    cfg_scale: float


def sample(
    components: StableDiffusionComponents,
    items: Sequence[DenoiseItem],
    shape: SamplingShape,
) -> torch.Tensor:
    """Denoised latents [B, C, h, w] for `items`."""
    unet = components.unet
    device, dtype = unet.device, unet.dtype
    scheduler = shape.sampler.scheduler(components.scheduler.config)
    scheduler.set_timesteps(shape.steps, device=device)
    factor = components.vae_scale_factor
    latent_shape = (1, unet.config.in_channels, shape.height // factor, shape.width // factor)
    generators = [torch.Generator("cpu").manual_seed(item.seed) for item in items]
    noise = torch.cat([torch.randn(latent_shape, generator=g, dtype=torch.float32) for g in generators])
    latents = noise.to(device=device, dtype=dtype) * scheduler.init_noise_sigma
    cond = _to(Conditioning.cat([item.cond for item in items]), dtype)  # hidden [B, L, D]
    uncond = _to(Conditioning.cat([item.uncond for item in items]), dtype)  # hidden [B, L', D]
    guided = any(item.cfg_scale != 1.0 for item in items)
    scales = torch.tensor([item.cfg_scale for item in items], device=device, dtype=dtype).view(-1, 1, 1, 1)
    together = cond.hidden.shape[1] == uncond.hidden.shape[1]
    both = Conditioning.cat([uncond, cond]) if guided and together else None
    time_ids = both_ids = None
    if cond.pooled is not None:
        time_ids = sdxl_time_ids(shape.height, shape.width, len(items), device=device, dtype=dtype)
        both_ids = torch.cat([time_ids, time_ids])
    with torch.inference_mode():
        for t in scheduler.timesteps:
            x = scheduler.scale_model_input(latents, t)
            if not guided:
                eps = unet(x, t, **cond.unet_kwargs(time_ids)).sample
            elif both is not None:
                eps_uncond, eps_cond = unet(torch.cat([x, x]), t, **both.unet_kwargs(both_ids)).sample.chunk(2)
                eps = eps_uncond + scales * (eps_cond - eps_uncond)
            else:
                eps_uncond = unet(x, t, **uncond.unet_kwargs(time_ids)).sample
                eps_cond = unet(x, t, **cond.unet_kwargs(time_ids)).sample
                eps = eps_uncond + scales * (eps_cond - eps_uncond)
            latents = scheduler.step(eps, t, latents, generator=generators).prev_sample
    return latents


def _to(cond: Conditioning, dtype: torch.dtype) -> Conditioning:
    return Conditioning(cond.hidden.to(dtype), None if cond.pooled is None else cond.pooled.to(dtype))


def decode(components: StableDiffusionComponents, latents: torch.Tensor) -> list[Image.Image]:
    """RGB images from latents, rounded to uint8 the way diffusers' image processor does."""
    vae = components.vae
    with torch.inference_mode():
        pixels = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample
    pixels = (pixels.float() / 2 + 0.5).clamp(0, 1)
    array = (pixels.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    return [Image.fromarray(image) for image in array]
