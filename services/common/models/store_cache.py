"""A local, content-addressed cache of models kept in a store (S3 or a local store), downloaded once.

Layout under `<cache>/models/`:

    by-content/<content hash>/...    the model's files; content hash = sha256 over sorted "relpath\\0sha256\\n"
    by-listing/<listing digest>      JSON index entry: which content a store listing resolved to
    tmp/<random>/                    downloads in progress (removed on failure)

Resolving a prefix lists it and digests (store URL, prefix, relative key, size, etag). An index entry for that
digest whose content folder exists is reused without downloading anything. Otherwise every object is downloaded
into `tmp/`, hashed, renamed to `by-content/<hash>` (kept as is if another download got there first: same content)
and only then is the index entry written, so an interrupted download never leaves an entry behind. Two prefixes
(or stores) holding the same files share one content folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from services.common.files import write_text_atomic
from services.common.models.fingerprint import HashCache, combine_digests, file_sha256

if TYPE_CHECKING:
    from services.common.storage import ObjectInfo, Store

__all__ = ["CachedPrefix", "fetch_prefix", "listing_digest"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedPrefix:
    path: Path  # the content folder, or the single file inside it when the prefix named one object
    content_hash: str
    downloaded: bool  # False when the cache already held it


def _listing(store: Store, prefix: str) -> tuple[list[tuple[str, ObjectInfo]], bool]:
    """(relative key, info) of every object under the folder `prefix`, or of the one object named `prefix`."""
    if prefix:
        objects = [(o.key[len(prefix) + 1 :], o) for o in store.list(prefix + "/")]
        if objects:
            return objects, False
        single = [(o.key.rpartition("/")[2], o) for o in store.list(prefix) if o.key == prefix]
        return single, bool(single)
    return [(o.key, o) for o in store.list("")], False


def listing_digest(store_url: str, prefix: str, objects: list[tuple[str, ObjectInfo]]) -> str:
    lines = [f"{rel}\0{info.size}\0{info.etag}" for rel, info in sorted(objects, key=lambda item: item[0])]
    payload = json.dumps({"store": store_url, "prefix": prefix, "objects": lines}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _read_entry(index: Path) -> dict | None:
    try:
        entry = json.loads(index.read_text())
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get("content"), str) else None


def _located(content_dir: Path, single: str | None) -> Path:
    return content_dir / single if single else content_dir


def fetch_prefix(
    store: Store, prefix: str, cache_dir: Path, *, hash_cache: HashCache | None = None
) -> CachedPrefix | None:
    """Make the objects under `prefix` available locally; None when the prefix holds no object.

    The file digests computed for the content hash are recorded in `hash_cache` under their final paths, so
    fingerprinting the model right after a download does not read the files a second time.
    """
    prefix = prefix.strip("/")
    objects, is_single = _listing(store, prefix)
    if not objects:
        return None
    single = objects[0][0] if is_single else None
    root = Path(cache_dir) / "models"
    digest = listing_digest(store.url, prefix, objects)
    index = root / "by-listing" / digest
    entry = _read_entry(index)
    if entry is not None:
        content_dir = root / "by-content" / entry["content"]
        if content_dir.is_dir():
            return CachedPrefix(_located(content_dir, single), entry["content"], downloaded=False)

    tmp_root = root / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    tmp = tmp_root / secrets.token_hex(8)
    try:
        for rel, info in objects:
            store.download(info.key, tmp.joinpath(*rel.split("/")))
        digests = {rel: file_sha256(tmp.joinpath(*rel.split("/"))) for rel, _ in objects}
        content_hash = combine_digests(digests)
        content_dir = root / "by-content" / content_hash
        content_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, content_dir)
        except OSError:
            if not content_dir.is_dir():
                raise
            log.debug("content %s already cached; dropping the duplicate download", content_hash)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    if hash_cache is not None:
        for rel, digest in digests.items():
            hash_cache.put(content_dir.joinpath(*rel.split("/")), digest)
    record = {"content": content_hash, "store": store.url, "prefix": prefix, "single": single}
    write_text_atomic(index, json.dumps(record, sort_keys=True) + "\n")
    log.info("cached %s/%s as %s (%d objects)", store.url, prefix, content_hash[:12], len(objects))
    return CachedPrefix(_located(content_dir, single), content_hash, downloaded=True)
