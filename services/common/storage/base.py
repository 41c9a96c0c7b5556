"""The storage interface every service codes against, and the errors it raises.

`Store` validates keys and does the work that is the same on every backend (byte strings, iterators and local
files in; bytes, chunk iterators and atomically written files out). A backend implements six primitives:
`_write`, `_open`, `_stat`, `_list`, `_delete` and `check`.
"""

from __future__ import annotations

import io
import mimetypes
import os
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from services.common.errors import FailedPrecondition, NotFound, Unavailable
from services.common.storage.keys import validate_key, validate_prefix

__all__ = ["ObjectInfo", "Store", "ObjectNotFound", "StoreUnavailable", "KeyConflict", "write_new_file"]

DEFAULT_CHUNK_SIZE = 1 << 20


class ObjectNotFound(NotFound):
    reason = "OBJECT_NOT_FOUND"


class StoreUnavailable(Unavailable):
    reason = "STORE_UNAVAILABLE"


class KeyConflict(FailedPrecondition):
    """A local store cannot hold both an object "a" and objects under "a/" (S3 can); pick keys that avoid it."""

    reason = "STORAGE_KEY_CONFLICT"


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # relative to the store root
    size: int  # bytes
    # Changes whenever the content is replaced. S3: the ETag without quotes (an MD5 only for single-part uploads).
    # Local: f"{size:x}-{mtime_ns:x}", not a hash (hashing GB files on every stat is too slow); a same-size
    # rewrite within the filesystem's timestamp granularity (a few ms on ext4) can keep the same tag.
    etag: str
    last_modified: datetime  # timezone-aware UTC; S3 truncates to whole seconds


class ChunkStream(Iterator[bytes]):
    """An iterator of chunks that owns an open resource: exhausting, closing or dropping it releases that."""

    def __init__(self, chunks: Iterator[bytes], release: Callable[[], None]) -> None:
        self._chunks = chunks
        self._release: Callable[[], None] | None = release

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    def __enter__(self) -> ChunkStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class Store(ABC):
    """Objects under string keys (see `keys`). Thread-safe; every write is atomic (old or new, never partial)."""

    url: str  # the URL it was opened with, without credentials

    def put(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        validate_key(key)
        view = memoryview(data)
        return self._write(key, io.BytesIO(view), view.nbytes, content_type)

    def put_stream(self, key: str, chunks: Iterable[bytes], *, content_type: str | None = None) -> ObjectInfo:
        """Store the concatenated chunks. If `chunks` raises, the exception propagates and nothing changes."""
        validate_key(key)
        return self._write(key, _ChunkReader(chunks), None, content_type)

    def put_file(self, key: str, path: str | os.PathLike[str]) -> ObjectInfo:
        validate_key(key)
        content_type = mimetypes.guess_type(os.fspath(path))[0]
        with open(path, "rb") as source:
            return self._write(key, source, os.fstat(source.fileno()).st_size, content_type)

    def get(self, key: str) -> bytes:
        validate_key(key)
        _, chunks = self._open(key, DEFAULT_CHUNK_SIZE)
        with chunks:
            return b"".join(chunks)

    def stream(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """Chunks of at most `chunk_size` bytes, read as they are consumed.

        Opens eagerly: a missing key raises here, not on the first next(). To abandon the iterator midway, call its
        `close()` (or use it in a `with` block): that releases the file or connection at once rather than at GC.
        """
        validate_key(key)
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be a positive number of bytes, got {chunk_size}")
        return self._open(key, chunk_size)[1]

    def download(self, key: str, path: str | os.PathLike[str]) -> ObjectInfo:
        """Write the object to `path` (parent folders created): a temp file beside it, then an atomic rename.

        On any failure `path` keeps its previous content, if it had any.
        """
        validate_key(key)
        info, chunks = self._open(key, DEFAULT_CHUNK_SIZE)
        with chunks:
            target = os.path.abspath(path)
            folder, name = os.path.split(target)
            os.makedirs(folder, exist_ok=True)
            temp = os.path.join(folder, f".{name}.{secrets.token_hex(8)}.tistudio-part")
            write_new_file(temp, chunks)
            try:
                os.replace(temp, target)
            except BaseException:
                _remove_quietly(temp)
                raise
        return info

    def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        return self._stat(key)

    def exists(self, key: str) -> bool:
        validate_key(key)
        try:
            self._stat(key)
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, recursively, sorted by key ("a/" lists one folder)."""
        validate_prefix(prefix)
        return self._list(prefix)

    def delete(self, key: str) -> None:
        """Remove the object; a missing key is not an error."""
        validate_key(key)
        self._delete(key)

    @abstractmethod
    def check(self) -> None:
        """Probe that the store is reachable and usable; raise `StoreUnavailable` saying what to fix."""

    @abstractmethod
    def _write(self, key: str, source: BinaryIO, length: int | None, content_type: str | None) -> ObjectInfo:
        """Atomically store everything `source.read()` returns (`length` bytes, None when unknown)."""

    @abstractmethod
    def _open(self, key: str, chunk_size: int) -> tuple[ObjectInfo, ChunkStream]:
        """The object's info and its content, read lazily; raise `ObjectNotFound` before returning."""

    @abstractmethod
    def _stat(self, key: str) -> ObjectInfo: ...

    @abstractmethod
    def _list(self, prefix: str) -> Iterator[ObjectInfo]: ...

    @abstractmethod
    def _delete(self, key: str) -> None: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


def write_new_file(path: str, chunks: Iterable[bytes]) -> os.stat_result:
    """Create `path` (which must not exist), write and fsync the chunks, return its stat; remove it on failure.

    Created with mode 0o666 so the process umask applies, like any ordinary file.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with open(fd, "wb") as file:
            for chunk in chunks:
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
            return os.fstat(file.fileno())
    except BaseException:
        _remove_quietly(path)
        raise


def _remove_quietly(path: str) -> None:
    with suppress(FileNotFoundError):
        os.remove(path)


class _ChunkReader:
    """A read()-able view of an iterator of byte chunks, for backends that pull data (minio)."""

    _END = object()

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = bytearray()

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, self._END)
            if chunk is self._END:
                break
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise TypeError(f"put_stream chunks must be bytes, got {type(chunk).__name__}")
            self._buffer += chunk
        size = len(self._buffer) if size < 0 else min(size, len(self._buffer))
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data
