"""Write an `Embedding` in any format, byte for byte what the format's own tool writes, and deterministic.

| format      | SD1.x / SD2.x                         | SDXL                                        |
|-------------|---------------------------------------|---------------------------------------------|
| SAFETENSORS | {"emb_params": [n, d]} + metadata     | {"clip_l": [n, 768], "clip_g": [n, 1280]}   |
| A1111_PT    | A1111's pickled dict (no metadata)    | refused: A1111's .pt holds one encoder      |
| DIFFUSERS   | {"<name>": [n, d]} + metadata         | two files, one per text encoder             |
| PNG         | A1111's `sd-ti-embedding` chunk       | refused, as for A1111_PT                    |

Vectors are written as float32, the dtype A1111, kohya and diffusers train and save TI vectors in. Safetensors
metadata is the embedding's metadata with `trigger`, `vectors`, `step` and the checkpoint fields set from the
embedding itself, so the file can never contradict its vectors.
"""

from __future__ import annotations

from services.common.embeddings.a1111_pt import a1111_dict, write_a1111_pt
from services.common.embeddings.errors import UnsupportedEmbeddingFormat
from services.common.embeddings.model import (
    META_SD_CHECKPOINT,
    META_SD_CHECKPOINT_NAME,
    META_STEP,
    META_TRIGGER,
    META_VECTORS,
    Embedding,
    EmbeddingFormat,
)
from services.common.embeddings.png_embed import write_png
from services.common.embeddings.safetensors_format import encode_safetensors

__all__ = ["DIFFUSERS_NAMES", "write_embedding", "write_embedding_files"]

# diffusers' folder layout: load_textual_inversion(folder) finds learned_embeds.safetensors; its SDXL training
# script writes text_encoder_2's vectors beside it as learned_embeds_2.safetensors.
DIFFUSERS_NAMES = ("learned_embeds.safetensors", "learned_embeds_2.safetensors")
_EXTENSIONS = {
    EmbeddingFormat.SAFETENSORS: ".safetensors",
    EmbeddingFormat.A1111_PT: ".pt",
    EmbeddingFormat.PNG: ".png",
}


def write_embedding(
    embedding: Embedding, fmt: EmbeddingFormat, *, sd_checkpoint: str = "", sd_checkpoint_name: str = ""
) -> bytes:
    """The file's bytes. `sd_checkpoint` (the base model's short hash) and `sd_checkpoint_name` default to the
    embedding's metadata. SDXL in DIFFUSERS form is two files: use `write_embedding_files`."""
    files = write_embedding_files(embedding, fmt, sd_checkpoint=sd_checkpoint, sd_checkpoint_name=sd_checkpoint_name)
    if len(files) != 1:
        raise UnsupportedEmbeddingFormat(
            f"embedding '{embedding.name}' is SDXL, which diffusers keeps in two files ({', '.join(files)}); "
            "call write_embedding_files, or write SAFETENSORS for one file with clip_l and clip_g"
        )
    return next(iter(files.values()))


def write_embedding_files(
    embedding: Embedding, fmt: EmbeddingFormat, *, sd_checkpoint: str = "", sd_checkpoint_name: str = ""
) -> dict[str, bytes]:
    """{suggested file name: bytes}: "<name>.<ext>" for most formats, diffusers' learned_embeds*.safetensors."""
    checkpoint = {"sd_checkpoint": sd_checkpoint, "sd_checkpoint_name": sd_checkpoint_name}
    sdxl = len(embedding.vectors) == 2
    if fmt is EmbeddingFormat.SAFETENSORS:
        tensors = (
            dict(zip(("clip_l", "clip_g"), embedding.vectors, strict=True))
            if sdxl
            else {"emb_params": embedding.vectors[0]}
        )
        data = encode_safetensors(tensors, _metadata(embedding, **checkpoint))
    elif fmt is EmbeddingFormat.DIFFUSERS:
        metadata = _metadata(embedding, **checkpoint)
        return {
            file: encode_safetensors({embedding.name: vectors}, metadata)
            for file, vectors in zip(DIFFUSERS_NAMES, embedding.vectors, strict=False)  # one or two encoders
        }
    elif sdxl:
        raise UnsupportedEmbeddingFormat(
            f"embedding '{embedding.name}' is SDXL (clip_l + clip_g); A1111's {fmt.value} form holds one text "
            "encoder's vectors: write it as SAFETENSORS, which A1111, ComfyUI and diffusers read for SDXL"
        )
    elif fmt is EmbeddingFormat.A1111_PT:
        data = write_a1111_pt(embedding, **checkpoint)
    elif fmt is EmbeddingFormat.PNG:
        data = write_png(a1111_dict(embedding, **checkpoint))
    else:
        raise ValueError(f"unknown embedding format {fmt!r}")
    return {f"{embedding.name}{_EXTENSIONS[fmt]}": data}


def _metadata(embedding: Embedding, *, sd_checkpoint: str, sd_checkpoint_name: str) -> dict[str, str]:
    metadata = dict(embedding.metadata)
    metadata[META_TRIGGER] = embedding.name
    metadata[META_VECTORS] = str(embedding.n_vectors)
    if embedding.step is None:
        metadata.pop(META_STEP, None)
    else:
        metadata[META_STEP] = str(embedding.step)
    for key, value in ((META_SD_CHECKPOINT, sd_checkpoint), (META_SD_CHECKPOINT_NAME, sd_checkpoint_name)):
        if value:
            metadata[key] = value
    return metadata
