"""Latents: the VAE runs once per image (and once per flipped image); training only gathers and samples.

A1111 (`dataset.py`) encodes every image once when it loads the dataset and keeps, per latent sampling method:
    once           one draw of the posterior, scale * (mean + std * eps), fixed for the whole run
    deterministic  the posterior mean, scale * mean (A1111 sets the distribution's std to 0)
    random         the posterior itself; a new scale * (mean + std * eps) every time the image is used
We cache exactly that (plus the flipped image's posterior when flip augmentation is on, which A1111 builds but never
applies), so no step pays for a VAE encode. diffusers' example encodes every sample on every step instead.

Tensors live on the training device as [V, N, 4, h, w]: V = 2 variants (as is, flipped) with flip on, else 1.
Draws for "once" come from their own CPU generator seeded by the run's seed, so a resumed run rebuilds the same
latents; "random" draws and flip coins come from the run's generator, whose state every savepoint keeps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from services.common.diagnostics import Diagnostic
from services.common.errors import InvalidArgument
from services.common.storage import Store
from services.trainer.engine.data import LoadedImage, TrainingImages, load_image

__all__ = ["EncodedDataset", "LatentCache", "encode_dataset"]

ENCODE_BATCH = 8  # images per VAE call while caching


@dataclass
class LatentCache:
    sampling: str  # "once" | "deterministic" | "random"
    scaling_factor: float  # the VAE's (0.18215 for SD1.x and SD2.x)
    samples: torch.Tensor | None  # [V, N, 4, h, w] scaled latents (once, deterministic)
    mean: torch.Tensor | None  # [V, N, 4, h, w] posterior mean, unscaled (random)
    std: torch.Tensor | None  # [V, N, 4, h, w] posterior std, unscaled (random)
    weights: torch.Tensor | None  # [V, N, 1, h, w] alpha loss weights (alpha_loss_weight), else None

    @property
    def variants(self) -> int:
        return int((self.samples if self.samples is not None else self.mean).shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple((self.samples if self.samples is not None else self.mean).shape[2:])

    def batch(
        self, indices: torch.Tensor, flips: torch.Tensor | None, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(latents [B, 4, h, w], weights [B, 1, h, w] or None) for images `indices` [B] (long, on the device);
        `flips` [B] bool picks the flipped variant. "random" draws eps [B, 4, h, w] from `generator`."""
        variant = flips.long() if flips is not None else torch.zeros_like(indices)
        if self.sampling == "random":
            mean, std = self.mean[variant, indices], self.std[variant, indices]  # [B, 4, h, w]
            eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            latents = (mean + std * eps) * self.scaling_factor
        else:
            latents = self.samples[variant, indices]
        weights = self.weights[variant, indices] if self.weights is not None else None
        return latents, weights


@dataclass
class EncodedDataset:
    latents: LatentCache
    kept: tuple[int, ...]  # indices into TrainingImages.items of the images that encoded (others were skipped)
    sha256: str  # over every kept image's key, bytes, caption and alpha: the dataset hash in file metadata
    notes: tuple[Diagnostic, ...]  # why images were skipped


def encode_dataset(
    store: Store,
    images: TrainingImages,
    vae: torch.nn.Module,
    *,
    width: int,
    height: int,
    latent_scale: int,
    sampling: str,
    flip: bool,
    alpha: bool,
    seed: int,
    device: torch.device,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> EncodedDataset:
    """Read, resize and encode every image once; cache what `sampling` needs."""
    means: list[torch.Tensor] = []  # per chunk [V, n, 4, h, w]
    stds: list[torch.Tensor] = []
    alphas: list[np.ndarray | None] = []
    kept: list[int] = []
    digests: list[str] = []
    notes: list[Diagnostic] = []
    pending: list[LoadedImage] = []

    def flush() -> None:
        pixels = torch.stack([p.pixels for p in pending])  # [n, 3, H, W]
        variants = [pixels, pixels.flip(-1)] if flip else [pixels]
        mean_v, std_v = [], []
        for x in variants:
            with torch.no_grad():
                dist = vae.encode(x.to(device=device, dtype=vae.dtype)).latent_dist
            mean_v.append(dist.mean.float())  # [n, 4, h, w]
            std_v.append(dist.std.float())
        means.append(torch.stack(mean_v))
        stds.append(torch.stack(std_v))
        pending.clear()

    total = len(images)
    for index, item in enumerate(images.items):
        loaded = load_image(store, item, width=width, height=height, latent_scale=latent_scale, with_alpha=alpha)
        if isinstance(loaded, Diagnostic):
            notes.append(loaded)
        else:
            kept.append(index)
            digests.append(loaded.digest)
            alphas.append(loaded.alpha)
            pending.append(loaded)
            if len(pending) == ENCODE_BATCH:
                flush()
        progress(index + 1, total)
    if pending:
        flush()
    if not kept:
        raise InvalidArgument(
            f"none of the {total} images under '{images.prefix}' could be read ({notes[0].message}): "
            "upload PNG, JPEG or WebP images",
            field="spec.dataset",
            reason="DATASET_UNREADABLE",
        )
    mean = torch.cat(means, dim=1)  # [V, N, 4, h, w]
    std = torch.cat(stds, dim=1)
    scale = float(vae.config.scaling_factor)
    cache = LatentCache(sampling, scale, None, None, None, _alpha_tensor(alphas, mean, flip))
    if sampling == "random":
        cache.mean, cache.std = mean, std
    elif sampling == "deterministic":
        cache.samples = mean * scale
    else:  # once: one posterior draw per image and variant, from the seed alone
        generator = torch.Generator().manual_seed(_once_seed(seed))
        eps = torch.randn(mean.shape, generator=generator, dtype=torch.float32).to(device)
        cache.samples = (mean + std * eps) * scale
    sha = hashlib.sha256("".join(f"{d}\n" for d in sorted(digests)).encode()).hexdigest()
    return EncodedDataset(cache, tuple(kept), sha, tuple(notes))


def _alpha_tensor(alphas: list[np.ndarray | None], mean: torch.Tensor, flip: bool) -> torch.Tensor | None:
    """[V, N, 1, h, w] weights, ones for opaque images; None when no image has an alpha (or alpha is off)."""
    if all(a is None for a in alphas):
        return None
    h, w = mean.shape[-2:]
    rows = [torch.from_numpy(a) if a is not None else torch.ones(h, w) for a in alphas]
    weights = torch.stack(rows).unsqueeze(1).to(mean.device)  # [N, 1, h, w]
    return torch.stack([weights, weights.flip(-1)] if flip else [weights])


def _once_seed(seed: int) -> int:
    digest = hashlib.sha256(f"tistudio-once-latents:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
