"""The engine's splice trains exactly what diffusers' textual_inversion.py trains: same loss, same gradient."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from services.common.prompts import PromptTokenizer, TextConditioner
from services.trainer.engine.objective import NoiseSchedule, add_noise, loss_per_sample

NAME = "subj3ct"


def test_loss_and_gradient_equal_the_diffusers_way(components):
    """Our splice vs diffusers' textual_inversion.py on the same fixed batch: added tokens in a copy of the
    tokenizer, a resized copy of the token embeddings with the rows set, CLIP, UNet, MSE against the noise."""
    torch.manual_seed(0)
    n = 3
    table = components.text_encoder.get_input_embeddings().weight
    init = table[[5, 17, 29]].detach().clone() + 0.01 * torch.randn(n, table.shape[1])
    prompts = [f"a photo of {NAME}, a woman", f"{NAME} on a red background"]
    latents = torch.randn(2, 4, 16, 16)

    # Ours: the engine's prompt tokens, splice, noise and loss.
    vectors = torch.nn.Parameter(init.clone())
    generator = torch.Generator().manual_seed(1)
    schedule = NoiseSchedule(components.scheduler.config, torch.device("cpu"))
    noised = add_noise(latents, schedule, "epsilon", generator)
    tokens = PromptTokenizer(components.tokenizer, {NAME: n}).batch(prompts)
    cond = TextConditioner(components.text_encoder)(tokens, vectors)
    pred = components.unet(noised.noisy, noised.timesteps, cond).sample
    loss = loss_per_sample(pred, noised).mean()
    loss.backward()

    # diffusers' way, from the same components and the same noise and timesteps.
    tokenizer = copy.deepcopy(components.tokenizer)
    placeholders = [NAME] + [f"{NAME}_{i}" for i in range(1, n)]
    assert tokenizer.add_tokens(placeholders) == n
    text_encoder = copy.deepcopy(components.text_encoder)
    text_encoder.resize_token_embeddings(len(tokenizer))
    rows = tokenizer.convert_tokens_to_ids(placeholders)
    embeddings = text_encoder.get_input_embeddings()
    with torch.no_grad():
        embeddings.weight[rows] = init
    embeddings.weight.requires_grad_(True)
    expanded = [p.replace(NAME, " ".join(placeholders)) for p in prompts]
    ids = tokenizer(expanded, padding="max_length", truncation=True, max_length=77, return_tensors="pt").input_ids
    hidden = text_encoder(ids)[0]
    noise = noised.target  # epsilon: the target is the noise
    noisy = DDPMScheduler.from_config(components.scheduler.config).add_noise(latents, noise, noised.timesteps)
    assert torch.equal(noisy, noised.noisy)
    reference = F.mse_loss(components.unet(noisy, noised.timesteps, hidden).sample.float(), noise.float())
    reference.backward()

    assert abs(loss.item() - reference.item()) <= 1e-5
    torch.testing.assert_close(vectors.grad, embeddings.weight.grad[rows], atol=1e-5, rtol=1e-4)
    assert vectors.grad.abs().sum() > 0
