"""Train the toy SD1.x on the toy world and save it as an ordinary diffusers folder (same classes as SD1.5).

    python -m services.toyworld.toy_sd --out services/toyworld/weights/toy-sd [--vae-steps 700] [--unet-steps 8000]

The committed model came from three runs, each starting from the last (`weights/toy-sd.recipe.json` records all
three: the second under "init_recipe", the first under its "vae_recipe"):

    python -m services.toyworld.toy_sd --out /tmp/vae-run/toy-sd --pool 12000 --unet-steps 0
    python -m services.toyworld.toy_sd --out /tmp/base-run/toy-sd --vae-from /tmp/vae-run/toy-sd
    python -m services.toyworld.toy_sd --out services/toyworld/weights/toy-sd --init-from /tmp/base-run/toy-sd \
        --seed 1 --unet-steps 3500 --unet-lr 5e-4 --text-lr 5e-4 --subject-only 0.3

The third run, on a fresh pool, words 30% of its captions without a background, because the second one drew the
subject's colour behind it too often when a prompt named no background (`a photo of [name]`).

Two stages, each on a pool of generated scenes (64 px pictures and their captions, `world.py`):

1. the VAE (AutoencoderKL, scale factor 4: 64 px <-> 16 x 16 x 4 latents): L1 + MSE reconstruction and a small KL;
   its `scaling_factor` is then set to 1 / std of the latents, as SD's 0.18215 was;
2. the UNet (UNet2DConditionModel with cross-attention) and the CLIP text encoder (from scratch, small) together:
   epsilon prediction under SD1.5's scaled-linear betas, min-SNR-5 loss weights, 10% empty captions so that
   classifier-free guidance works, an exponential moving average of both, which is what gets saved.
   Each step words its captions afresh (`phrase`): "a photo of a red star, on a green background", "a star",
   "on a green background"... so that the prompts people write around an embedding (`a photo of [name]`,
   `[name] on a green background`, a template's comma) are words the model knows, and a prompt that leaves
   something out still draws a whole picture.

The tokenizer is `tiny_vocab`'s byte-level CLIP BPE, in SD1.5's vocab.json + merges.txt layout: every world word is
one token and any other word falls back to fragments. The folder is saved in fp16 (a few MB; the loader upcasts),
with a checkpoint every `--save-every` steps so that a run cut short still leaves a usable model, and the recipe
(sizes, steps, learning rates, seed, seconds, final losses) is written beside it as `<out>.recipe.json`.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, PNDMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from services.common.models.tiny import SD15_SCHEDULER
from services.common.models.tiny_sdxl import clip_tokenizer_folder
from services.toyworld.world import Scene, background_phrase, render, sample_scene, with_article

__all__ = ["Recipe", "build_models", "main", "save_folder", "train"]

log = logging.getLogger(__name__)

IMAGE_SIZE = 64
VAE_CONFIG = dict(  # three blocks: scale factor 4
    block_out_channels=[16, 32, 64],
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 3,
    up_block_types=["UpDecoderBlock2D"] * 3,
    latent_channels=4,
    layers_per_block=1,
    norm_num_groups=8,
    sample_size=IMAGE_SIZE,
)
TEXT_CONFIG = dict(
    hidden_size=64,
    intermediate_size=256,
    num_hidden_layers=3,
    num_attention_heads=4,
    max_position_embeddings=77,
    projection_dim=64,
    layer_norm_eps=1e-5,
)
UNET_CONFIG = dict(  # 16 x 16 latents: convolutions only at 16, cross-attention at 8, 4 and the middle
    sample_size=IMAGE_SIZE // 4,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64, 128),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=TEXT_CONFIG["hidden_size"],
    attention_head_dim=4,
    norm_num_groups=32,
)


class Recipe(argparse.Namespace):
    """The command line, saved into the recipe: see `parse_args` for each field."""


def parse_args(argv: list[str] | None) -> Recipe:
    p = argparse.ArgumentParser(description="Train the toy SD1.x on the toy world.")
    p.add_argument("--out", type=Path, default=Path("services/toyworld/weights/toy-sd"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pool", type=int, default=24000, help="generated scenes to train on")
    p.add_argument("--vae-steps", type=int, default=700)
    p.add_argument("--vae-batch", type=int, default=16)
    p.add_argument("--vae-lr", type=float, default=2e-3)
    p.add_argument("--kl-weight", type=float, default=1e-5)
    p.add_argument("--decoder-steps", type=int, default=1500, help="stage 1b: decoder only, encoder frozen")
    p.add_argument("--decoder-lr", type=float, default=5e-4)
    p.add_argument("--unet-steps", type=int, default=8000)
    p.add_argument("--unet-batch", type=int, default=64)
    p.add_argument("--unet-lr", type=float, default=1e-3)
    p.add_argument("--text-lr", type=float, default=5e-4)
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay of the saved UNet and text encoder")
    p.add_argument("--uncond", type=float, default=0.1, help="fraction of empty captions (CFG)")
    p.add_argument("--subject-only", type=float, default=0.1, help="fraction of captions without the background")
    p.add_argument("--minutes", type=float, default=0.0, help="stop the UNet stage after this wall time (0: none)")
    p.add_argument("--save-every", type=int, default=250)
    # One thread: with another job on the 2 cores, two OpenMP threads stall at every barrier (25x slower here).
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--vae-from", type=Path, default=None, help="reuse the VAE of this folder (skip stage 1)")
    p.add_argument(
        "--init-from", type=Path, default=None, help="continue from this folder: its VAE, UNet and text encoder"
    )
    return p.parse_args(argv, namespace=Recipe())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_pool(count: int, seed: int) -> tuple[torch.Tensor, list[Scene]]:
    """`count` scenes: pixels [N, 3, 64, 64] in [-1, 1] and the scenes themselves."""
    rng = random.Random(seed)
    scenes = [sample_scene(rng) for _ in range(count)]
    pixels = np.stack([np.asarray(render(s, IMAGE_SIZE)) for s in scenes])  # [N, 64, 64, 3] uint8
    tensor = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    return tensor, scenes


_PREFIXES = (("", 0.5), ("a photo of ", 0.35), ("a picture of ", 0.075), ("an image of ", 0.075))
_FORMS = (  # with the subject alone taking `subject_only` and these sharing the rest in proportion
    ("{subject} on {background}", 0.6),
    ("{subject}, on {background}", 0.15),
    ("on {background}", 0.075),
    ("{subject}, {background}", 0.075),
)


def phrase(scene: Scene, rng: random.Random, subject_only: float = 0.1) -> str:
    """One of the ways a person words `scene`; the canonical caption is the most likely one. `subject_only` is the
    share of captions without the background ("a photo of a pink heart"), from which the model learns to pick a
    background itself, never the subject's colour."""
    roll = rng.random()
    if roll < 0.85:
        subject = with_article(f"{scene.colour} {scene.shape}")
    elif roll < 0.925:
        subject = f"a {scene.shape}"
    else:
        subject = with_article(f"{scene.colour} shape")
    rest = [(form, weight * (1 - subject_only) / 0.9) for form, weight in _FORMS]
    forms = (*rest[:2], ("{subject}", subject_only), *rest[2:])  # this order keeps earlier runs' wordings
    form = _pick(forms, rng).format(subject=subject, background=background_phrase(scene.background))
    return _pick(_PREFIXES, rng) + form


def _pick(choices: tuple[tuple[str, float], ...], rng: random.Random) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def build_models(tokenizer: CLIPTokenizer, seed: int) -> tuple[AutoencoderKL, CLIPTextModel, UNet2DConditionModel]:
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(**VAE_CONFIG, scaling_factor=1.0)
    torch.manual_seed(seed + 2)
    specials = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    text = CLIPTextModel(
        CLIPTextConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **specials, **TEXT_CONFIG)
    )
    torch.manual_seed(seed + 3)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    return vae, text, unet


def train_vae(vae: AutoencoderKL, pixels: torch.Tensor, args: Recipe) -> dict:
    optimiser = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(args.seed + 10)
    vae.train()
    started, recon_avg, kl_avg = time.monotonic(), None, None
    for step in range(args.vae_steps):
        lr = args.vae_lr * min(1.0, (step + 1) / 50) * (0.5 + 0.5 * math.cos(math.pi * step / args.vae_steps))
        for group in optimiser.param_groups:
            group["lr"] = lr
        x = pixels[torch.randint(len(pixels), (args.vae_batch,), generator=generator)]  # [B, 3, 64, 64]
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
        y = vae.decode(z).sample
        recon = F.l1_loss(y, x) + F.mse_loss(y, x)
        kl = posterior.kl().mean() / z[0].numel()
        loss = recon + args.kl_weight * kl
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimiser.step()
        recon_avg = recon.item() if recon_avg is None else 0.95 * recon_avg + 0.05 * recon.item()
        kl_avg = kl.item() if kl_avg is None else 0.95 * kl_avg + 0.05 * kl.item()
        if step % 25 == 0 or step == args.vae_steps - 1:
            log.info("vae step %d recon %.4f kl %.3f (%.0f s)", step, recon_avg, kl_avg, time.monotonic() - started)
    vae.eval()
    return {"steps": args.vae_steps, "seconds": round(time.monotonic() - started, 1), "recon": recon_avg, "kl": kl_avg}


def finetune_decoder(vae: AutoencoderKL, pixels: torch.Tensor, args: Recipe) -> dict:
    """Stage 1b: sharpen the decoder with the encoder frozen, so the latents the UNet learns stay exactly as they are.

    Edges decide the judge's shape reading; after stage 1 a few reconstructions are still soft."""
    vae.requires_grad_(False)
    decoder = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    for p in decoder:
        p.requires_grad_(True)
    optimiser = torch.optim.AdamW(decoder, lr=args.decoder_lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(args.seed + 30)
    vae.decoder.train()
    started, recon_avg = time.monotonic(), None
    for step in range(args.decoder_steps):
        for group in optimiser.param_groups:
            group["lr"] = args.decoder_lr * 0.5 * (1 + math.cos(math.pi * step / args.decoder_steps))
        x = pixels[torch.randint(len(pixels), (args.vae_batch,), generator=generator)]  # [B, 3, 64, 64]
        with torch.no_grad():
            posterior = vae.encode(x).latent_dist
            z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
        y = vae.decode(z).sample
        recon = F.l1_loss(y, x) + F.mse_loss(y, x)
        optimiser.zero_grad(set_to_none=True)
        recon.backward()
        torch.nn.utils.clip_grad_norm_(decoder, 1.0)
        optimiser.step()
        recon_avg = recon.item() if recon_avg is None else 0.95 * recon_avg + 0.05 * recon.item()
        if step % 50 == 0 or step == args.decoder_steps - 1:
            log.info("decoder step %d recon %.4f (%.0f s)", step, recon_avg, time.monotonic() - started)
    vae.requires_grad_(False).eval()
    return {"steps": args.decoder_steps, "seconds": round(time.monotonic() - started, 1), "recon": recon_avg}


@torch.no_grad()
def encode_pool(vae: AutoencoderKL, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and stds of every pool image, [N, 4, 16, 16] each (sampled afresh at every step)."""
    means, stds = [], []
    for chunk in pixels.split(256):
        posterior = vae.encode(chunk).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
    return torch.cat(means), torch.cat(stds)


def tokenize(tokenizer: CLIPTokenizer, captions: list[str]) -> torch.Tensor:
    return tokenizer(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids


def train(
    unet: UNet2DConditionModel, text: CLIPTextModel, tokenizer: CLIPTokenizer, latents, scenes, args: Recipe, save
) -> dict:
    """Stage 2. `latents` = (means, stds) already scaled by the VAE's scaling factor; `save(unet, text)` saves."""
    means, stds = latents
    wording = random.Random(args.seed + 21)
    noise_scheduler = DDPMScheduler.from_config({**SD15_SCHEDULER, "clip_sample": False})
    snr = noise_scheduler.alphas_cumprod / (1 - noise_scheduler.alphas_cumprod)  # [1000]
    weights = snr.clamp(max=5.0) / snr  # min-SNR-5 for epsilon prediction
    groups = [
        {"params": list(unet.parameters()), "lr": args.unet_lr, "base": args.unet_lr},
        {"params": list(text.parameters()), "lr": args.text_lr, "base": args.text_lr},
    ]
    optimiser = torch.optim.AdamW(groups, weight_decay=1e-2)
    ema_unet, ema_text = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text).requires_grad_(False)
    live = list(unet.parameters()) + list(text.parameters())
    shadow = list(ema_unet.parameters()) + list(ema_text.parameters())
    generator = torch.Generator().manual_seed(args.seed + 20)
    unet.train()
    text.train()
    started, loss_avg, done = time.monotonic(), None, 0
    for step in range(args.unet_steps):
        scale = min(1.0, (step + 1) / 50) * (0.55 + 0.45 * math.cos(math.pi * step / args.unet_steps))
        for group in optimiser.param_groups:
            group["lr"] = group["base"] * scale
        index = torch.randint(len(means), (args.unet_batch,), generator=generator)
        z = means[index] + stds[index] * torch.randn(means[index].shape, generator=generator)  # [B, 4, 16, 16]
        dropped = (torch.rand(len(index), generator=generator) < args.uncond).tolist()
        captions = [
            "" if drop else phrase(scenes[i], wording, args.subject_only)
            for i, drop in zip(index.tolist(), dropped, strict=True)
        ]
        batch_ids = tokenize(tokenizer, captions)
        noise = torch.randn(z.shape, generator=generator)
        t = torch.randint(0, 1000, (len(index),), generator=generator)
        noisy = noise_scheduler.add_noise(z, noise, t)
        cond = text(batch_ids).last_hidden_state  # [B, 77, 64]
        eps = unet(noisy, t, encoder_hidden_states=cond).sample
        per_image = F.mse_loss(eps, noise, reduction="none").mean(dim=(1, 2, 3))
        loss = (per_image * weights[t]).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(live, 1.0)
        optimiser.step()
        done = step + 1
        decay = min(args.ema, (1 + step) / (10 + step))
        torch._foreach_lerp_(shadow, [p.detach() for p in live], 1 - decay)
        plain = per_image.mean().item()
        loss_avg = plain if loss_avg is None else 0.98 * loss_avg + 0.02 * plain
        elapsed = time.monotonic() - started
        if step % 20 == 0:
            log.info("unet step %d loss %.4f (%.0f s, %.2f s/step)", step, loss_avg, elapsed, elapsed / (step + 1))
        if (step + 1) % args.save_every == 0:
            save(ema_unet, ema_text, {"steps": step + 1, "seconds": round(elapsed, 1), "loss": loss_avg})
        if args.minutes and elapsed > args.minutes * 60:
            log.info("time budget reached at step %d", step + 1)
            break
    result = {"steps": done, "seconds": round(time.monotonic() - started, 1), "loss": loss_avg}
    save(ema_unet, ema_text, result)
    return result


def save_folder(folder: Path, tokenizer_dir: Path, vae, text, unet) -> None:
    """Write the diffusers folder (fp16 weights) through a temporary sibling, then swap it in."""
    from diffusers import StableDiffusionPipeline

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    halves = [copy.deepcopy(m).half() for m in (vae, text, unet)]
    pipe = StableDiffusionPipeline(
        vae=halves[0],
        text_encoder=halves[1],
        tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir),
        unet=halves[2],
        scheduler=PNDMScheduler(**SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(tmp, safe_serialization=True)
    scheduler_json = tmp / "scheduler" / "scheduler_config.json"
    config = json.loads(scheduler_json.read_text())
    scheduler_json.write_text(json.dumps({**config, "clip_sample": False}, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(tmp / "tokenizer")  # keep SD1.5's vocab.json + merges.txt layout, not transformers' rewrite
    shutil.copytree(tokenizer_dir, tmp / "tokenizer")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def vae_recipe_of(folder: Path) -> dict:
    """How the reused VAE was trained: the VAE stages of the recipe saved beside `folder`, so that a chain of runs
    stays reproducible."""
    path = folder.with_name(folder.name + ".recipe.json")
    if not path.is_file():
        return {"from": str(folder), "recipe": None}
    source = json.loads(path.read_text())
    keep = ("args", "vae", "vae_result", "decoder_result", "scaling_factor", "note")
    return {"from": str(folder), **{key: source[key] for key in keep if key in source}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    started = time.monotonic()
    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.with_name(out.name + ".work")
    shutil.rmtree(work, ignore_errors=True)
    tokenizer = clip_tokenizer_folder(work / "tokenizer")
    vae, text, unet = build_models(tokenizer, args.seed)
    log.info("params: vae %d, text %d, unet %d", *(sum(p.numel() for p in m.parameters()) for m in (vae, text, unet)))
    pixels, scenes = make_pool(args.pool, args.seed)
    log.info("pool of %d scenes ready (%.0f s)", len(scenes), time.monotonic() - started)
    reused = args.init_from or args.vae_from
    if reused is not None:
        vae = AutoencoderKL.from_pretrained(reused, subfolder="vae", torch_dtype=torch.float32).eval()
        vae_result = {"from": str(reused)}
    else:
        vae_result = train_vae(vae, pixels, args)
        vae.save_pretrained(work / "vae")  # to check reconstructions while the UNet trains
    if args.init_from is not None:
        text = CLIPTextModel.from_pretrained(args.init_from, subfolder="text_encoder", torch_dtype=torch.float32)
        unet = UNet2DConditionModel.from_pretrained(args.init_from, subfolder="unet", torch_dtype=torch.float32)
    mean, std = encode_pool(vae, pixels)
    scaling = float(1.0 / (mean + std * torch.randn_like(mean)).std())
    if args.init_from is not None:
        scaling = vae.config.scaling_factor  # the UNet learned latents at the scale it was trained with
    vae.register_to_config(scaling_factor=scaling)
    log.info("latent scaling factor %.4f", scaling)
    recipe = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "out"},
        "image_size": IMAGE_SIZE,
        "vae": VAE_CONFIG,
        "text_encoder": TEXT_CONFIG,
        "unet": UNET_CONFIG,
        "scaling_factor": scaling,
        "params": {
            n: sum(p.numel() for p in m.parameters()) for n, m in (("vae", vae), ("text", text), ("unet", unet))
        },
        "vae_result": vae_result,
    }
    if args.init_from is not None:
        recipe["init_recipe"] = json.loads(args.init_from.with_name(args.init_from.name + ".recipe.json").read_text())
    elif args.vae_from is not None:
        recipe["vae_recipe"] = vae_recipe_of(args.vae_from)
    else:  # after encoding: the decoder stage leaves the latents as they are
        recipe["decoder_result"] = finetune_decoder(vae, pixels, args)
    recipe_path = out.with_name(out.name + ".recipe.json")

    def save(ema_unet, ema_text, progress) -> None:
        save_folder(out, work / "tokenizer", vae, ema_text, ema_unet)
        final = {**recipe, "unet_result": progress, "total_seconds": round(time.monotonic() - started, 1)}
        recipe_path.write_text(json.dumps(final, indent=2) + "\n")
        log.info("saved %s at step %d", out, progress["steps"])

    train(unet, text, tokenizer, (mean * scaling, std * scaling), scenes, args, save)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
