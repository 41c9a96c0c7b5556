"""The toy BLIP: a small BlipForConditionalGeneration + BlipProcessor trained on the toy world, so that the caption
service, loading it by path like real BLIP, writes the world's true captions ("a purple heart on a green background").

    python -m services.toyworld.toy_blip --out services/toyworld/weights/toy-blip --steps 3000

Trained with teacher forcing on fresh (image, caption) pairs from `world.py`, seeded; evaluated by greedy decoding.
The recipe (sizes, steps, lr, seed, time, final loss, exact-match) is written beside the folder as
`<out>.recipe.json`; the folder is saved every `--save-every` steps, so a run cut short still leaves a usable model.
At the end (or alone, with `--eval-only`) the exact-match rate is measured through the caption service's own path
(`load_blip(resolve_model(...))` + `Captioner`) on 200 fresh scenes and added to the recipe.

The length trick. The caption service passes A1111's `min_length` 24 new tokens to `generate` by default, and that
cannot come from the model (`GenerationSettings` sets `min_new_tokens` explicitly); the world's captions are 7 to 9
words. So the decoder learns to write the caption, then `[PAD]` up to `FILL_TO` (24) new tokens, then `[SEP]`: the
service's decode skips special tokens, so the text is the exact caption under the defaults, under `min_length=0`,
and under any `max_length` that covers the caption.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from services.toyworld.world import COLOURS, SHAPES, render, sample_scene

__all__ = [
    "ToyBlipConfig",
    "FILL_TO",
    "world_vocab",
    "build_toy_blip",
    "make_batch",
    "train",
    "service_exact_match",
    "main",
]

log = logging.getLogger(__name__)

FILL_TO = 24  # new tokens before [SEP]: the caption service's default min_length (A1111's 24)
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]")


@dataclass
class ToyBlipConfig:
    image_size: int = 64  # world images are rendered at this size, so the processor's resize is a no-op
    patch_size: int = 8  # 8 x 8 = 64 patches + [CLS] for the vision tower
    vision_hidden: int = 96  # vision transformer width
    vision_layers: int = 3
    text_hidden: int = 96  # text decoder width (cross-attends to the vision tokens)
    text_layers: int = 2
    heads: int = 4  # attention heads in both towers
    positions: int = 64  # decoder positions: the service needs 1 (bos) + max_length (48) of them
    steps: int = 3000  # optimiser steps
    batch_size: int = 64  # fresh images per step
    lr: float = 1e-3  # AdamW peak; linear warm-up then cosine decay to 5%
    warmup: int = 200  # warm-up steps
    weight_decay: float = 0.01
    seed: int = 0  # torch init + the training scene stream
    eval_seed: int = 10_007  # fresh scenes for the exact-match figures, never used in training


def world_vocab() -> list[str]:
    """BERT specials + every word a world caption uses ("a", "an", "on", "and", "background", colours, shapes)."""
    words = ["a", "an", "on", "and", "background", *COLOURS, *SHAPES]
    return list(SPECIALS) + words


def build_toy_blip(config: ToyBlipConfig):
    """A fresh (model, processor) in the transformers BLIP format, seeded by `config.seed`."""
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    vocab = {piece: i for i, piece in enumerate(world_vocab())}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, bos_token="[DEC]", model_max_length=config.positions)
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    sep, pad, bos = tokenizer.sep_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id
    blip_config = BlipConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=config.text_hidden,
            encoder_hidden_size=config.vision_hidden,
            intermediate_size=4 * config.text_hidden,
            projection_dim=config.text_hidden,
            num_hidden_layers=config.text_layers,
            num_attention_heads=config.heads,
            max_position_embeddings=config.positions,
            bos_token_id=bos,
            eos_token_id=sep,
            pad_token_id=pad,
            sep_token_id=sep,
        ),
        vision_config=dict(
            hidden_size=config.vision_hidden,
            intermediate_size=4 * config.vision_hidden,
            projection_dim=config.vision_hidden,
            num_hidden_layers=config.vision_layers,
            num_attention_heads=config.heads,
            image_size=config.image_size,
            patch_size=config.patch_size,
            initializer_range=0.02,  # BLIP's default 1e-10 starts every image alike and trains slowly
        ),
        projection_dim=config.vision_hidden,
        image_text_hidden_size=config.vision_hidden,
    )
    torch.manual_seed(config.seed)
    model = BlipForConditionalGeneration(blip_config)
    # For callers of model.generate directly: the same lengths the caption service uses by default.
    model.generation_config.min_new_tokens = FILL_TO
    model.generation_config.max_new_tokens = 48
    image_processor = BlipImageProcessorPil(size={"height": config.image_size, "width": config.image_size})
    return model, BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)


def target_ids(tokenizer, caption: str) -> list[int]:
    """[DEC] caption [PAD]... [SEP]: FILL_TO new tokens, then the end token (see the module docstring)."""
    words = tokenizer(caption, add_special_tokens=False)["input_ids"]
    if tokenizer.unk_token_id in words or len(words) > FILL_TO:
        raise ValueError(f"caption {caption!r} does not fit the toy vocabulary")
    pads = [tokenizer.pad_token_id] * (FILL_TO - len(words))
    return [tokenizer.bos_token_id, *words, *pads, tokenizer.sep_token_id]


def make_batch(rng: random.Random, processor, size: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor, list]:
    """(pixels (N, 3, H, W) through the real processor, token ids (N, FILL_TO + 2), captions) of fresh scenes."""
    scenes = [sample_scene(rng) for _ in range(size)]
    images = [render(scene, size=image_size) for scene in scenes]
    pixels = torch.from_numpy(processor.image_processor(images=images, return_tensors="np")["pixel_values"])
    ids = torch.tensor([target_ids(processor.tokenizer, scene.caption()) for scene in scenes])
    return pixels, ids, [scene.caption() for scene in scenes]


def forward_loss(model, pixels: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced cross-entropy (no label smoothing, unlike BLIP's own loss) and per-sequence exactness."""
    embeddings = model.vision_model(pixel_values=pixels)[0]  # (N, patches + 1, vision_hidden)
    logits = model.text_decoder(
        input_ids=ids[:, :-1],
        attention_mask=torch.ones_like(ids[:, :-1]),
        encoder_hidden_states=embeddings,
        return_dict=True,
    ).logits  # (N, L - 1, vocab)
    loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
    # Greedy decoding reproduces the whole target iff every teacher-forced argmax is right.
    exact = (logits.argmax(-1) == ids[:, 1:]).all(dim=1)
    return loss, exact


@torch.no_grad()
def teacher_forced_exact(model, processor, config: ToyBlipConfig, count: int = 512) -> float:
    """Exact-match rate of greedy decoding on `count` fresh scenes (eval_seed), via teacher-forced argmax."""
    model.eval()
    rng = random.Random(config.eval_seed)
    hits = 0
    for start in range(0, count, 128):
        pixels, ids, _ = make_batch(rng, processor, min(128, count - start), config.image_size)
        hits += int(forward_loss(model, pixels, ids)[1].sum())
    model.train()
    return hits / count


def _lr(step: int, config: ToyBlipConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def save(model, processor, out: Path, recipe: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    out.with_name(out.name + ".recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")


def train(config: ToyBlipConfig, out: Path, *, save_every: int = 500, log_every: int = 100) -> dict:
    """Train from scratch and save to `out`; returns the recipe written beside it."""
    model, processor = build_toy_blip(config)
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    rng = random.Random(config.seed)
    recipe = {
        "config": asdict(config),
        "fill_to": FILL_TO,
        "parameters": sum(p.numel() for p in model.parameters()),
        "command": f"python -m services.toyworld.toy_blip --out {out} --steps {config.steps} --seed {config.seed}",
    }
    started, recent = time.monotonic(), []
    for step in range(config.steps):
        for group in optimiser.param_groups:
            group["lr"] = _lr(step, config)
        pixels, ids, _ = make_batch(rng, processor, config.batch_size, config.image_size)
        loss, _ = forward_loss(model, pixels, ids)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        recent = (recent + [loss.item()])[-log_every:]
        done = step + 1
        if done % log_every == 0:
            log.info("step %d loss %.4f (%.0f s)", done, float(np.mean(recent)), time.monotonic() - started)
        if done % save_every == 0 or done == config.steps:
            exact = teacher_forced_exact(model, processor, config)
            recipe.update(
                steps_done=done,
                train_seconds=round(time.monotonic() - started, 1),
                final_loss=round(float(np.mean(recent)), 5),
                teacher_forced_exact_match=exact,
            )
            save(model, processor, out, recipe)
            log.info("step %d saved to %s; exact match %.3f", done, out, exact)
    return recipe


def service_exact_match(out: Path, *, count: int = 200, seed: int = 99_991) -> dict:
    """Exact-match rate through the real caption path: our loader, then the caption service's Captioner, with its
    default settings (greedy, min 24 / max 48 new tokens) and with no minimum, on `count` fresh scenes."""
    import tempfile

    from services.caption.captioning import Captioner, GenerationSettings
    from services.common.models.loading import load_blip
    from services.common.models.reference import resolve_model

    rng = random.Random(seed)
    scenes = [sample_scene(rng) for _ in range(count)]
    images, truths = [render(scene) for scene in scenes], [scene.caption() for scene in scenes]
    rates = {"images": count, "seed": seed}
    with tempfile.TemporaryDirectory() as cache:
        load = lambda reference: load_blip(resolve_model(reference, cache_dir=Path(cache)))  # noqa: E731
        captioner = Captioner(load, str(out))
        try:
            for name, settings in (
                ("defaults", GenerationSettings()),
                ("min_length_0", GenerationSettings(min_length=0)),
            ):
                captions = captioner.caption(images, settings)
                rates[name] = sum(c == t for c, t in zip(captions, truths, strict=True)) / count
        finally:
            captioner.close()
    return rates


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("services/toyworld/weights/toy-blip"))
    parser.add_argument("--steps", type=int, default=ToyBlipConfig.steps)
    parser.add_argument("--batch-size", type=int, default=ToyBlipConfig.batch_size)
    parser.add_argument("--lr", type=float, default=ToyBlipConfig.lr)
    parser.add_argument("--seed", type=int, default=ToyBlipConfig.seed)
    parser.add_argument("--save-every", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--eval-only", action="store_true", help="skip training; re-measure the saved model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    recipe_path = args.out.with_name(args.out.name + ".recipe.json")
    if args.eval_only:
        recipe = json.loads(recipe_path.read_text())
    else:
        config = ToyBlipConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
        recipe = train(config, args.out, save_every=args.save_every)
    recipe["service_exact_match"] = service_exact_match(args.out)
    recipe_path.write_text(json.dumps(recipe, indent=2) + "\n")
    log.info("done: %s", json.dumps(recipe))


if __name__ == "__main__":
    main()
