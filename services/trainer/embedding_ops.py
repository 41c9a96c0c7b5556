"""Embedding files in the store: create one for a model (CreateEmbedding) and export one to other formats
(ExportEmbedding). Domain records only; the servicer turns them into `Embedding` / `ExportedFile` messages.

    created = create_embedding_file(store, components, name="subj3ct", init_text="woman", vectors=4,
                                    model_reference="models/sd15")          # embeddings/subj3ct.safetensors
    files = export_embedding(store, created.key, EmbeddingFormat.A1111_PT)  # embeddings/subj3ct.pt

Every write is one atomic `store.put`. Reading goes through `read_embedding`, which never unpickles anything but
tensors, so a savepoint's file or a downloaded `.pt` is safe to export.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from services.common.embeddings import (
    MAX_EMBEDDING_BYTES,
    MAX_VECTORS,
    Embedding,
    EmbeddingFormat,
    file_hashes,
    read_embedding,
    write_embedding_files,
)
from services.common.errors import AlreadyExists, InvalidArgument
from services.common.storage import Store
from services.trainer.engine.init import META_INIT_TEXT, create_embedding, validate_name

__all__ = [
    "EmbeddingSummary",
    "ModelIdentity",
    "StoredEmbedding",
    "create_embedding_file",
    "default_embedding_key",
    "export_embedding",
    "model_display_name",
]

_EXTENSIONS = {".safetensors": EmbeddingFormat.SAFETENSORS, ".pt": EmbeddingFormat.A1111_PT}


@dataclass(frozen=True)
class ModelIdentity:
    """The model an embedding is for (the proto's ModelInfo)."""

    reference: str  # as the caller gave it
    name: str  # display name: the folder or file name without extension
    family: str  # "sd1" | "sd2" | "sdxl"
    sha256: str
    short_hash: str  # A1111's 10-character model hash
    prediction_type: str  # "epsilon" | "v_prediction"
    embedding_dims: tuple[int, ...]  # token-embedding width per text encoder

    @classmethod
    def from_components(cls, components: Any, reference: str) -> ModelIdentity:
        return cls(
            reference=reference,
            name=model_display_name(reference),
            family=components.family,
            sha256=components.fingerprint.sha256,
            short_hash=components.fingerprint.short_hash,
            prediction_type=components.prediction_type,
            embedding_dims=components.embedding_dims,
        )


@dataclass(frozen=True)
class EmbeddingSummary:
    """An embedding as a plan shows it: what it is and where training resumes."""

    name: str
    vectors: int
    dims: tuple[int, ...]
    step: int  # optimizer steps it has been trained for (0 for a new one)
    init_text: str
    sha256: str  # over the vectors (the same in every format)

    @classmethod
    def of(cls, embedding: Embedding) -> EmbeddingSummary:
        return cls(
            name=embedding.name,
            vectors=embedding.n_vectors,
            dims=embedding.dims,
            step=embedding.step or 0,
            init_text=embedding.metadata.get(META_INIT_TEXT, ""),
            sha256=embedding.sha256(),
        )


@dataclass(frozen=True)
class StoredEmbedding:
    """One embedding file in the store (the proto's Embedding; with `text_encoder`, an ExportedFile)."""

    name: str
    vectors: int
    dims: tuple[int, ...]
    init_text: str
    step: int
    key: str
    format: EmbeddingFormat
    sha256: str  # of the file's bytes
    short_hash: str  # A1111's 12-character "TI hash"
    metadata: Mapping[str, str] = field(default_factory=dict)
    model: ModelIdentity | None = None  # known when created here; exports leave it to the metadata
    text_encoder: str = ""  # "clip_l" / "clip_g" for diffusers' two-file SDXL form, else ""


def model_display_name(reference: str) -> str:
    base = posixpath.basename(reference.removeprefix("store:").rstrip("/")) or reference
    stem, ext = posixpath.splitext(base)
    return stem if ext in (".safetensors", ".ckpt", ".pt", ".bin") else base


def default_embedding_key(name: str) -> str:
    return f"embeddings/{name}.safetensors"


def create_embedding_file(
    store: Store,
    components: Any,
    *,
    name: str,
    init_text: str = "*",
    vectors: int = 1,
    destination_key: str | None = None,
    overwrite: bool = False,
    model_reference: str,
) -> StoredEmbedding:
    """A step-0 embedding for the model, written to `destination_key` (default `embeddings/<name>.safetensors`;
    a `.pt` key writes A1111's format). Refused: a name that is a token or not a word (`validate_name`), vectors
    outside 1-75, another extension, an existing file unless `overwrite` (AlreadyExists)."""
    validate_name(name, components.tokenizer)
    if isinstance(vectors, bool) or not isinstance(vectors, int) or not 1 <= vectors <= MAX_VECTORS:
        raise InvalidArgument(
            f"vectors is {vectors!r}: use 1 to {MAX_VECTORS} (users' guides: 2-3 for 10 images, 5-6 for 11-30, "
            "8-10 for 40-60)",
            field="vectors",
        )
    key = destination_key or default_embedding_key(name)
    fmt = _EXTENSIONS.get(posixpath.splitext(key)[1].lower())
    if fmt is None:
        raise InvalidArgument(
            f"destination '{key}' must end in .safetensors (the default) or .pt (A1111's format)",
            field="destination",
        )
    if not overwrite and store.exists(key):
        stem = posixpath.splitext(key)[0]
        raise AlreadyExists(
            f"'{key}' already exists: set overwrite to replace it, or pick another destination, e.g. "
            f"'{stem}-2{posixpath.splitext(key)[1]}'",
            reason="EMBEDDING_EXISTS",
            field="destination",
            metadata={"key": key, "suggestion": f"{stem}-2{posixpath.splitext(key)[1]}"},
        )
    model = ModelIdentity.from_components(components, model_reference)
    embedding = create_embedding(components, name, init_text, vectors, model_name=model.name)
    (written,) = _write(store, embedding, fmt, [key], model=model)
    return written


def export_embedding(
    store: Store,
    source_key: str,
    formats: EmbeddingFormat | Sequence[EmbeddingFormat],
    destination_key: str | None = None,
    *,
    name: str = "",
    tokenizer: Any = None,
) -> list[StoredEmbedding]:
    """The embedding at `source_key` (any format, e.g. a savepoint's file) written in each of `formats`.

    Default destination: beside the source, as `<name>.safetensors`, `<name>.pt`, or a diffusers folder
    `<name>/learned_embeds.safetensors` (+ `learned_embeds_2.safetensors` for SDXL). A `destination_key` ending in
    "/" is a folder for those names; otherwise it is the file (with one format only). `name` renames the trigger
    word (checked against `tokenizer` when given). A default destination equal to the source is not rewritten.
    """
    fmts = [formats] if isinstance(formats, EmbeddingFormat) else list(formats)
    if not fmts:
        raise InvalidArgument("name at least one format to export to", field="format")
    if destination_key and not destination_key.endswith("/") and len(fmts) > 1:
        raise InvalidArgument(
            f"destination '{destination_key}' is one file but {len(fmts)} formats were asked for: give a folder "
            "(ending in '/') or one format",
            field="destination",
        )
    size = store.stat(source_key).size
    if size > MAX_EMBEDDING_BYTES:
        raise InvalidArgument(
            f"'{source_key}' is {size} bytes, more than any embedding ({MAX_EMBEDDING_BYTES}): is it a model?",
            field="embedding",
        )
    embedding, source_format = read_embedding(store.get(source_key), filename=posixpath.basename(source_key))
    if name and name != embedding.name:
        if tokenizer is not None:
            validate_name(name, tokenizer)
        embedding = replace(embedding, name=name)
    out: list[StoredEmbedding] = []
    for fmt in fmts:
        keys = _export_keys(embedding, fmt, source_key, destination_key)
        if fmt is source_format and keys == [source_key] and not destination_key and not name:
            out.append(_record(embedding, fmt, source_key, store.get(source_key), None, ""))
            continue
        out.extend(_write(store, embedding, fmt, keys, model=None))
    return out


def _export_keys(embedding: Embedding, fmt: EmbeddingFormat, source_key: str, destination: str | None) -> list[str]:
    names = list(write_embedding_files(embedding, fmt))  # cheap: a few KiB; gives the conventional file names
    if destination and not destination.endswith("/"):
        if len(names) == 1:
            return [destination]
        stem, ext = posixpath.splitext(destination)
        return [destination, f"{stem}_2{ext}"]
    folder = destination or _folder_of(source_key)
    if fmt is EmbeddingFormat.DIFFUSERS:
        folder = f"{folder}{embedding.name}/"
    return [f"{folder}{file}" for file in names]


def _folder_of(key: str) -> str:
    head = posixpath.dirname(key)
    return f"{head}/" if head else ""


def _write(
    store: Store, embedding: Embedding, fmt: EmbeddingFormat, keys: list[str], *, model: ModelIdentity | None
) -> list[StoredEmbedding]:
    files = list(write_embedding_files(embedding, fmt).values())
    encoders = ("clip_l", "clip_g") if len(files) == 2 else ("",)
    out = []
    for key, data, encoder in zip(keys, files, encoders, strict=True):
        store.put(key, data)  # atomic: old or new, never partial
        out.append(_record(embedding, fmt, key, data, model, encoder))
    return out


def _record(
    embedding: Embedding, fmt: EmbeddingFormat, key: str, data: bytes, model: ModelIdentity | None, encoder: str
) -> StoredEmbedding:
    sha256, short = file_hashes(data)
    # The file's metadata as written: the embedding's, with the fields the writer sets from the vectors.
    metadata = dict(embedding.metadata)
    metadata.update(trigger=embedding.name, vectors=str(embedding.n_vectors))
    if embedding.step is not None:
        metadata["step"] = str(embedding.step)
    return StoredEmbedding(
        name=embedding.name,
        vectors=embedding.n_vectors,
        dims=embedding.dims,
        init_text=embedding.metadata.get(META_INIT_TEXT, ""),
        step=embedding.step or 0,
        key=key,
        format=fmt,
        sha256=sha256,
        short_hash=short,
        metadata=metadata,
        model=model,
        text_encoder=encoder,
    )
