"""Copying between local folders and the shared store the services read (`services.common.storage`).

    store = open_store("file:///srv/tistudio")            # or Tistudio.store
    keys = upload_folder(store, "photos/anna", "datasets/anna/raw/")
    paths = download(store, "jobs/j-1/", "out/j-1")

Failures raise `TransferError` naming the local file and the key, with the original error as `__cause__`.
"""

from __future__ import annotations

import os
from pathlib import Path

from services.common.errors import TistudioError as StoreError
from services.common.storage import Store, validate_key, validate_prefix
from tistudio_client.errors import TransferError

__all__ = ["IMAGE_SUFFIXES", "CAPTION_SUFFIX", "folder_prefix", "upload_folder", "download"]

# What the preprocessor can decode; anything else in the folder (notes, .DS_Store, sidecars) stays local.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
CAPTION_SUFFIX = ".txt"


def folder_prefix(prefix: str) -> str:
    """`prefix` as a folder prefix ending in "/" ("datasets/anna" -> "datasets/anna/"), validated."""
    prefix = prefix if prefix.endswith("/") or not prefix else prefix + "/"
    try:
        return validate_prefix(prefix)
    except StoreError as err:
        raise TransferError(err.message, path="", key=prefix, code=err.code, reason=err.reason) from err


def upload_folder(store: Store, local_dir: str | os.PathLike[str], prefix: str) -> list[str]:
    """Put every image and `.txt` caption directly in `local_dir` under `prefix`; return the keys written.

    Subfolders, hidden files and other file types are skipped. Files keep their names, so a caption stays
    beside its image ("001.jpg" + "001.txt"). Re-uploading overwrites objects of the same name.
    """
    folder = Path(local_dir)
    if not folder.is_dir():
        raise TransferError(f"{folder} is not a folder; give the folder holding the images", path=str(folder))
    prefix = folder_prefix(prefix)
    keys = []
    for path in sorted(folder.iterdir()):
        suffix = path.suffix.lower()
        if path.name.startswith(".") or not path.is_file():
            continue
        if suffix not in IMAGE_SUFFIXES and suffix != CAPTION_SUFFIX:
            continue
        key = prefix + path.name
        _copy(lambda key=key, path=path: store.put_file(validate_key(key), path), path, key, "upload")
        keys.append(key)
    return keys


def download(store: Store, key_or_prefix: str, local_dir: str | os.PathLike[str]) -> list[Path]:
    """Copy one object, or every object under a folder prefix, into `local_dir`; return the local paths.

    An object lands as `local_dir/<its name>`; objects under a prefix keep their path below the prefix. A key
    that names no object is taken as a folder ("jobs/j-1" lists "jobs/j-1/").
    """
    target = Path(local_dir)
    if key_or_prefix and not key_or_prefix.endswith("/") and _exists(store, key_or_prefix):
        path = target / key_or_prefix.rsplit("/", 1)[-1]
        _copy(lambda: store.download(key_or_prefix, path), path, key_or_prefix, "download")
        return [path]
    prefix = folder_prefix(key_or_prefix)
    paths = []
    for info in _listing(store, prefix):
        path = target.joinpath(*info.key[len(prefix) :].split("/"))
        _copy(lambda info=info, path=path: store.download(info.key, path), path, info.key, "download")
        paths.append(path)
    if not paths:
        raise TransferError(f"nothing in the store under {prefix!r}; check the key", path=str(target), key=prefix)
    return paths


def _exists(store: Store, key: str) -> bool:
    try:
        return store.exists(key)
    except StoreError as err:
        raise TransferError(err.message, path="", key=key, code=err.code, reason=err.reason) from err


def _listing(store: Store, prefix: str) -> list:
    try:
        return list(store.list(prefix))
    except StoreError as err:
        raise TransferError(f"cannot list {prefix!r}: {err.message}", path="", key=prefix, code=err.code) from err


def _copy(action, path: Path, key: str, verb: str) -> None:
    """Run one copy, turning store and file-system errors into a TransferError that names both ends."""
    try:
        action()
    except StoreError as err:
        raise TransferError(
            f"{verb} of {path} as {key!r} failed: {err.message}",
            path=str(path),
            key=key,
            code=err.code,
            reason=err.reason,
            metadata=err.metadata,
        ) from err
    except OSError as err:
        raise TransferError(
            f"{verb} of {path} as {key!r} failed: {err.strerror or err}", path=str(path), key=key
        ) from err
