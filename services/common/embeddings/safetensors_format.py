"""safetensors files: a header checked before any tensor is touched, and a byte-exact, deterministic writer.

Layout (the safetensors spec): 8-byte little-endian header length N, N bytes of JSON
`{"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}` padded with spaces to
a multiple of 8, then the raw little-endian tensor bytes.

We write the file ourselves instead of calling `safetensors.torch.save`: that function serialises metadata from a
Rust HashMap whose order changes from process to process, so the same embedding would get a different file, and
a different A1111 TI hash, on every export. Ours sorts metadata and tensor names; `safetensors.torch.load` and
diffusers read it like any other (the tests check both).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping

import safetensors.torch
import torch

from services.common.embeddings.errors import UnreadableEmbedding

__all__ = ["encode_safetensors", "decode_safetensors", "looks_like_safetensors"]

_MAX_HEADER = 100 * 1024 * 1024  # the limit safetensors itself enforces


def looks_like_safetensors(data: bytes) -> bool:
    """A safetensors file opens with a u64 header length and then the header's "{" (even when truncated)."""
    if len(data) < 9 or data[8:9] != b"{":
        return False
    (length,) = struct.unpack("<Q", data[:8])
    return 2 <= length <= _MAX_HEADER


def encode_safetensors(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """Float32 tensors and string metadata as safetensors bytes, identical for identical input."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {key: metadata[key] for key in sorted(metadata)}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        tensor = tensors[name]
        if tensor.dtype != torch.float32:
            raise ValueError(f"encode_safetensors writes float32 only, got {tensor.dtype} for {name!r}")
        raw = tensor.detach().cpu().contiguous().numpy().astype("<f4", copy=False).tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensor.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors' own writer does it
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def decode_safetensors(data: bytes, *, filename: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata). Truncation and damage are reported before safetensors parses the data."""
    if len(data) < 8:
        raise _unreadable(filename, f"it has {len(data)} bytes, fewer than a safetensors header needs")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise _unreadable(filename, f"its header says {length} bytes but only {len(data) - 8} follow (truncated)")
    try:
        header = json.loads(data[8 : 8 + length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _unreadable(filename, f"its header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise _unreadable(filename, "its header is not a JSON object")
    entries = {key: value for key, value in header.items() if key != "__metadata__"}
    try:
        end = max((int(entry["data_offsets"][1]) for entry in entries.values()), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        raise _unreadable(filename, "its header lists a tensor without valid data_offsets") from None
    if end > len(data) - 8 - length:
        have = len(data) - 8 - length
        raise _unreadable(filename, f"it holds {have} bytes of tensor data but its header promises {end} (truncated)")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _unreadable(filename, "its __metadata__ is not a map of strings")
    try:
        tensors = safetensors.torch.load(data)
    except Exception as exc:  # SafetensorError and friends: the header and data disagree
        raise _unreadable(filename, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    return tensors, dict(metadata)


def _unreadable(filename: str, why: str) -> UnreadableEmbedding:
    return UnreadableEmbedding(
        f"{filename} is not a readable safetensors file: {why}. Download or export it again", filename=filename
    )
