"""Prompts to tokens (A1111's emphasis, chunks and embedding slots), the splice into CLIP, and equivalence with the
diffusers way of training the same embedding (added tokens, resized embedding matrix, rows set)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from services.trainer.engine.embedding_layer import TextConditioner
from services.trainer.engine.objective import NoiseSchedule, add_noise, loss_per_sample
from services.trainer.engine.prompts import CHUNK_TOKENS, PromptTokenizer, parse_emphasis

NAME = "subj3ct"


def test_emphasis_parses_as_a1111_documents():
    assert parse_emphasis("a (red:1.3) circle") == [("a ", 1.0), ("red", 1.3), (" circle", 1.0)]
    parsed = dict(parse_emphasis("((big)) [blurry] \\(literal\\)"))
    assert parsed["big"] == pytest.approx(1.21) and parsed["blurry"] == pytest.approx(1 / 1.1)
    assert parsed[" (literal)"] == 1.0
    assert parse_emphasis("one BREAK two") == [("one", 1.0), ("BREAK", -1.0), ("two", 1.0)]
    assert parse_emphasis("(unclosed") == [("unclosed", pytest.approx(1.1))]
    assert parse_emphasis("plain, text") == [("plain, text", 1.0)]


def test_plain_prompts_give_the_tokenizers_own_padded_ids(components):
    tokenizer = PromptTokenizer(components.tokenizer, NAME, 3)
    prompts = ["a photo of a woman, smiling", "a red circle"]
    batch = tokenizer.batch(prompts)
    expected = components.tokenizer(prompts, padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert batch.ids.shape == (2, 1, 77) and torch.equal(batch.ids[:, 0], expected)
    assert batch.weights is None and (batch.slots == -1).all()


def test_the_trigger_becomes_one_slot_per_vector(components):
    tokenizer = PromptTokenizer(components.tokenizer, NAME, 3)
    tokens = tokenizer(f"a photo of {NAME}, a (woman:1.2)")
    plain = components.tokenizer("a photo of", add_special_tokens=False)["input_ids"]
    slots = tokens.slots[0]
    start = 1 + len(plain)  # after the start token
    assert slots[start : start + 3] == (0, 1, 2) and tokens.slot_count == 3
    woman = components.tokenizer.convert_tokens_to_ids("woman</w>")
    assert tokens.weights[0][tokens.ids[0].index(woman)] == pytest.approx(1.2)


def test_long_prompts_split_into_chunks_and_never_split_the_embedding(components):
    tokenizer = PromptTokenizer(components.tokenizer, NAME, 4)
    word = components.tokenizer.convert_tokens_to_ids("red</w>")
    tokens = tokenizer("red " * (CHUNK_TOKENS - 2) + NAME + " red")  # 73 words, then 4 slots do not fit: next chunk
    assert tokens.chunks == 2
    assert tokens.slots[0].count(-1) == 77 and tokens.slots[1][1:5] == (0, 1, 2, 3)
    assert tokens.ids[0][1 : CHUNK_TOKENS - 1] == (word,) * (CHUNK_TOKENS - 2)
    end = components.tokenizer.eos_token_id
    assert tokens.ids[0][CHUNK_TOKENS - 1 :] == (end, end, end)  # padded to 75, then the end token
    # A comma within 20 tokens of a full chunk: the words after it move to the next chunk.
    comma = tokenizer("red " * 70 + ", " + "blue " * 10)
    assert comma.chunks == 2
    first = comma.ids[0]
    assert first[71] == components.tokenizer.convert_tokens_to_ids(",</w>") and set(first[72:]) == {end}
    batch = tokenizer.batch(["a short one", "red " * 80])
    assert batch.ids.shape == (2, 2, 77)  # the short prompt is padded with an empty chunk


def test_sd2_pads_after_the_end_token_with_its_pad_token(components):
    sd2_tokenizer = copy.deepcopy(components.tokenizer)
    sd2_tokenizer.pad_token = "!"
    tokens = PromptTokenizer(sd2_tokenizer, NAME, 1)("a red circle")
    expected = sd2_tokenizer("a red circle", padding="max_length", max_length=77).input_ids
    assert list(tokens.ids[0]) == expected


def test_the_splice_with_no_slots_is_exactly_clip(components):
    tokenizer = PromptTokenizer(components.tokenizer, NAME, 2)
    batch = tokenizer.batch(["a photo of a woman", "red " * 100])  # two chunks each
    z = TextConditioner(components.text_encoder)(batch, torch.zeros(2, 32))
    ids = batch.ids.reshape(4, 77)
    expected = components.text_encoder(ids).last_hidden_state.reshape(2, 154, -1)
    assert z.shape == (2, 154, 32) and torch.equal(z, expected)


def test_emphasis_scales_outputs_and_keeps_the_mean(components):
    tokenizer = PromptTokenizer(components.tokenizer, NAME, 1)
    conditioner = TextConditioner(components.text_encoder)
    weighted = tokenizer.batch(["a (red:1.5) circle"])
    plain = tokenizer.batch(["a red circle"])
    z_weighted, z_plain = conditioner(weighted, torch.zeros(1, 32)), conditioner(plain, torch.zeros(1, 32))
    assert torch.allclose(z_weighted.mean(), z_plain.mean(), atol=1e-6)
    ids = weighted.ids[0, 0].tolist()
    red, circle = (ids.index(components.tokenizer.convert_tokens_to_ids(t)) for t in ("red</w>", "circle</w>"))
    rescale = z_weighted[0, circle] / z_plain[0, circle]  # every token is rescaled by the same factor ...
    assert torch.allclose(rescale, rescale[0].expand_as(rescale), rtol=1e-4)
    ratio = z_weighted[0, red] / z_plain[0, red]  # ... and the weighted one also by its weight
    torch.testing.assert_close(ratio, 1.5 * rescale, rtol=1e-4, atol=1e-5)


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
    tokens = PromptTokenizer(components.tokenizer, NAME, n).batch(prompts)
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
