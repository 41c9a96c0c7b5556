"""Read any common textual-inversion file from its bytes: the container is detected from the content (never the
extension), the structure from its keys, and every tensor is checked before an `Embedding` is made.

Containers: PNG signature -> PNG; "PK\\x03\\x04" -> torch zip; u64 length + "{" -> safetensors; "\\x80" + protocol
-> legacy torch pickle. Structures, in A1111's order of checks:

| keys                                   | format      | trigger stored in the file |
|----------------------------------------|-------------|----------------------------|
| string_to_param (exactly one entry)    | A1111_PT    | "name"                     |
| clip_l + clip_g (SDXL)                 | SAFETENSORS | metadata "trigger"         |
| emb_params (kohya, invoke-training)    | SAFETENSORS | metadata "trigger"         |
| one "<token>" (diffusers), or a bare tensor | DIFFUSERS | the key               |
| "<t>", "<t>_1", ... (expanded tokens)  | DIFFUSERS   | "<t>"                      |

Pickled forms other than A1111's report DIFFUSERS (diffusers' `learned_embeds.bin` family); PNG reports PNG.

The trigger is `name` when given. Otherwise it follows A1111's `load_from_file`: the file name without its
extension for .pt/.bin/.safetensors (so renaming a file renames its trigger), and the stored name for a PNG.
One exception: diffusers' generic `learned_embeds*` file names use the key, as diffusers itself does.
"""

from __future__ import annotations

import dataclasses
import os

import torch

from services.common.embeddings.a1111_pt import load_pickle
from services.common.embeddings.errors import (
    InvalidEmbeddingTensor,
    MissingEmbeddingName,
    MultipleEmbeddings,
    NotAnEmbedding,
    UnreadableEmbedding,
)
from services.common.embeddings.model import (
    MAX_VECTORS,
    META_SD_CHECKPOINT,
    META_SD_CHECKPOINT_NAME,
    META_STEP,
    META_TRIGGER,
    Embedding,
    EmbeddingFormat,
    as_vectors,
)
from services.common.embeddings.png_embed import PNG_SIGNATURE, read_png
from services.common.embeddings.safetensors_format import decode_safetensors, looks_like_safetensors

__all__ = ["MAX_EMBEDDING_BYTES", "read_embedding"]

# The largest real embedding (75 vectors x (768 + 1280) x float64) is 1.2 MB; a PNG adds its picture. Anything
# bigger is a checkpoint or a LoRA picked by mistake, and is refused before any parsing.
MAX_EMBEDDING_BYTES = 32 * 1024 * 1024
_GENERIC_STEMS = frozenset({"learned_embeds", "learned_embeds_2"})


@dataclasses.dataclass
class _Parsed:
    vectors: tuple[torch.Tensor, ...]
    fmt: EmbeddingFormat
    stored_name: str | None = None
    step: int | None = None
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    name_is_key: bool = False  # diffusers: the stored name is the token the file is keyed by


def read_embedding(data: bytes, *, filename: str, name: str | None = None) -> tuple[Embedding, EmbeddingFormat]:
    """Parse one embedding file. Raises an `EmbeddingError` (an `InvalidArgument`) naming `filename` and saying
    what to change; a pickle is only ever loaded with `torch.load(weights_only=True)`."""
    label = filename or "the embedding file"
    data = bytes(data)
    if not data:
        raise UnreadableEmbedding(f"{label} is empty (0 bytes): upload or export it again", filename=filename)
    if len(data) > MAX_EMBEDDING_BYTES:
        raise UnreadableEmbedding(
            f"{label} is {len(data) / 2**20:.1f} MiB; textual-inversion embeddings are a few KiB to a few MiB, so "
            "this is likely a model checkpoint or a LoRA: pick the embedding file instead",
            filename=filename,
        )
    if data.startswith(PNG_SIGNATURE):
        parsed = _interpret(read_png(data, filename=label), label, EmbeddingFormat.PNG, {})
    elif data.startswith(b"PK\x03\x04") or (data[0] == 0x80 and 2 <= data[1] <= 5 and not looks_like_safetensors(data)):
        parsed = _interpret(load_pickle(data, filename=label), label, EmbeddingFormat.DIFFUSERS, {})
    elif looks_like_safetensors(data):
        tensors, metadata = decode_safetensors(data, filename=label)
        parsed = _interpret(tensors, label, EmbeddingFormat.SAFETENSORS, metadata)
    else:
        raise UnreadableEmbedding(
            f"{label} is not a safetensors, PyTorch (.pt/.bin) or PNG file (it starts with {data[:8]!r}); "
            "embeddings come in those formats only",
            filename=filename,
        )
    trigger = _trigger(name, filename, parsed, label)
    return Embedding(trigger, parsed.vectors, step=parsed.step, metadata=parsed.metadata), parsed.fmt


def _interpret(obj: object, label: str, fmt: EmbeddingFormat, metadata: dict[str, str]) -> _Parsed:
    """Find the one embedding in a loaded object. `fmt` is what a non-A1111 structure in this container reads as."""
    if isinstance(obj, torch.Tensor):  # diffusers accepts a bare tensor saved with torch.save (token= required)
        return _Parsed((as_vectors(obj, what="the tensor", filename=label),), EmbeddingFormat.DIFFUSERS)
    if not isinstance(obj, dict):
        raise NotAnEmbedding(f"{label} holds a {type(obj).__name__}, not an embedding", filename=label)
    if "string_to_param" in obj:
        return _a1111(obj, label, fmt)
    if fmt is EmbeddingFormat.PNG:
        raise NotAnEmbedding(f"{label}: its embedding data has no string_to_param ({_keys(obj)})", filename=label)
    stored = metadata.get(META_TRIGGER) or None
    step = _as_step(metadata.get(META_STEP))
    if "clip_l" in obj and "clip_g" in obj:
        _only(obj, {"clip_l", "clip_g"}, label)
        clip_l, clip_g = (as_vectors(obj[key], what=key, filename=label) for key in ("clip_l", "clip_g"))
        if clip_l.shape[0] != clip_g.shape[0]:
            raise InvalidEmbeddingTensor(
                f"{label} has {clip_l.shape[0]} clip_l vectors but {clip_g.shape[0]} clip_g vectors; an SDXL "
                "embedding has the same count in both",
                filename=label,
            )
        return _Parsed((clip_l, clip_g), fmt, stored, step, metadata)
    if "emb_params" in obj:
        _only(obj, {"emb_params"}, label)
        return _Parsed((as_vectors(obj["emb_params"], what="emb_params", filename=label),), fmt, stored, step, metadata)
    if not obj or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise NotAnEmbedding(
            f"{label} holds {_keys(obj)}, none of the embedding layouts (string_to_param, emb_params, clip_l + "
            "clip_g, or one tensor under its token)",
            filename=label,
        )
    token, vectors = _token_vectors(obj, label)
    diffusers_meta = {META_TRIGGER: token, **metadata}
    return _Parsed((vectors,), EmbeddingFormat.DIFFUSERS, token, step, diffusers_meta, name_is_key=True)


def _a1111(obj: dict, label: str, fmt: EmbeddingFormat) -> _Parsed:
    params = obj["string_to_param"]
    if not isinstance(params, dict) or not params:
        raise NotAnEmbedding(f"{label}: string_to_param is empty or not a dict, so it holds no vectors", filename=label)
    if len(params) != 1:
        raise MultipleEmbeddings(
            f"{label} has {len(params)} entries in string_to_param ({_keys(params)}); A1111 loads a file only when "
            "string_to_param has exactly one entry: save each term as its own file",
            filename=label,
        )
    key, value = next(iter(params.items()))
    vectors = as_vectors(value, what=f"string_to_param[{key!r}]", filename=label)
    # The other fields are informational: a wrong type there cannot hurt, so it is dropped rather than refused.
    text = {k: v for k in ("name", "sd_checkpoint", "sd_checkpoint_name") if isinstance(v := obj.get(k), str) and v}
    step = _as_step(obj.get("step"))
    metadata = {META_TRIGGER: text["name"]} if "name" in text else {}
    metadata.update({k: text[k] for k in (META_SD_CHECKPOINT, META_SD_CHECKPOINT_NAME) if k in text})
    if step is not None:
        metadata[META_STEP] = str(step)
    out_fmt = EmbeddingFormat.PNG if fmt is EmbeddingFormat.PNG else EmbeddingFormat.A1111_PT
    return _Parsed((vectors,), out_fmt, text.get("name"), step, metadata)


def _token_vectors(obj: dict[str, torch.Tensor], label: str) -> tuple[str, torch.Tensor]:
    """One "<token>" key, or diffusers' expanded "<t>", "<t>_1", ... one vector each, stacked in order."""
    if len(obj) == 1:
        token, value = next(iter(obj.items()))
        return str(token), as_vectors(value, what=repr(token), filename=label)
    base = min(obj, key=len)
    expected = [base] + [f"{base}_{i}" for i in range(1, len(obj))]
    if sorted(obj) == sorted(expected):
        rows = [as_vectors(obj[key], what=repr(key), filename=label) for key in expected]
        if all(row.shape[0] == 1 for row in rows) and len({row.shape[1] for row in rows}) == 1:
            return base, torch.cat(rows)
    if len(obj) > MAX_VECTORS or any("." in key for key in obj):
        raise NotAnEmbedding(
            f"{label} holds {_keys(obj)}: that is a LoRA or model checkpoint, not a textual-inversion embedding",
            filename=label,
        )
    raise MultipleEmbeddings(
        f"{label} holds {len(obj)} separate tokens ({_keys(obj)}); a file must hold exactly one embedding: "
        "save each token as its own file",
        filename=label,
    )


def _trigger(name: str | None, filename: str, parsed: _Parsed, label: str) -> str:
    if name and name.strip():
        return name.strip()
    stem = os.path.splitext(filename.replace("\\", "/").rsplit("/", 1)[-1])[0].strip()
    if parsed.stored_name and (parsed.fmt is EmbeddingFormat.PNG or (parsed.name_is_key and stem in _GENERIC_STEMS)):
        return parsed.stored_name
    if stem:
        return stem
    if parsed.stored_name:
        return parsed.stored_name
    raise MissingEmbeddingName(f"{label} stores no trigger word and has no file name: pass name=", filename=filename)


def _only(obj: dict, allowed: set[str], label: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise NotAnEmbedding(
            f"{label} holds {', '.join(sorted(allowed))} plus unexpected keys {extra}; remove them or re-export "
            "the embedding",
            filename=label,
        )


def _as_step(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _keys(obj: dict, limit: int = 4) -> str:
    keys = [repr(key) for key in list(obj)[:limit]]
    more = f", ... ({len(obj)} keys)" if len(obj) > limit else ""
    return "keys " + ", ".join(keys) + more if keys else "no keys"
