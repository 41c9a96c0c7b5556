"""Trainer throughput and peak memory: `make bench-train` (not part of `make test`).

    python -m services.trainer.bench --json bench.json

CPU: the tiny SD1.x model (64 px images, 32 x 32 latents), our engine against a faithful re-implementation of the
per-step work of diffusers' `examples/textual_inversion/textual_inversion.py` (huggingface/diffusers at
000280f56a6a81e355313e77ec831575ad571d8b; the script is not installed here), with the same model, images, batch
size, vector count and learning rate. Each side runs in its own spawned process so its peak RSS is its own.
The baseline mirrors these lines of the script, step for step:
    TextualInversionDataset.__getitem__   Image.open(...) per sample, convert("RGB"), random.choice(templates),
                                          self.tokenizer(text, padding="max_length", truncation=True, ...),
                                          image.resize((size, size), resample=bicubic), self.flip_transform(image),
                                          (image / 127.5 - 1.0), torch.from_numpy(image).permute(2, 0, 1)
    main()  set-up                        tokenizer.add_tokens(placeholder_tokens); text_encoder.resize_token_
                                          embeddings(len(tokenizer)); token_embeds[token_id] = token_embeds[
                                          initializer_token_id]; freeze encoder, final_layer_norm, position_
                                          embedding; optimizer = AdamW(text_encoder.get_input_embeddings()
                                          .parameters(), ...); orig_embeds_params = ...weight.data.clone()
    main()  per step                      latents = vae.encode(batch["pixel_values"]).latent_dist.sample().detach()
                                          * vae.config.scaling_factor; noise = torch.randn_like(latents);
                                          timesteps = torch.randint(0, num_train_timesteps, (bsz,));
                                          noisy_latents = noise_scheduler.add_noise(latents, noise, timesteps);
                                          encoder_hidden_states = text_encoder(batch["input_ids"])[0];
                                          model_pred = unet(noisy_latents, timesteps, encoder_hidden_states).sample;
                                          loss = F.mse_loss(model_pred.float(), target.float(), reduction="mean");
                                          accelerator.backward(loss); optimizer.step(); lr_scheduler.step();
                                          optimizer.zero_grad(); index_no_updates[min(placeholder_token_ids):
                                          max(placeholder_token_ids) + 1] = False; ...weight[index_no_updates] =
                                          orig_embeds_params[index_no_updates]; logs = {"loss": loss.detach()
                                          .item(), ...}
(accelerate's wrappers are left out: with one process and no accumulation they add nothing to the arithmetic.)

CUDA (when a GPU is present): an SD1.5-shaped model with random weights (its UNet, VAE and CLIP-L configs are
written out below; the compute equals real weights and nothing is downloaded) at 512 x 512 in bf16, batch 1, 8 and
32, with model FLOP utilisation: 1.696 TFLOP per sample with cached latents over a 989 TFLOP/s dense bf16 peak
(H100 SXM; the H200 has the same).

Multi-job table (`bench_jobs`): 1, 4 and 16 concurrent jobs on the CPU (the toy SD1.x at 64 px, batch 1, in its
own spawned process) and 1, 8 and 16 on CUDA (the SD1.5-shaped model, 512 px bf16, batch 4 per job), each trained
one after another and batched through one TrainingGroup: aggregate samples/s, each job's time to finish, jobs per
device batch and the batched speed-up (with MFU on CUDA). `--only-jobs` runs just these tables.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["baseline", "jobs", "main", "ours", "run_cpu_jobs", "run_cuda_jobs", "sd15_components"]

log = logging.getLogger(__name__)

FLOP_PER_SAMPLE = 1.696e12  # SD1.5 at 512 px, forward + backward to the text encoder, latents cached
PEAK_BF16_FLOPS = 989e12  # H100 SXM dense bf16 (H200: the same)
IMAGENET_TEMPLATES = ("a photo of a {}", "a rendering of a {}", "a cropped photo of the {}", "the photo of a {}")

# SD1.5's component configs (stable-diffusion-v1-5: unet/, vae/, text_encoder/ config.json), written out.
SD15_UNET = dict(
    act_fn="silu",
    attention_head_dim=8,
    block_out_channels=(320, 640, 1280, 1280),
    center_input_sample=False,
    cross_attention_dim=768,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    downsample_padding=1,
    flip_sin_to_cos=True,
    freq_shift=0,
    in_channels=4,
    layers_per_block=2,
    mid_block_scale_factor=1,
    norm_eps=1e-5,
    norm_num_groups=32,
    out_channels=4,
    sample_size=64,
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
)
SD15_VAE = dict(
    act_fn="silu",
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    in_channels=3,
    latent_channels=4,
    layers_per_block=2,
    norm_num_groups=32,
    out_channels=3,
    sample_size=512,
    up_block_types=("UpDecoderBlock2D",) * 4,
    scaling_factor=0.18215,
)
CLIP_L_TEXT = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    projection_dim=768,
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)


# --- the two trainers, timed the same way ---------------------------------------------------------------------------
def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class _Timer:
    """Clock readings at the polls before steps start..end. On the CPU each step is timed on its own and the median
    counts (robust to a neighbour's burst on a shared machine); on CUDA the window counts, synced at both ends."""

    def __init__(self, start: int, end: int, sync: Any = None) -> None:
        self.start, self.end, self.sync = start, end, sync
        self.marks: list[float] = []

    def at(self, step: int) -> None:
        if self.start <= step <= self.end and (self.sync is None or step in (self.start, self.end)):
            if self.sync is not None:
                self.sync()  # CUDA: wait for the queued steps, so the clock measures the GPU's work
            self.marks.append(time.perf_counter())

    @property
    def step_seconds(self) -> float:
        if self.sync is not None:
            return (self.marks[-1] - self.marks[0]) / (self.end - self.start)
        return statistics.median(b - a for a, b in zip(self.marks, self.marks[1:], strict=False))

    @property
    def mean_step_seconds(self) -> float:
        return (self.marks[-1] - self.marks[0]) / (self.end - self.start)


def ours(components: Any, root: str, config: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """Our engine: prepare (the VAE once per image), a warm-up, then `steps` timed steps."""
    import torch

    from services.common.storage import LocalStore
    from services.trainer.engine import StopRequest, TrainingSession, TrainingSpec, create_embedding

    spec = TrainingSpec(
        model="bench",
        embedding_key="",
        dataset="ds/",
        width=config["size"],
        height=config["size"],
        batch_size=config["batch"],
        max_steps=config["warmup"] + config["steps"] + 1,
        learning_rate=str(config["lr"]),
        lr_scheduler="constant",
        template="subject",
        precision=config.get("precision", "auto"),
        save_every_steps=0,
        log_every_steps=1000,
        seed=config["seed"],
    )
    embedding = create_embedding(components, "subj3ct", "woman", config["vectors"])
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    started = time.perf_counter()
    session = TrainingSession.prepare(
        spec, components, LocalStore(root), output_prefix=f"ours-{config['batch']}/", embedding=embedding, device=device
    )
    prepare_s = time.perf_counter() - started
    if sync is not None:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    timed = _Timer(config["warmup"], config["warmup"] + config["steps"], sync)

    def poll() -> StopRequest | None:
        timed.at(session.step)
        return None

    session.run(should_stop=poll)
    return _result(config, timed, prepare_s, device)


def baseline(components: Any, root: str, config: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """diffusers' textual_inversion.py per-step work (see the module docstring for the lines mirrored)."""
    import copy

    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from PIL import Image

    torch.manual_seed(config["seed"])
    random.seed(config["seed"])
    cuda = device.startswith("cuda")
    weight_dtype = torch.bfloat16 if config.get("precision") == "bf16" else torch.float32
    started = time.perf_counter()
    tokenizer = copy.deepcopy(components.tokenizer)
    text_encoder = copy.deepcopy(components.text_encoder).to(device=device, dtype=torch.float32)  # trainable: fp32
    vae, unet = components.vae, components.unet  # the script: unet.to(device, dtype=weight_dtype), vae likewise
    for module in (vae, unet):
        if module.device != torch.device(device) or module.dtype != weight_dtype:
            module.to(device, dtype=weight_dtype)
    noise_scheduler = DDPMScheduler.from_config(components.scheduler.config)
    placeholder_tokens = ["subj3ct"] + [f"subj3ct_{i}" for i in range(1, config["vectors"])]
    tokenizer.add_tokens(placeholder_tokens)
    initializer_token_id = tokenizer.encode("woman", add_special_tokens=False)[0]
    placeholder_token_ids = tokenizer.convert_tokens_to_ids(placeholder_tokens)
    text_encoder.resize_token_embeddings(len(tokenizer))
    token_embeds = text_encoder.get_input_embeddings().weight.data
    with torch.no_grad():
        for token_id in placeholder_token_ids:
            token_embeds[token_id] = token_embeds[initializer_token_id].clone()
    vae.requires_grad_(False)
    unet.requires_grad_(False)
    text_encoder.encoder.requires_grad_(False)  # transformers 5: no .text_model level
    text_encoder.final_layer_norm.requires_grad_(False)
    text_encoder.embeddings.position_embedding.requires_grad_(False)
    text_encoder.get_input_embeddings().requires_grad_(True)
    optimizer = torch.optim.AdamW(
        text_encoder.get_input_embeddings().parameters(),
        lr=config["lr"],
        betas=(0.9, 0.999),
        weight_decay=0.0,  # the script's default is 1e-2; ours (A1111's) is 0. Same cost either way.
        eps=1e-08,
    )
    lr_scheduler = get_scheduler("constant", optimizer=optimizer, num_warmup_steps=0, num_training_steps=10**6)
    image_paths = sorted(str(p) for p in Path(root, "ds").glob("*.png"))
    placeholder_string = " ".join(tokenizer.convert_ids_to_tokens(placeholder_token_ids))
    size = config["size"]

    def example(i: int) -> dict[str, torch.Tensor]:  # TextualInversionDataset.__getitem__
        image = Image.open(image_paths[i % len(image_paths)])
        if not image.mode == "RGB":
            image = image.convert("RGB")
        text = random.choice(IMAGENET_TEMPLATES).format(placeholder_string)
        input_ids = tokenizer(
            text, padding="max_length", truncation=True, max_length=tokenizer.model_max_length, return_tensors="pt"
        ).input_ids[0]
        img = np.array(image).astype(np.uint8)
        image = Image.fromarray(img).resize((size, size), resample=Image.Resampling.BICUBIC)
        if random.random() < 0.5:  # transforms.RandomHorizontalFlip(p=0.5)
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        image = (np.array(image).astype(np.uint8) / 127.5 - 1.0).astype(np.float32)
        return {"input_ids": input_ids, "pixel_values": torch.from_numpy(image).permute(2, 0, 1)}

    # DataLoader(train_dataset, batch_size=..., shuffle=True) over repeats=100 copies: a shuffled sampler in batches.
    indices = torch.utils.data.RandomSampler(range(len(image_paths) * 100))
    sampler = iter(torch.utils.data.BatchSampler(indices, config["batch"], drop_last=False))
    orig_embeds_params = text_encoder.get_input_embeddings().weight.data.clone()
    prepare_s = time.perf_counter() - started
    autocast = torch.autocast("cuda", dtype=weight_dtype, enabled=cuda and weight_dtype != torch.float32)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    timed = _Timer(config["warmup"], config["warmup"] + config["steps"], torch.cuda.synchronize if cuda else None)
    text_encoder.train()
    for step in range(config["warmup"] + config["steps"] + 1):
        timed.at(step)
        examples = [example(i) for i in next(sampler)]
        batch = {k: torch.stack([e[k] for e in examples]).to(device) for k in ("input_ids", "pixel_values")}
        latents = vae.encode(batch["pixel_values"].to(dtype=weight_dtype)).latent_dist.sample().detach()
        latents = latents * vae.config.scaling_factor
        noise = torch.randn_like(latents)
        bsz = latents.shape[0]
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (bsz,), device=latents.device)
        noisy_latents = noise_scheduler.add_noise(latents, noise, timesteps.long())
        with autocast:  # accelerate wraps the prepared text encoder's forward in autocast
            encoder_hidden_states = text_encoder(batch["input_ids"])[0].to(dtype=weight_dtype)
        model_pred = unet(noisy_latents, timesteps, encoder_hidden_states).sample
        loss = F.mse_loss(model_pred.float(), noise.float(), reduction="mean")
        loss.backward()
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
        index_no_updates = torch.ones((len(tokenizer),), dtype=torch.bool)
        index_no_updates[min(placeholder_token_ids) : max(placeholder_token_ids) + 1] = False
        with torch.no_grad():
            text_encoder.get_input_embeddings().weight[index_no_updates] = orig_embeds_params[index_no_updates]
        _ = {"loss": loss.detach().item(), "lr": lr_scheduler.get_last_lr()[0]}
    return _result(config, timed, prepare_s, device)


def _result(config: dict[str, Any], timed: _Timer, prepare_s: float, device: str) -> dict[str, Any]:
    import torch

    result = {
        "batch": config["batch"],
        "samples_per_s": config["batch"] / timed.step_seconds,
        "step_ms": 1000 * timed.step_seconds,
        "mean_step_ms": 1000 * timed.mean_step_seconds,
        "prepare_s": prepare_s,
    }
    if device.startswith("cuda"):
        result["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
        result["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    else:
        result["peak_rss_mib"] = _peak_rss_mb()
    return result


def jobs(components: Any, root: str, config: dict[str, Any]) -> dict[str, Any]:
    """The CPU multi-job rows (bench_jobs), for `_worker`."""
    from services.trainer.bench_jobs import multi_job_rows

    rows = multi_job_rows(
        components,
        root,
        job_counts=config["job_counts"],
        batch=config["batch"],
        size=config["size"],
        steps=config["steps"],
        device="cpu",
        precision="fp32",
        vectors=config["vectors"],
        repeats=config["repeats"],
    )
    return {"rows": rows}


def _worker(name: str, config: dict[str, Any], queue: Any) -> None:
    """One CPU run in a fresh process, so its peak RSS is its own."""
    try:
        import torch

        from services.trainer.engine.testing import tiny_components

        torch.set_num_threads(config["threads"])
        runner = {"ours": ours, "baseline": baseline, "jobs": jobs}[name]
        if config["model"] == "sd15-shaped":
            components = sd15_components("cpu", torch.float32)
        else:
            components = tiny_components(config["model"])
        queue.put(("ok", runner(components, config["root"], config)))
    except BaseException as exc:  # report, never hang the parent
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def _in_process(name: str, config: dict[str, Any]) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_worker, args=(name, config, queue))
    process.start()
    status, payload = queue.get()
    process.join()
    if status != "ok":
        raise RuntimeError(f"the {name} benchmark failed: {payload}")
    return payload


# --- CUDA: an SD1.5-shaped model with random weights ---------------------------------------------------------------
def sd15_components(device: str = "cuda", dtype: Any = None) -> Any:
    """StableDiffusionComponents shaped like SD1.5 (random weights, seeded), frozen, in `dtype` (bf16) on `device`."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from services.common.models.fingerprint import ModelFingerprint
    from services.common.models.loading import StableDiffusionComponents
    from services.common.models.tiny import SD15_SCHEDULER
    from services.common.text.clip_tokens import clip_vocab_and_merges

    vocab, merges = clip_vocab_and_merges()
    end = "<|endoftext|>"
    tokenizer = CLIPTokenizer(
        vocab=vocab, merges=merges, bos_token="<|startoftext|>", eos_token=end, unk_token=end, pad_token=end
    )
    tokenizer.model_max_length = 77
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(0)
        unet = UNet2DConditionModel(**SD15_UNET)
        vae = AutoencoderKL(**SD15_VAE)
        text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT))
    for module in (unet, vae, text_encoder):
        if (dtype or torch.bfloat16) != torch.float32:
            module.to(dtype=dtype or torch.bfloat16)
        module.requires_grad_(False).eval()
    return StableDiffusionComponents(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        unet=unet,
        vae=vae,
        scheduler=PNDMScheduler(**SD15_SCHEDULER),
        fingerprint=ModelFingerprint.from_sha256("0" * 64),
        family="sd1",
        prediction_type="epsilon",
    )


def run_cuda(args: argparse.Namespace, root: str) -> list[dict[str, Any]]:
    """Ours at each batch size, and the baseline at the smaller ones, on the SD1.5-shaped model in bf16."""
    import torch

    from services.common.storage import LocalStore
    from services.trainer.engine.testing import write_dataset

    batches = [int(b) for b in args.gpu_batches.split(",") if b.strip()]
    baseline_batches = {int(b) for b in args.gpu_baseline_batches.split(",") if b.strip()}
    components = sd15_components()
    write_dataset(LocalStore(root), "ds/", max(batches) * 2, size=512)
    rows = []
    for batch in batches:
        config = {
            "batch": batch,
            "size": 512,
            "vectors": args.vectors,
            "steps": args.gpu_steps,
            "warmup": args.warmup,
            "lr": 0.005,
            "seed": 0,
            "precision": "bf16",
        }
        runners = [("ours", ours)] + ([("baseline", baseline)] if batch in baseline_batches else [])
        for name, runner in runners:
            log.info("CUDA: %s, %d steps of batch %d at 512 px", name, args.gpu_steps, batch)
            result = runner(components, root, config, device="cuda")
            result["trainer"] = name
            result["device"] = torch.cuda.get_device_name()
            result["mfu"] = result["samples_per_s"] * FLOP_PER_SAMPLE / PEAK_BF16_FLOPS
            rows.append(result)
            torch.cuda.empty_cache()
    return rows


# --- the multi-job table (bench_jobs) ------------------------------------------------------------------------------
def run_cpu_jobs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The CPU multi-job rows, trained in a spawned process of their own."""
    from services.common.storage import LocalStore
    from services.toyworld import TOY_SD
    from services.trainer.engine.testing import write_dataset

    model = args.job_model or str(TOY_SD)
    with tempfile.TemporaryDirectory(dir=args.cache_dir) as root:
        write_dataset(LocalStore(root), "ds/", args.images, size=args.job_size)
        config = {
            "model": model,
            "root": root,
            "job_counts": _ints(args.jobs),
            "batch": args.job_batch,
            "size": args.job_size,
            "steps": args.job_steps,
            "vectors": args.vectors,
            "repeats": args.repeats,
            "threads": args.threads,
        }
        log.info(
            "CPU: multi-job, %s jobs of %d steps of batch %d", config["job_counts"], args.job_steps, args.job_batch
        )
        rows = _in_process("jobs", config)["rows"]
    for row in rows:
        row["model"], row["threads"] = model, args.threads
    return rows


def run_cuda_jobs(args: argparse.Namespace, root: str) -> list[dict[str, Any]]:
    """The multi-job rows on the SD1.5-shaped model at 512 px bf16, with MFU."""
    import torch

    from services.common.storage import LocalStore
    from services.trainer.bench_jobs import multi_job_rows
    from services.trainer.engine import MemoryBudget
    from services.trainer.engine.testing import write_dataset

    components = sd15_components()
    memory = MemoryBudget(int(args.gpu_job_memory_gib * 2**30)) if args.gpu_job_memory_gib > 0 else None
    write_dataset(LocalStore(root), "ds/", args.images, size=512)
    counts = _ints(args.gpu_jobs)
    log.info("CUDA: %s jobs of %d steps of batch %d at 512 px", counts, args.gpu_job_steps, args.gpu_job_batch)
    rows = multi_job_rows(
        components,
        root,
        job_counts=counts,
        batch=args.gpu_job_batch,
        size=512,
        steps=args.gpu_job_steps,
        device="cuda",
        precision="bf16",
        vectors=args.vectors,
        memory=memory,
    )
    for row in rows:
        row["device"] = torch.cuda.get_device_name()
        row["mfu"] = row["aggregate_samples_per_s"] * FLOP_PER_SAMPLE / PEAK_BF16_FLOPS
    return rows


# --- main ----------------------------------------------------------------------------------------------------------
def _tiny_model(cache: Path) -> str:
    from services.common.models.tiny import build_tiny_models, is_current_build, tiny_model_paths

    repo_models = Path(__file__).resolve().parents[2] / "models"
    if is_current_build(repo_models):
        return str(tiny_model_paths(repo_models)["sd"])
    return str(build_tiny_models(cache / "tiny-models")["sd"])


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Trainer throughput: ours vs a diffusers-style baseline.")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/bench"))
    parser.add_argument("--batches", default="1,4", help="CPU batch sizes (default 1,4; A1111's default is 1)")
    parser.add_argument("--size", type=int, default=64, help="CPU training size, the tiny model's native 64 px")
    parser.add_argument(
        "--stored-sizes",
        default="64,512",
        help="sizes the tiny model's dataset images are stored at: the training size, and 512 px as Preprocess "
        "writes them (the baseline decodes and resizes every image every step; we do it once)",
    )
    parser.add_argument("--vectors", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per CPU run")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="CPU runs per trainer (and per multi-job mode), interleaved; the best counts",
    )
    parser.add_argument(
        "--sd15-cpu-size",
        type=int,
        default=128,
        help="also run the SD1.5-shaped model on the CPU at this size, batch 1 (0: skip; slow: minutes)",
    )
    parser.add_argument("--sd15-cpu-steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--gpu-batches", default="1,8,32")
    parser.add_argument("--gpu-baseline-batches", default="1,8", help="batches the baseline also runs on CUDA")
    parser.add_argument("--gpu-steps", type=int, default=20)
    parser.add_argument("--jobs", default="1,4,16", help="CPU multi-job table: concurrent job counts")
    parser.add_argument("--job-steps", type=int, default=50, help="steps per job in the CPU multi-job table")
    parser.add_argument("--job-batch", type=int, default=1, help="batch size per job in the CPU multi-job table")
    parser.add_argument("--job-size", type=int, default=64, help="training size in the CPU multi-job table")
    parser.add_argument(
        "--job-model", default="", help="model folder for the CPU multi-job table (default: the toy SD1.x)"
    )
    parser.add_argument("--gpu-jobs", default="1,8,16", help="CUDA multi-job table: concurrent job counts")
    parser.add_argument("--gpu-job-batch", type=int, default=4)
    parser.add_argument("--gpu-job-steps", type=int, default=10)
    parser.add_argument(
        "--gpu-job-memory-gib",
        type=float,
        default=0,
        help="activation budget of the batched CUDA jobs' device batches (0: none; they split only after an OOM)",
    )
    parser.add_argument("--skip-jobs", action="store_true", help="leave out the multi-job tables")
    parser.add_argument("--only-jobs", action="store_true", help="only the multi-job tables")
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--skip-gpu", action="store_true")
    args = parser.parse_args(argv)
    if args.skip_jobs and args.only_jobs:
        parser.error("--skip-jobs and --only-jobs leave nothing to run")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"cpu": [], "cuda": [], "cpu_jobs": [], "cuda_jobs": []}

    if not args.skip_cpu and not args.only_jobs:
        from services.common.storage import LocalStore
        from services.trainer.engine.testing import write_dataset

        with tempfile.TemporaryDirectory(dir=args.cache_dir) as tmp:
            tiny = _tiny_model(args.cache_dir)
            runs = [
                ("tiny SD1.x", tiny, int(b), args.size, int(stored), args.steps, args.repeats)
                for stored in args.stored_sizes.split(",")
                if stored.strip()
                for b in args.batches.split(",")
                if b.strip()
            ]
            if args.sd15_cpu_size:
                size = args.sd15_cpu_size
                runs.append(("SD1.5-shaped", "sd15-shaped", 1, size, size, args.sd15_cpu_steps, 1))
            for label, model, batch, size, stored, steps, repeats in runs:
                root = os.path.join(tmp, f"{stored}px")
                if not os.path.isdir(root):
                    write_dataset(LocalStore(root), "ds/", args.images, size=stored)
                config = {
                    "model": model,
                    "root": root,
                    "batch": batch,
                    "size": size,
                    "vectors": args.vectors,
                    "steps": steps,
                    "warmup": args.warmup if model != "sd15-shaped" else 1,
                    "lr": 0.005,
                    "seed": 0,
                    "threads": args.threads,
                }
                outcomes: dict[str, list[dict[str, Any]]] = {"baseline": [], "ours": []}
                for _ in range(repeats):  # interleaved, so a busy moment hits both
                    for name in outcomes:
                        log.info("CPU: %s, %s, %d steps of batch %d at %d px", label, name, steps, batch, size)
                        outcomes[name].append(_in_process(name, config))
                best = {name: max(r, key=lambda x: x["samples_per_s"]) for name, r in outcomes.items()}
                results["cpu"].append(
                    {
                        "model": label,
                        "batch": batch,
                        "size": size,
                        "stored": stored,
                        "vectors": args.vectors,
                        "threads": args.threads,
                        "steps": steps,
                        "baseline": best["baseline"],
                        "ours": best["ours"],
                        "all_samples_per_s": {n: [x["samples_per_s"] for x in r] for n, r in outcomes.items()},
                        "speedup": best["ours"]["samples_per_s"] / best["baseline"]["samples_per_s"],
                    }
                )
        print(_cpu_table(results["cpu"]))

    from services.trainer.bench_jobs import multi_job_table

    if not args.skip_cpu and not args.skip_jobs:
        results["cpu_jobs"] = run_cpu_jobs(args)
        first = results["cpu_jobs"][0]
        title = (
            f"CPU multi-job: {Path(first['model']).name}, {first['size']} px, fp32, batch {first['batch']} per job, "
            f"{first['threads']} threads (best of {args.repeats} interleaved); finish: seconds from training start"
        )
        print(multi_job_table(results["cpu_jobs"], title))

    import torch

    if not args.skip_gpu and torch.cuda.is_available():
        if not args.only_jobs:
            with tempfile.TemporaryDirectory(dir=args.cache_dir) as root:
                results["cuda"] = run_cuda(args, root)
            print(_cuda_table(results["cuda"]))
        if not args.skip_jobs:
            with tempfile.TemporaryDirectory(dir=args.cache_dir) as root:
                results["cuda_jobs"] = run_cuda_jobs(args, root)
            first = results["cuda_jobs"][0]
            title = (
                f"CUDA multi-job ({first['device']}): SD1.5-shaped (random weights), 512 x 512, bf16, batch "
                f"{first['batch']} per job; finish: seconds from training start"
            )
            print(multi_job_table(results["cuda_jobs"], title))
    elif not args.skip_gpu:
        print("\nCUDA: no GPU here; the SD1.5-shaped 512 px runs need one.")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        results["torch"] = torch.__version__
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _cpu_table(rows: list[dict[str, Any]]) -> str:
    first = rows[0]
    lines = [
        f"\nCPU, {first['vectors']} vectors, {first['threads']} threads, fp32 (median step; best of interleaved runs); "
        "px: training size, images: stored size",
        f"{'model':<13} {'px':>4} {'images':>6} {'batch':>5}  {'trainer':<31} {'samples/s':>10} {'ms/step':>9} "
        f"{'prepare s':>10} {'peak RSS MiB':>13}",
    ]
    for row in rows:
        for name, label in (("baseline", "diffusers textual_inversion.py"), ("ours", "tistudio engine")):
            r = row[name]
            lines.append(
                f"{row['model']:<13} {row['size']:>4} {row['stored']:>6} {row['batch']:>5}  {label:<31} "
                f"{r['samples_per_s']:>10.2f} {r['step_ms']:>9.1f} {r['prepare_s']:>10.2f} {r['peak_rss_mib']:>13.0f}"
            )
        lines.append(f"{'':<13} {'':>4} {'':>6} {'':>5}  speed-up {row['speedup']:.2f}x")
    return "\n".join(lines)


def _cuda_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"\nCUDA ({rows[0]['device']}), SD1.5-shaped (random weights), 512 x 512, bf16",
        f"{'batch':>5}  {'trainer':<9} {'samples/s':>10} {'ms/step':>9} {'peak alloc GiB':>15} {'MFU':>6}",
    ]
    for r in rows:
        lines.append(
            f"{r['batch']:>5}  {r['trainer']:<9} {r['samples_per_s']:>10.1f} {r['step_ms']:>9.1f} "
            f"{r['peak_allocated_gib']:>15.2f} {r['mfu']:>6.1%}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
