"""Savepoints: the embedding files plus everything an exact resume needs, written so that half a savepoint never
counts, and the loss CSV with A1111's columns.

    <output_prefix>/savepoints/000050/<name>.safetensors   {"emb_params": [n, D]} + string metadata (the default;
                                                           SDXL: {"clip_l": [n, 768], "clip_g": [n, 1280]})
                                      <name>.pt            A1111's pickle                  (extra format a1111_pt)
                                      learned_embeds.safetensors  diffusers' {"<name>": [n, D]} (extra: diffusers)
                                      state.pt             step, AdamW moments, scaler, RNG states, data cursor
                                      settings.json        the spec, model, dataset hash, effective batch plan
                                      manifest.json        written LAST: sha256 and size of every file above
    <output_prefix>/loss.csv                               step,epoch,epoch_step,loss,learn_rate (A1111's)

Every object write is atomic (the store's contract) and the manifest goes last, so a savepoint is either listed
with all its files intact or not listed at all; `load_savepoint` re-checks the hashes. The embedding files are named
after the trigger word because A1111 takes the trigger from the file name. `state.pt` holds only tensors, numbers,
strings and plain containers: it loads with `torch.load(weights_only=True)`. Its "vectors" is the first text
encoder's trained tensor (the only one before SDXL); SDXL adds "vectors_2" (clip_g), so SD1.x state files read as
they always did, and the AdamW state_dict holds one entry per tensor.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from services.common.embeddings import Embedding, EmbeddingFormat, read_embedding, write_embedding_files
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.storage import ObjectNotFound, Store, validate_prefix

__all__ = [
    "LOSS_CSV",
    "LossRow",
    "Savepoint",
    "SavepointCorrupt",
    "SavepointFile",
    "TrainingState",
    "latest_savepoint",
    "list_savepoints",
    "load_savepoint",
    "read_loss_csv",
    "savepoint_folder",
    "savepoint_vectors",
    "state_vectors",
    "write_loss_csv",
    "write_savepoint",
]

MANIFEST = "manifest.json"
STATE = "state.pt"
SETTINGS = "settings.json"
LOSS_CSV = "loss.csv"
LOSS_COLUMNS = ("step", "epoch", "epoch_step", "loss", "learn_rate")
MANIFEST_FORMAT = "tistudio.savepoint/1"
_FOLDER = re.compile(r"^savepoints/(\d{6,})/manifest\.json$")


class SavepointCorrupt(FailedPrecondition):
    reason = "SAVEPOINT_CORRUPT"


@dataclass(frozen=True)
class SavepointFile:
    name: str  # file name inside the savepoint folder
    key: str  # full store key
    format: str  # "safetensors" | "a1111_pt" | "diffusers" | "state" | "settings"
    sha256: str
    size: int


@dataclass(frozen=True)
class Savepoint:
    step: int  # optimizer steps done
    name: str  # the trigger word
    folder: str  # "<output_prefix>/savepoints/000050/"
    embedding_key: str  # the default .safetensors file
    state_key: str
    settings_key: str
    manifest_key: str
    loss: float | None  # the loss of the step that ended here
    reason: str  # "interval" | "final" | "pause" | "shutdown" | "until_step"
    embedding_sha256: str  # Embedding.sha256(): the vectors' content hash, the same in every format
    files: tuple[SavepointFile, ...]


@dataclass
class TrainingState:
    """What state.pt holds, loaded with weights_only=True."""

    step: int
    vectors: torch.Tensor  # [n, D] float32: the exact trained parameter (SDXL: clip_l)
    optimizer: dict[str, Any]  # AdamW state_dict (moments, its own step counter)
    scaler: dict[str, Any] | None  # GradScaler state_dict (fp16 only)
    generator: torch.Tensor  # the run generator's state (noise, timesteps, flips, random latents)
    generator_device: str  # "cpu" | "cuda": states do not carry across device types
    prompt_rng: dict[str, Any]  # PromptSampler.state()
    cursor: dict[str, int]  # {"epoch", "batch"}
    settings: dict[str, Any]  # settings.json
    vectors_2: torch.Tensor | None = None  # SDXL: clip_g [n, 1280] float32

    @property
    def trained(self) -> tuple[torch.Tensor, ...]:
        """The trained tensors in text-encoder order."""
        return (self.vectors,) if self.vectors_2 is None else (self.vectors, self.vectors_2)


def savepoint_vectors(trained: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """state.pt's entries for the trained tensors: "vectors", and "vectors_2" for a second text encoder."""
    if len(trained) not in (1, 2):
        raise ValueError(f"a savepoint holds the vectors of one or two text encoders, not {len(trained)}")
    names = ("vectors", "vectors_2")
    return {name: vectors.detach().float() for name, vectors in zip(names, trained, strict=False)}


def state_vectors(state: Mapping[str, Any]) -> tuple[torch.Tensor, ...]:
    """The trained tensors of a state.pt mapping, in text-encoder order."""
    return (state["vectors"],) if state.get("vectors_2") is None else (state["vectors"], state["vectors_2"])


@dataclass(frozen=True)
class LossRow:
    step: int
    epoch: int
    epoch_step: int
    loss: float
    learn_rate: float


def savepoint_folder(output_prefix: str, step: int) -> str:
    return f"{_prefix(output_prefix)}savepoints/{step:06d}/"


def write_savepoint(
    store: Store,
    output_prefix: str,
    *,
    embedding: Embedding,
    state: Mapping[str, Any],
    settings: Mapping[str, Any],
    extra_formats: Sequence[str] = (),
    loss: float | None = None,
    reason: str = "interval",
) -> Savepoint:
    """Write every file of the savepoint at `embedding.step`, then its manifest."""
    step = embedding.step
    if step is None:
        raise ValueError("a savepoint's embedding needs its step")
    folder = savepoint_folder(output_prefix, step)
    store.delete(folder + MANIFEST)  # a rewrite at the same step: the old one stops existing first
    blobs: list[tuple[str, str, bytes]] = []  # (file name, format, bytes)
    for fmt in (EmbeddingFormat.SAFETENSORS, *(EmbeddingFormat(f) for f in extra_formats)):
        for file_name, data in write_embedding_files(embedding, fmt).items():
            blobs.append((file_name, "safetensors" if fmt is EmbeddingFormat.SAFETENSORS else fmt.value, data))
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    blobs.append((STATE, "state", buffer.getvalue()))
    blobs.append((SETTINGS, "settings", (json.dumps(settings, indent=2, sort_keys=False) + "\n").encode()))
    files = []
    for file_name, fmt, data in blobs:
        store.put(folder + file_name, data)
        files.append(SavepointFile(file_name, folder + file_name, fmt, hashlib.sha256(data).hexdigest(), len(data)))
    manifest = {
        "format": MANIFEST_FORMAT,
        "step": step,
        "name": embedding.name,
        "reason": reason,
        "loss": loss,
        "embedding": files[0].name,
        "embedding_sha256": embedding.sha256(),
        "files": [{"name": f.name, "format": f.format, "sha256": f.sha256, "size": f.size} for f in files],
    }
    store.put(folder + MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return _savepoint(folder, manifest)


def list_savepoints(store: Store, output_prefix: str) -> list[Savepoint]:
    """Every complete savepoint (one with a manifest), oldest first."""
    prefix = _prefix(output_prefix)
    found = []
    for info in store.list(prefix + "savepoints/"):
        match = _FOLDER.match(info.key[len(prefix) :])
        if match is None:
            continue
        try:
            manifest = json.loads(store.get(info.key))
        except (ObjectNotFound, ValueError):
            continue  # deleted meanwhile, or not ours: not a savepoint
        if isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT:
            found.append(_savepoint(info.key[: -len(MANIFEST)], manifest))
    return sorted(found, key=lambda s: s.step)


def latest_savepoint(store: Store, output_prefix: str) -> Savepoint | None:
    savepoints = list_savepoints(store, output_prefix)
    return savepoints[-1] if savepoints else None


def load_savepoint(store: Store, savepoint: Savepoint) -> tuple[Embedding, TrainingState]:
    """The embedding and the training state, each checked against the manifest's hashes."""
    blobs = {}
    for file in savepoint.files:
        if file.format not in ("safetensors", "state", "settings"):
            continue
        data = store.get(file.key)
        if hashlib.sha256(data).hexdigest() != file.sha256:
            raise SavepointCorrupt(
                f"{file.key} does not match its savepoint manifest (changed or damaged after it was written): "
                "resume from an earlier savepoint",
                metadata={"key": file.key},
            )
        blobs[file.format] = data
    embedding, _ = read_embedding(blobs["safetensors"], filename=savepoint.embedding_key)
    raw = torch.load(io.BytesIO(blobs["state"]), map_location="cpu", weights_only=True)
    state = TrainingState(
        step=int(raw["step"]),
        vectors=raw["vectors"],
        optimizer=raw["optimizer"],
        scaler=raw.get("scaler"),
        generator=raw["generator"],
        generator_device=str(raw["generator_device"]),
        prompt_rng=raw["prompt_rng"],
        cursor={k: int(v) for k, v in raw["cursor"].items()},
        settings=json.loads(blobs["settings"]),
        vectors_2=raw.get("vectors_2"),
    )
    if state.step != savepoint.step or embedding.step != savepoint.step:
        raise SavepointCorrupt(
            f"savepoint {savepoint.folder} says step {savepoint.step} but its files say {state.step}/"
            f"{embedding.step}: resume from another savepoint"
        )
    return embedding, state


def write_loss_csv(store: Store, output_prefix: str, rows: Sequence[LossRow]) -> str:
    """Rewrite loss.csv whole (the store has no append; the file is small). Returns its key."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(LOSS_COLUMNS)
    for row in rows:
        writer.writerow([row.step, row.epoch, row.epoch_step, f"{row.loss:.7f}", repr(row.learn_rate)])
    key = _prefix(output_prefix) + LOSS_CSV
    store.put(key, out.getvalue().encode(), content_type="text/csv")
    return key


def read_loss_csv(store: Store, output_prefix: str) -> list[LossRow]:
    try:
        text = store.get(_prefix(output_prefix) + LOSS_CSV).decode()
    except ObjectNotFound:
        return []
    reader = csv.DictReader(io.StringIO(text))
    return [
        LossRow(int(r["step"]), int(r["epoch"]), int(r["epoch_step"]), float(r["loss"]), float(r["learn_rate"]))
        for r in reader
    ]


def _savepoint(folder: str, manifest: Mapping[str, Any]) -> Savepoint:
    files = tuple(
        SavepointFile(f["name"], folder + f["name"], f["format"], f["sha256"], int(f["size"]))
        for f in manifest["files"]
    )
    return Savepoint(
        step=int(manifest["step"]),
        name=str(manifest["name"]),
        folder=folder,
        embedding_key=folder + manifest["embedding"],
        state_key=folder + STATE,
        settings_key=folder + SETTINGS,
        manifest_key=folder + MANIFEST,
        loss=manifest.get("loss"),
        reason=str(manifest.get("reason", "")),
        embedding_sha256=str(manifest.get("embedding_sha256", "")),
        files=files,
    )


def _prefix(output_prefix: str) -> str:
    validate_prefix(output_prefix, field="output_prefix")
    if output_prefix and not output_prefix.endswith("/"):
        output_prefix += "/"
    if not output_prefix:
        raise InvalidArgument("output_prefix is empty: give the run a folder, e.g. 'jobs/<job_id>/'")
    return output_prefix
