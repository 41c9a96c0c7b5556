"""The objective against diffusers' own arithmetic: add_noise, get_velocity (v-prediction), compute_snr (min-SNR),
the noise-offset convention, and A1111's alpha-weighted MSE."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.training_utils import compute_snr

from services.trainer.engine.objective import Noised, NoiseSchedule, add_noise, loss_per_sample, snr_weights
from services.trainer.engine.testing import tiny_components


@pytest.fixture(scope="module")
def config(tiny_models):
    return tiny_components(tiny_models["sd"]).scheduler.config


def _draw(config, prediction_type, noise_offset=None, seed=0):
    latents = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(99))
    schedule = NoiseSchedule(config, torch.device("cpu"))
    noised = add_noise(
        latents, schedule, prediction_type, torch.Generator().manual_seed(seed), noise_offset=noise_offset
    )
    return latents, schedule, noised


def test_epsilon_noising_is_ddpm_add_noise_bit_for_bit(config):
    latents, _, noised = _draw(config, "epsilon")
    replay = torch.Generator().manual_seed(0)
    timesteps = torch.randint(0, 1000, (4,), generator=replay)
    noise = torch.randn(latents.shape, generator=replay)
    assert torch.equal(noised.timesteps, timesteps) and torch.equal(noised.target, noise)
    assert torch.equal(noised.noisy, DDPMScheduler.from_config(config).add_noise(latents, noise, timesteps))


def test_v_prediction_target_is_get_velocity(config):
    latents, _, noised = _draw(config, "v_prediction")
    _, _, eps = _draw(config, "epsilon")
    ddpm = DDPMScheduler.from_config(config)
    assert torch.equal(noised.noisy, eps.noisy)  # same draws, same input
    assert torch.equal(noised.target, ddpm.get_velocity(latents, eps.target, noised.timesteps))


def test_noise_offset_follows_diffusers_convention(config):
    latents, _, noised = _draw(config, "epsilon", noise_offset=0.1)
    replay = torch.Generator().manual_seed(0)
    timesteps = torch.randint(0, 1000, (4,), generator=replay)
    noise = torch.randn(latents.shape, generator=replay)
    noise = noise + 0.1 * torch.randn((4, 4, 1, 1), generator=replay)  # noise += offset * randn(B, C, 1, 1)
    assert torch.equal(noised.target, noise)
    assert torch.equal(noised.noisy, DDPMScheduler.from_config(config).add_noise(latents, noise, timesteps))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_min_snr_weights_match_diffusers_training_scripts(config, prediction_type):
    _, schedule, noised = _draw(config, prediction_type)
    snr = compute_snr(DDPMScheduler.from_config(config), noised.timesteps)
    expected = torch.stack([snr, 5.0 * torch.ones_like(noised.timesteps)], dim=1).min(dim=1)[0]
    expected = expected / (snr + 1) if prediction_type == "v_prediction" else expected / snr
    torch.testing.assert_close(snr_weights(schedule, noised.timesteps, 5.0, prediction_type), expected)
    pred = torch.randn_like(noised.target)
    loss = loss_per_sample(pred, noised, schedule=schedule, min_snr_gamma=5.0, prediction_type=prediction_type).mean()
    reference = (F.mse_loss(pred, noised.target, reduction="none").mean(dim=(1, 2, 3)) * expected).mean()
    torch.testing.assert_close(loss, reference)


def test_plain_loss_is_mse_and_alpha_weights_multiply_the_error(config):
    _, _, noised = _draw(config, "epsilon")
    pred = torch.randn_like(noised.target)
    torch.testing.assert_close(loss_per_sample(pred, noised).mean(), F.mse_loss(pred, noised.target))
    weights = torch.rand(4, 1, 8, 8)
    weighted = loss_per_sample(pred, Noised(noised.noisy, noised.target, noised.timesteps), weights=weights)
    torch.testing.assert_close(weighted.mean(), (weights * (pred - noised.target) ** 2).mean())  # A1111
