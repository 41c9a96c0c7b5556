"""Model fingerprints: the sha256 a user can compare with A1111's "Model hash", cached like A1111's cache.json.

- a single file: sha256 of its bytes; `short_hash` = the first 10 hex chars (A1111's `Model hash` infotext field).
- a folder: sha256 over the sorted lines `"<relpath>\\0<sha256(file)>\\n"` of its weight files (`*.safetensors`,
  `*.bin`, recursively); `short_hash` = its first 10 hex chars.

Hashing a 4 GB checkpoint takes tens of seconds, so file digests are cached in a JSON file keyed by
(absolute path, size, mtime_ns): a changed or touched file is hashed again. The cache is written atomically
(temp file + rename) and merged with what other processes wrote meanwhile.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from services.common.files import write_text_atomic

__all__ = [
    "ModelFingerprint",
    "HashCache",
    "WEIGHT_SUFFIXES",
    "file_sha256",
    "combine_digests",
    "tree_digest",
    "fingerprint_file",
    "fingerprint_folder",
    "fingerprint_path",
]

CHUNK_BYTES = 1 << 20
SHORT_HASH_LEN = 10
WEIGHT_SUFFIXES = (".safetensors", ".bin")

Opener = Callable[[Path], IO[bytes]]


def _open_binary(path: Path) -> IO[bytes]:
    return open(path, "rb")


@dataclass(frozen=True)
class ModelFingerprint:
    sha256: str  # 64 hex chars
    short_hash: str  # first 10 hex chars: A1111's "Model hash"

    @classmethod
    def from_sha256(cls, digest: str) -> ModelFingerprint:
        return cls(sha256=digest, short_hash=digest[:SHORT_HASH_LEN])

    def as_metadata(self, prefix: str = "base_model") -> dict[str, str]:
        """String metadata for safetensors/infotext: `{prefix}_sha256`, `{prefix}_hash`."""
        return {f"{prefix}_sha256": self.sha256, f"{prefix}_hash": self.short_hash}


class HashCache:
    """File digests keyed by (absolute path, size, mtime_ns), persisted as JSON at `path` (None: memory only)."""

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._entries: dict[str, dict] = self._read()
        self._dirty = False

    def _read(self) -> dict[str, dict]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}  # absent or corrupt: start over, it is only a cache
        entries = data.get("sha256") if isinstance(data, dict) else None
        return entries if isinstance(entries, dict) else {}

    @staticmethod
    def _stat_key(path: Path) -> tuple[str, int, int]:
        st = path.stat()
        return str(path.resolve()), st.st_size, st.st_mtime_ns

    def get(self, path: Path) -> str | None:
        key, size, mtime_ns = self._stat_key(path)
        entry = self._entries.get(key)
        if entry and entry.get("size") == size and entry.get("mtime_ns") == mtime_ns:
            return entry.get("sha256")
        return None

    def put(self, path: Path, digest: str) -> None:
        key, size, mtime_ns = self._stat_key(path)
        self._entries[key] = {"size": size, "mtime_ns": mtime_ns, "sha256": digest}
        self._dirty = True

    def save(self) -> None:
        """Merge with the file on disk (another process may have added entries) and replace it atomically."""
        if self.path is None or not self._dirty:
            return
        merged = {**self._read(), **self._entries}
        write_text_atomic(self.path, json.dumps({"sha256": merged}, indent=1, sort_keys=True))
        self._entries, self._dirty = merged, False


def file_sha256(path: Path, *, cache: HashCache | None = None, opener: Opener = _open_binary) -> str:
    """sha256 of a file, streamed in 1 MiB chunks; served from `cache` when (path, size, mtime_ns) match.

    `opener` is a seam for tests (count the reads); it must return a binary file object.
    """
    path = Path(path)
    if cache is not None and (hit := cache.get(path)) is not None:
        return hit
    digest = hashlib.sha256()
    with opener(path) as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    hexdigest = digest.hexdigest()
    if cache is not None:
        cache.put(path, hexdigest)
    return hexdigest


def combine_digests(file_digests: Mapping[str, str]) -> str:
    """sha256 over the sorted lines `"<relpath>\\0<sha256(file)>\\n"` (relpaths in POSIX form)."""
    lines = sorted(f"{rel}\0{digest}\n" for rel, digest in file_digests.items())
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def tree_digest(
    root: Path, files: Iterable[Path], *, cache: HashCache | None = None, opener: Opener = _open_binary
) -> str:
    """`combine_digests` of `files`, named by their paths relative to `root`."""
    return combine_digests(
        {Path(f).relative_to(root).as_posix(): file_sha256(Path(f), cache=cache, opener=opener) for f in files}
    )


def fingerprint_file(path: Path, *, cache: HashCache | None = None, opener: Opener = _open_binary) -> ModelFingerprint:
    fp = ModelFingerprint.from_sha256(file_sha256(path, cache=cache, opener=opener))
    if cache is not None:
        cache.save()
    return fp


def fingerprint_folder(
    root: Path, *, cache: HashCache | None = None, opener: Opener = _open_binary
) -> ModelFingerprint:
    """Fingerprint of a model folder's weight files (config, tokenizer and README changes do not count)."""
    root = Path(root)
    weights = [
        p
        for p in root.rglob("*")
        if p.name.endswith(WEIGHT_SUFFIXES)
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)  # .cache/, .git/
    ]
    fp = ModelFingerprint.from_sha256(tree_digest(root, weights, cache=cache, opener=opener))
    if cache is not None:
        cache.save()
    return fp


def fingerprint_path(path: Path, *, cache: HashCache | None = None, opener: Opener = _open_binary) -> ModelFingerprint:
    """`fingerprint_folder` for a directory, `fingerprint_file` otherwise."""
    path = Path(path)
    if path.is_dir():
        return fingerprint_folder(path, cache=cache, opener=opener)
    return fingerprint_file(path, cache=cache, opener=opener)
