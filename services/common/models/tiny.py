"""Deterministic tiny models in the real models' on-disk layouts, built offline for tests and demos.

    python -m services.common.models.tiny --out models/

writes `tiny-sd/` (a StableDiffusionPipeline folder, SD1.x-shaped), `tiny-sd.safetensors` (the same weights as one
original-format SD1.x checkpoint), `tiny-sd2-768/`, `tiny-sdxl/` and `tiny-sdxl.safetensors` (the other families,
see tiny_sdxl.py), `tiny-blip/` (BlipForConditionalGeneration + BlipProcessor) and `tiny-clip/` (CLIPModel +
CLIPProcessor with the tiny SD's tokenizer, for savepoint scoring). Weights are random
but seeded: two builds give byte-identical weight files. A stamp file written last marks a complete build of
`BUILD_VERSION` by this builder source; a build with the current stamp is reused, anything else is rebuilt.

Sizes: the VAE has two blocks, so its scale factor is 2 (not SD's 8): 64 px images <-> 32x32 latents. Code that needs
the factor must read `2 ** (len(vae.config.block_out_channels) - 1)` (as diffusers does), never assume 8.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from services.common.files import write_text_atomic
from services.common.models.tiny_blip import build_tiny_blip
from services.common.models.tiny_sdxl import (
    build_tiny_sd2_768,
    build_tiny_sdxl,
    clip_tokenizer_folder,
    tiny_unet,
    tiny_vae,
)

__all__ = ["BUILD_VERSION", "STAMP_NAME", "build_tiny_models", "tiny_model_paths", "is_current_build", "main"]

log = logging.getLogger(__name__)

# Bump whenever the architecture, vocab, seeds or layout change. The stamp also records a digest of the builder's
# source and library versions, so a build from edited code is rebuilt even if this was forgotten.
BUILD_VERSION = 5
STAMP_NAME = "tiny-models.stamp.json"
_ENTRIES = (
    "tiny-sd",
    "tiny-sd.safetensors",
    "tiny-sd2-768",
    "tiny-sdxl",
    "tiny-sdxl.safetensors",
    "tiny-blip",
    "tiny-clip",
)
SEED = 0

# SD1.5's scheduler_config.json. `clip_sample` is not a PNDMScheduler argument but SD1.5 ships it, and it matters
# when a trainer builds DDPMScheduler.from_config(...) (whose default is clip_sample=True): it is added after saving.
SD15_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    skip_prk_steps=True,
    steps_offset=1,
    set_alpha_to_one=False,
    prediction_type="epsilon",
    trained_betas=None,
)


def tiny_model_paths(out_dir: Path) -> dict[str, Path]:
    """Where a build in `out_dir` keeps each model: keys `sd`, `sd_single_file`, `sd2_768`, `sdxl`,
    `sdxl_single_file`, `blip`, `clip`."""
    out_dir = Path(out_dir)
    names = {
        "sd": "tiny-sd",
        "sd_single_file": "tiny-sd.safetensors",
        "sd2_768": "tiny-sd2-768",
        "sdxl": "tiny-sdxl",
        "sdxl_single_file": "tiny-sdxl.safetensors",
        "blip": "tiny-blip",
        "clip": "tiny-clip",
    }
    return {key: out_dir / name for key, name in names.items()}


def _builder_digest() -> str:
    """Digest of the builder's source and the libraries that serialise it: any change forces a rebuild."""
    digest = hashlib.sha256()
    for module in ("tiny.py", "tiny_sdxl.py", "tiny_blip.py", "tiny_vocab.py", "ldm_checkpoint.py"):
        digest.update((Path(__file__).parent / module).read_bytes())
    for package in ("torch", "diffusers", "transformers", "tokenizers", "safetensors"):
        digest.update(f"{package}=={importlib.metadata.version(package)}\n".encode())
    return digest.hexdigest()


def is_current_build(out_dir: Path) -> bool:
    """True when `out_dir` holds a complete build of this BUILD_VERSION and builder (the stamp is written last)."""
    try:
        stamp = json.loads((Path(out_dir) / STAMP_NAME).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    current = stamp.get("version") == BUILD_VERSION and stamp.get("builder") == _builder_digest()
    return current and all(p.exists() for p in tiny_model_paths(out_dir).values())


def build_tiny_sd(folder: Path, single_file: Path) -> None:
    """A StableDiffusionPipeline folder, SD1.x-shaped (diffusers' own fast-test sizes), no safety checker, and
    the same weights as one original-format checkpoint at `single_file`."""
    import torch
    from diffusers import PNDMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    from services.common.models.ldm_checkpoint import pipeline_to_ldm, save_ldm_checkpoint

    tokenizer = clip_tokenizer_folder(folder / "tokenizer")
    torch.manual_seed(SEED)
    unet = tiny_unet(32)
    torch.manual_seed(SEED + 1)
    vae = tiny_vae()
    torch.manual_seed(SEED + 2)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=32,
        layer_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    text_encoder = CLIPTextModel(text_config)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=PNDMScheduler(**SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    scheduler_json = folder / "scheduler" / "scheduler_config.json"
    tokenizer_files = {p.name: p.read_bytes() for p in (folder / "tokenizer").iterdir()}
    pipe.save_pretrained(folder, safe_serialization=True)
    scheduler_config = json.loads(scheduler_json.read_text())
    scheduler_json.write_text(json.dumps({**scheduler_config, "clip_sample": False}, indent=2, sort_keys=True) + "\n")
    # save_pretrained rewrites the tokenizer in transformers' own layout; keep SD1.5's vocab.json + merges.txt one.
    shutil.rmtree(folder / "tokenizer")
    (folder / "tokenizer").mkdir()
    for name, data in tokenizer_files.items():
        (folder / "tokenizer" / name).write_bytes(data)
    save_ldm_checkpoint(pipeline_to_ldm(unet, vae, text_encoder), single_file)


def build_tiny_clip(folder: Path, *, image_size: int = 32) -> None:
    """CLIPModel + CLIPProcessor (PIL image backend: there is no torchvision) with the tiny SD's CLIP tokenizer, so
    prompts that the tiny SD understands tokenize the same way when they are scored."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    with tempfile.TemporaryDirectory(prefix=".tiny-clip-tokenizer-") as tmp:
        tokenizer = clip_tokenizer_folder(Path(tmp) / "tokenizer")  # read into memory; the processor saves it again
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=image_size,
            patch_size=8,
        ),
        projection_dim=32,
    )
    torch.manual_seed(SEED + 5)
    model = CLIPModel(config)
    square = {"height": image_size, "width": image_size}
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": image_size}, crop_size=square)
    folder.mkdir(parents=True)
    model.save_pretrained(folder, safe_serialization=True)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


def _normalize_modes(root: Path) -> None:
    """Ordinary umask-respecting modes: some writers create 0600 files, and the folder may be shared read-only."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [root, *root.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


@contextlib.contextmanager
def _build_lock(out_dir: Path):
    with open(out_dir / ".tiny-models.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_tiny_models(out_dir: Path, *, force: bool = False) -> dict[str, Path]:
    """Build (or reuse a current build of) the tiny models in `out_dir`; returns `tiny_model_paths(out_dir)`.

    Everything is written into a temporary folder inside `out_dir` and renamed into place; the stamp comes last,
    so a reader that checks `is_current_build` never sees a half-written model. Concurrent builders serialise on a
    lock file.
    """
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    with _build_lock(out_dir):
        if not force and is_current_build(out_dir):
            return tiny_model_paths(out_dir)
        import torch

        started = time.monotonic()
        (out_dir / STAMP_NAME).unlink(missing_ok=True)
        with tempfile.TemporaryDirectory(prefix=".tiny-build-", dir=out_dir) as tmp:
            tmp_dir = Path(tmp)
            with torch.random.fork_rng(devices=[]):
                build_tiny_sd(tmp_dir / "tiny-sd", tmp_dir / "tiny-sd.safetensors")
                build_tiny_sd2_768(tmp_dir / "tiny-sd2-768", seed=SEED + 10)
                build_tiny_sdxl(tmp_dir / "tiny-sdxl", seed=SEED + 20, single_file=tmp_dir / "tiny-sdxl.safetensors")
                build_tiny_blip(tmp_dir / "tiny-blip", seed=SEED + 3)  # and SEED + 4
                build_tiny_clip(tmp_dir / "tiny-clip")
            _normalize_modes(tmp_dir)
            for name in _ENTRIES:
                target = out_dir / name
                if target.is_dir():
                    shutil.rmtree(target)
                os.replace(tmp_dir / name, target)
        stamp = {"version": BUILD_VERSION, "builder": _builder_digest(), "entries": list(_ENTRIES)}
        write_text_atomic(out_dir / STAMP_NAME, json.dumps(stamp) + "\n")
        log.info("built tiny models in %s (%.1f s)", out_dir, time.monotonic() - started)
    return tiny_model_paths(out_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the deterministic tiny test models (offline).")
    parser.add_argument("--out", type=Path, default=Path("models"), help="output folder (default: models/)")
    parser.add_argument("--force", action="store_true", help="rebuild even when a current build is present")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Writing model shards" bars in `make` output
    for name, path in build_tiny_models(args.out, force=args.force).items():
        log.info("%s: %s", name, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
