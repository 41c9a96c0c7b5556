"""The `Embedding` value every format reads into and writes from, and the checks its vectors must pass.

An embedding is one `[n_vectors, width]` float32 CPU tensor per text encoder: `(emb,)` for SD1.x/SD2.x,
`(clip_l, clip_g)` for SDXL. Vectors are float32 whatever the file held, as A1111's loader makes them and as every
TI trainer optimises them: float16/bfloat16 widen exactly, float64 rounds to the nearest float32.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib

import torch

from services.common.embeddings.errors import InvalidEmbeddingTensor

__all__ = [
    "MAX_VECTORS",
    "MAX_WIDTH",
    "META_TRIGGER",
    "META_VECTORS",
    "META_STEP",
    "META_SD_CHECKPOINT",
    "META_SD_CHECKPOINT_NAME",
    "Embedding",
    "EmbeddingFormat",
    "as_vectors",
    "file_hashes",
]

# A1111's limit (its "Number of vectors per token" slider, and one 75-token prompt chunk).
MAX_VECTORS = 75
# Wider than any CLIP text encoder (CLIP-L 768, OpenCLIP-H 1024, OpenCLIP-G 1280); the tiny test models are 32.
MAX_WIDTH = 4096
_FLOATS = {torch.float16, torch.bfloat16, torch.float32, torch.float64}

# Metadata keys the codecs read and write themselves; write_embedding sets them from the embedding, so a file
# never disagrees with its own vectors. Callers add their own (init_text, schedule, template, dataset_sha256,
# base_model_sha256, tool_version, ...).
META_TRIGGER = "trigger"
META_VECTORS = "vectors"
META_STEP = "step"
META_SD_CHECKPOINT = "sd_checkpoint"  # A1111: the base model's short hash
META_SD_CHECKPOINT_NAME = "sd_checkpoint_name"


class EmbeddingFormat(enum.Enum):
    # {"emb_params": [n, d]} or SDXL {"clip_l": [n, 768], "clip_g": [n, 1280]}, string metadata. Our default.
    SAFETENSORS = "safetensors"
    # A1111's pickled dict: string_to_token {"*": 265}, string_to_param {"*": [n, d]}, name, step, sd_checkpoint(_name).
    A1111_PT = "a1111_pt"
    # diffusers learned_embeds: {"<token>": [n, d]}; SDXL is two files, one per text encoder.
    DIFFUSERS = "diffusers"
    # A1111's embedding inside a PNG: the `sd-ti-embedding` text chunk (or, read-only, the pixel blocks).
    PNG = "png"


@dataclasses.dataclass(frozen=True, eq=False)
class Embedding:
    """A textual-inversion embedding. Construction copies and checks the vectors, so it is a snapshot that
    later optimizer steps on the caller's tensor cannot change."""

    name: str  # the trigger word
    vectors: tuple[torch.Tensor, ...]  # one float32 CPU [n_vectors, width] per text encoder
    step: int | None = None  # the training step the vectors come from
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)  # string metadata, as safetensors holds

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"an embedding needs a non-empty trigger word as its name, got {self.name!r}")
        vectors = (self.vectors,) if isinstance(self.vectors, torch.Tensor) else tuple(self.vectors)
        if len(vectors) not in (1, 2):
            raise ValueError(f"an embedding has 1 text encoder (SD1.x/SD2.x) or 2 (SDXL), got {len(vectors)}")
        vectors = tuple(
            as_vectors(v, what=f"embedding '{self.name}' ({enc})", filename="")
            for v, enc in zip(vectors, _encoders(len(vectors)), strict=True)
        )
        if len({v.shape[0] for v in vectors}) != 1:
            counts = " vs ".join(str(v.shape[0]) for v in vectors)
            raise InvalidEmbeddingTensor(
                f"embedding '{self.name}' has {counts} vectors in clip_l and clip_g; SDXL embeddings need the same "
                "count in both"
            )
        if self.step is not None and (isinstance(self.step, bool) or not isinstance(self.step, int) or self.step < 0):
            raise ValueError(f"step must be a non-negative int or None, got {self.step!r}")
        bad = {k: v for k, v in dict(self.metadata).items() if not isinstance(k, str) or not isinstance(v, str)}
        if bad:
            raise TypeError(f"embedding metadata must map str to str (safetensors allows nothing else), got {bad!r}")
        object.__setattr__(self, "vectors", vectors)
        object.__setattr__(self, "metadata", dict(self.metadata))

    @property
    def n_vectors(self) -> int:
        return int(self.vectors[0].shape[0])

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(int(v.shape[1]) for v in self.vectors)

    @property
    def encoders(self) -> tuple[str, ...]:
        return _encoders(len(self.vectors))

    def sha256(self) -> str:
        """Content hash over the vectors only (encoder, shape, float32 little-endian bytes): the same embedding
        has the same hash in every format and under any name. A1111's "TI hashes" infotext instead hashes the
        file's bytes (see `file_hashes`), which changes with format, name and metadata."""
        digest = hashlib.sha256()
        for encoder, v in zip(self.encoders, self.vectors, strict=True):
            digest.update(f"{encoder}:{v.shape[0]}x{v.shape[1]};".encode())
            digest.update(v.numpy().astype("<f4", copy=False).tobytes())
        return digest.hexdigest()

    def short_hash(self) -> str:
        return self.sha256()[:12]


def file_hashes(data: bytes) -> tuple[str, str]:
    """(sha256, short hash) of a file's bytes, as A1111 computes an embedding's hash and its 12-character
    "TI hashes" entry (`hashes.sha256` over the whole file, `shorthash = hash[0:12]`)."""
    full = hashlib.sha256(data).hexdigest()
    return full, full[:12]


def _encoders(count: int) -> tuple[str, ...]:
    return ("clip",) if count == 1 else ("clip_l", "clip_g")


def as_vectors(value: object, *, what: str, filename: str) -> torch.Tensor:
    """Check one tensor from a file and return it as a fresh float32 CPU [n, width] tensor (1-D becomes one
    vector, as A1111 and diffusers unsqueeze). Raises `InvalidEmbeddingTensor` naming `filename` and `what`."""
    where = ": ".join(part for part in (filename, what) if part)
    if not isinstance(value, torch.Tensor):
        raise InvalidEmbeddingTensor(f"{where} is a {type(value).__name__}, not a tensor", filename=filename)
    if value.layout != torch.strided or value.dtype not in _FLOATS:
        kind = str(value.dtype).removeprefix("torch.") if value.layout == torch.strided else f"{value.layout} tensor"
        raise InvalidEmbeddingTensor(
            f"{where} holds {kind} values; embedding vectors are float16, bfloat16, float32 or float64",
            filename=filename,
        )
    if value.dim() == 1:
        value = value.unsqueeze(0)
    if value.dim() != 2:
        shape = list(value.shape)
        raise InvalidEmbeddingTensor(
            f"{where} has shape {shape}; an embedding is [vectors, width] (2-D)", filename=filename
        )
    n, width = value.shape
    if not 1 <= n <= MAX_VECTORS:
        raise InvalidEmbeddingTensor(f"{where} has {n} vectors; an embedding has 1 to {MAX_VECTORS}", filename=filename)
    if not 1 <= width <= MAX_WIDTH:
        raise InvalidEmbeddingTensor(
            f"{where} is {width} wide; text-encoder widths are 1 to {MAX_WIDTH}", filename=filename
        )
    out = value.detach().to(device="cpu", dtype=torch.float32, copy=True).contiguous()
    if not bool(torch.isfinite(out).all()):
        bad = int((~torch.isfinite(out)).sum())
        raise InvalidEmbeddingTensor(
            f"{where} holds {bad} NaN or infinite value(s) (or values beyond float32's range); a diverged training "
            "run writes these: use an earlier savepoint",
            filename=filename,
        )
    return out
