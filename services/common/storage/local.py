"""`LocalStore`: objects as files under one directory (a dev box, a test, or a shared POSIX volume).

A key maps to the file `root/key`. A write goes to a uniquely named temp file in `root/.tistudio-tmp/` (same
filesystem, so the final rename is atomic), is fsynced, then `os.replace`d over the target; the parent folder is
fsynced too so the rename survives a crash. Readers that opened the old file keep reading it. Names starting
with "." are never keys, so the temp folder never shows in `list()`. The root is created on first write or by
`check()`. Content types are not kept (a filesystem has nowhere to put them).
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from services.common.storage.base import (
    ChunkStream,
    KeyConflict,
    ObjectInfo,
    ObjectNotFound,
    Store,
    StoreUnavailable,
    write_new_file,
)
from services.common.storage.keys import is_valid_key

__all__ = ["LocalStore", "TEMP_DIR_NAME"]

TEMP_DIR_NAME = ".tistudio-tmp"
_COPY_CHUNK = 1 << 20
# A concurrent delete prunes empty folders, which can remove the one a write just created: retry that write.
_RENAME_ATTEMPTS = 5
_NOT_AN_OBJECT = (FileNotFoundError, NotADirectoryError, IsADirectoryError)


class LocalStore(Store):
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(root)
        self.url = Path(self.root).as_uri()
        self._temp_dir = os.path.join(self.root, TEMP_DIR_NAME)

    def check(self) -> None:
        """Create the root if missing and prove it is writable by writing and removing a probe file."""
        try:
            os.makedirs(self._temp_dir, exist_ok=True)
            probe = os.path.join(self._temp_dir, f"check-{secrets.token_hex(8)}")
            write_new_file(probe, [b"ok"])
            os.remove(probe)
        except OSError as exc:
            raise self._unavailable(exc) from exc

    def _write(self, key: str, source: BinaryIO, length: int | None, content_type: str | None) -> ObjectInfo:
        try:
            os.makedirs(self._temp_dir, exist_ok=True)
        except OSError as exc:
            raise self._unavailable(exc) from exc
        temp = os.path.join(self._temp_dir, secrets.token_hex(16))
        written = write_new_file(temp, iter(lambda: source.read(_COPY_CHUNK), b""))
        target = self._path(key)
        try:
            self._rename_into_place(key, temp, target)
        except BaseException:
            with suppress(FileNotFoundError):
                os.remove(temp)
            raise
        # The rename keeps the temp file's inode, hence its size and mtime: this describes what we wrote.
        return self._info(key, written)

    def _rename_into_place(self, key: str, temp: str, target: str) -> None:
        folder = os.path.dirname(target)
        for attempt in range(_RENAME_ATTEMPTS):
            try:
                os.makedirs(folder, exist_ok=True)
                os.replace(temp, target)
                break
            except FileNotFoundError:
                if attempt == _RENAME_ATTEMPTS - 1:
                    raise
            except OSError as exc:
                if exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.ENOTEMPTY):
                    raise self._conflict(key) from exc
                raise
        _fsync_dir(folder)

    def _open(self, key: str, chunk_size: int) -> tuple[ObjectInfo, ChunkStream]:
        try:
            file = open(self._path(key), "rb")  # closed by the ChunkStream that owns it
        except _NOT_AN_OBJECT:
            raise self._not_found(key) from None
        info = self._info(key, os.fstat(file.fileno()))
        return info, ChunkStream(iter(lambda: file.read(chunk_size), b""), file.close)

    def _stat(self, key: str) -> ObjectInfo:
        try:
            st = os.stat(self._path(key))
        except _NOT_AN_OBJECT:
            raise self._not_found(key) from None
        if not stat.S_ISREG(st.st_mode):
            raise self._not_found(key)
        return self._info(key, st)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Sort the full keys rather than walking in order: "a-b" sorts before "a/b" ('-' < '/'), as on S3.
        folder = prefix.rpartition("/")[0]
        keys = []
        for dirpath, dirnames, filenames in os.walk(os.path.join(self.root, folder)):
            relative = os.path.relpath(dirpath, self.root)
            base = "" if relative == "." else relative.replace(os.sep, "/") + "/"
            dirnames[:] = [d for d in dirnames if _may_hold(base + d + "/", prefix)]
            keys.extend(base + name for name in filenames if (base + name).startswith(prefix))
        for key in sorted(k for k in keys if is_valid_key(k)):
            try:
                yield self._stat(key)
            except ObjectNotFound:
                continue  # deleted since the walk

    def _delete(self, key: str) -> None:
        path = self._path(key)
        try:
            os.remove(path)
        except _NOT_AN_OBJECT:
            return
        # Prune folders left empty, so a deleted dataset leaves no tree of empty directories behind.
        folder = os.path.dirname(path)
        while folder != self.root:
            try:
                os.rmdir(folder)
            except OSError:
                break
            folder = os.path.dirname(folder)

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *key.split("/"))

    @staticmethod
    def _info(key: str, st: os.stat_result) -> ObjectInfo:
        modified = datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=UTC)
        return ObjectInfo(key=key, size=st.st_size, etag=f"{st.st_size:x}-{st.st_mtime_ns:x}", last_modified=modified)

    def _not_found(self, key: str) -> ObjectNotFound:
        return ObjectNotFound(
            f"object {key!r} does not exist in store {self.url}; check the key (list the store to see what it holds)",
            metadata={"key": key, "store": self.url},
        )

    def _conflict(self, key: str) -> KeyConflict:
        return KeyConflict(
            f"cannot store {key!r} in {self.url}: a local store cannot hold both an object and a folder of the same "
            "name (e.g. 'a' and 'a/b'); rename one of them",
            metadata={"key": key, "store": self.url},
        )

    def _unavailable(self, exc: OSError) -> StoreUnavailable:
        return StoreUnavailable(
            f"local store {self.url} is unavailable: {self.root} is not a writable directory ({exc.strerror}); "
            "point the store URL at a writable directory or fix its permissions",
            metadata={"store": self.url, "directory": self.root},
        )


def _may_hold(folder: str, prefix: str) -> bool:
    """Whether keys under `folder` ("a/b/") can start with `prefix`; hidden folders (the temp dir) never do."""
    name = folder.rstrip("/").rpartition("/")[2]
    return not name.startswith(".") and (folder.startswith(prefix) or prefix.startswith(folder))


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return  # pruned by a concurrent delete of the object we just wrote: nothing left to make durable
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
