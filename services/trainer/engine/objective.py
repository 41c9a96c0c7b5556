"""The diffusion objective: noise the latents at random timesteps, predict with the UNet, weighted MSE.

    t       ~ U{0, ..., T-1}                                  [B]       (ldm's and diffusers' draw)
    noise   = N(0, I)  (+ offset * N(0, 1) per sample/channel) [B, 4, h, w]
    x_t     = sqrt(a_t) x_0 + sqrt(1 - a_t) noise              (DDPMScheduler.add_noise, same arithmetic)
    target  = noise (epsilon) | sqrt(a_t) noise - sqrt(1 - a_t) x_0 (v_prediction, get_velocity)
    loss_b  = mean over (c, h, w) of  w_alpha * (pred - target)^2      (A1111's weighted_forward for alpha)
    loss    = mean over b of  loss_b * snr_weight_b                      (diffusers' min-SNR: min(snr, g) / snr,
                                                                          or / (snr + 1) for v-prediction)
With no alpha weights and no min-SNR this is `F.mse_loss(pred, target)`, the loss of A1111 and diffusers alike.
Noise offset is diffusers' convention (`noise += offset * randn(B, C, 1, 1)`), and the target is the offset noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["NoiseSchedule", "Noised", "add_noise", "loss_per_sample", "snr_weights"]


class NoiseSchedule:
    """The training noise schedule of the model's scheduler config, as device tables indexed by timestep."""

    def __init__(self, scheduler_config: Any, device: torch.device) -> None:
        from diffusers import DDPMScheduler

        ddpm = DDPMScheduler.from_config(scheduler_config)
        alphas_cumprod = ddpm.alphas_cumprod.to(device=device, dtype=torch.float32)  # [T]
        self.timesteps = int(ddpm.config.num_train_timesteps)
        # Gather-then-pow (diffusers) and pow-then-gather are the same elementwise operation: bit-identical.
        self.sqrt_alpha = alphas_cumprod**0.5  # [T]
        self.sqrt_one_minus_alpha = (1 - alphas_cumprod) ** 0.5  # [T]
        self.snr = (self.sqrt_alpha / self.sqrt_one_minus_alpha) ** 2  # [T], diffusers' compute_snr


@dataclass(frozen=True)
class Noised:
    noisy: torch.Tensor  # [B, 4, h, w] the UNet's input
    target: torch.Tensor  # [B, 4, h, w] what it should predict
    timesteps: torch.Tensor  # [B] long


def add_noise(
    latents: torch.Tensor,
    schedule: NoiseSchedule,
    prediction_type: str,
    generator: torch.Generator,
    *,
    noise_offset: float | None = None,
) -> Noised:
    """Draw timesteps, then noise, then (optionally) the offset noise, in that order, from `generator`."""
    b = latents.shape[0]
    device = latents.device
    timesteps = torch.randint(0, schedule.timesteps, (b,), generator=generator, device=device)  # [B]
    noise = torch.randn(latents.shape, generator=generator, device=device, dtype=latents.dtype)  # [B, 4, h, w]
    if noise_offset:
        offset = torch.randn((b, latents.shape[1], 1, 1), generator=generator, device=device, dtype=latents.dtype)
        noise = noise + noise_offset * offset
    sqrt_alpha = schedule.sqrt_alpha.to(latents.dtype)[timesteps].view(b, 1, 1, 1)
    sqrt_one_minus = schedule.sqrt_one_minus_alpha.to(latents.dtype)[timesteps].view(b, 1, 1, 1)
    noisy = sqrt_alpha * latents + sqrt_one_minus * noise
    if prediction_type == "epsilon":
        target = noise
    elif prediction_type == "v_prediction":
        target = sqrt_alpha * noise - sqrt_one_minus * latents
    else:
        raise ValueError(f"unsupported prediction type {prediction_type!r}: epsilon and v_prediction train")
    return Noised(noisy, target, timesteps)


def snr_weights(schedule: NoiseSchedule, timesteps: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """diffusers' min-SNR weights [B]: min(snr, gamma) / snr, or / (snr + 1) for v-prediction."""
    snr = schedule.snr[timesteps]  # [B]
    clipped = torch.stack([snr, gamma * torch.ones_like(snr)], dim=1).min(dim=1)[0]
    return clipped / (snr + 1) if prediction_type == "v_prediction" else clipped / snr


def loss_per_sample(
    pred: torch.Tensor,
    noised: Noised,
    *,
    weights: torch.Tensor | None = None,
    schedule: NoiseSchedule | None = None,
    min_snr_gamma: float | None = None,
    prediction_type: str = "epsilon",
) -> torch.Tensor:
    """[B] float32 losses; their mean is the step's loss."""
    error = (pred.float() - noised.target.float()) ** 2  # [B, 4, h, w]
    if weights is not None:
        error = error * weights  # [B, 1, h, w] broadcast over channels
    loss = error.mean(dim=(1, 2, 3))  # [B]
    if min_snr_gamma:
        loss = loss * snr_weights(schedule, noised.timesteps, min_snr_gamma, prediction_type)
    return loss
