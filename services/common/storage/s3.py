"""`S3Store`: objects in an S3-protocol bucket (AWS S3, MinIO, moto in tests), through the minio client.

Writes are atomic because S3 only shows an object once its single PUT or its multipart upload completes. An
upload of unknown length (`put_stream`) is multipart in `part_size` pieces; when the source raises, minio aborts
the upload before re-raising, so no part lingers. Uploads run one part at a time: minio's parallel mode buffers
several parts and, when the source fails, leaves its worker threads waiting and may abort while a part is still
in flight. (An upload killed by KeyboardInterrupt or a crash is never visible but keeps its parts until a bucket
lifecycle rule for incomplete multipart uploads removes them; production buckets should have one.)

Every key is stored under the store's prefix (`s3://bucket/prefix/` -> object `prefix/key`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import BinaryIO

import certifi
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError
from urllib3.exceptions import HTTPError, MaxRetryError, SSLError

from services.common.storage.base import ChunkStream, ObjectInfo, ObjectNotFound, Store, StoreUnavailable
from services.common.storage.keys import MAX_KEY_BYTES, InvalidStorageKey, is_valid_key

__all__ = ["S3Settings", "S3Store", "DEFAULT_PART_SIZE"]

DEFAULT_PART_SIZE = 16 << 20  # 16 MiB parts: a streamed upload may reach 160 GB (S3 allows 10,000 parts)
_MIN_PART_SIZE, _MAX_PART_SIZE, _MAX_PARTS = 5 << 20, 5 << 30, 10_000
# Connection refused fails fast; a stalled server is given up on after the read timeout, per socket read.
_CONNECT_TIMEOUT_S, _READ_TIMEOUT_S, _RETRIES = 10.0, 120.0, 3
_POOL_SIZE = 32  # connections kept per host; stores are shared by many threads

_CREDENTIALS_HINT = (
    "check TISTUDIO_S3_ACCESS_KEY / TISTUDIO_S3_SECRET_KEY (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) "
    "and that they may read and write the bucket"
)
_REGION_HINT = "set TISTUDIO_S3_REGION to the bucket's region"
_HINTS = {
    "NoSuchBucket": "create the bucket or correct its name in the store URL",
    "AccessDenied": _CREDENTIALS_HINT,
    "InvalidAccessKeyId": _CREDENTIALS_HINT,
    "SignatureDoesNotMatch": _CREDENTIALS_HINT,
    "ExpiredToken": _CREDENTIALS_HINT,
    "InvalidToken": _CREDENTIALS_HINT,
    "AuthorizationHeaderMalformed": _REGION_HINT,
    "PermanentRedirect": _REGION_HINT,
    "Redirect": _REGION_HINT,
}
_CONNECT_HINT = "check TISTUDIO_S3_ENDPOINT and TISTUDIO_S3_SECURE (http or https) and that the server is running"
_TLS_HINT = "check TISTUDIO_S3_SECURE and, for a private CA, TISTUDIO_S3_CA_BUNDLE"


@dataclass(frozen=True)
class S3Settings:
    endpoint: str = "s3.amazonaws.com"  # host or host:port, no scheme
    secure: bool = True  # https
    access_key: str | None = None  # None: anonymous requests
    secret_key: str | None = field(default=None, repr=False)
    region: str | None = None  # None: asked of the server once per bucket
    ca_bundle: str | None = None  # PEM file of CAs to trust for https; None: the certifi bundle

    @property
    def endpoint_url(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.endpoint}"


class S3Store(Store):
    def __init__(
        self, bucket: str, *, prefix: str = "", settings: S3Settings, part_size: int = DEFAULT_PART_SIZE
    ) -> None:
        if not _MIN_PART_SIZE <= part_size <= _MAX_PART_SIZE:
            raise ValueError(f"part_size must be between 5 MiB and 5 GiB (the S3 limits), got {part_size}")
        self.bucket = bucket
        self.prefix = prefix.rstrip("/") + "/" if prefix else ""
        self.settings = settings
        self.url = f"s3://{bucket}/{self.prefix}"
        self._part_size = part_size
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=_CONNECT_TIMEOUT_S, read=_READ_TIMEOUT_S),
            maxsize=_POOL_SIZE,
            cert_reqs="CERT_REQUIRED",
            ca_certs=settings.ca_bundle or certifi.where(),
            retries=urllib3.Retry(total=_RETRIES, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        self._client = Minio(
            settings.endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            secure=settings.secure,
            region=settings.region,
            http_client=http,
        )

    def check(self) -> None:
        """Raise `StoreUnavailable` unless the endpoint answers and the bucket exists and is accessible."""
        with self._translate():
            found = self._client.bucket_exists(self.bucket)
        if not found:
            raise self._unavailable(f"bucket {self.bucket!r} does not exist", _HINTS["NoSuchBucket"])

    def _write(self, key: str, source: BinaryIO, length: int | None, content_type: str | None) -> ObjectInfo:
        if length is None:
            size, part_size = -1, self._part_size
        else:  # minio sizes the parts itself (0) when ours would make more than S3 allows
            size, part_size = length, self._part_size if math.ceil(length / self._part_size) <= _MAX_PARTS else 0
        with self._translate():
            self._client.put_object(
                self.bucket,
                self._object_name(key),
                source,
                size,
                content_type=content_type or "application/octet-stream",
                part_size=part_size,
                num_parallel_uploads=1,
            )
        # One more request, so the info matches what stat() and list() report for this object.
        return self._stat(key)

    def _open(self, key: str, chunk_size: int) -> tuple[ObjectInfo, ChunkStream]:
        with self._translate(key):
            response = self._client.get_object(self.bucket, self._object_name(key))

        def chunks() -> Iterator[bytes]:
            with self._translate(key):
                # decode_content=False: return the stored bytes even if the object has a Content-Encoding.
                yield from response.stream(chunk_size, decode_content=False)

        def release() -> None:
            response.close()
            response.release_conn()

        content = ChunkStream(chunks(), release)  # owns the connection from here on, even if the headers are bad
        headers = response.headers
        info = ObjectInfo(
            key=key,
            size=int(headers["content-length"]),
            etag=headers.get("etag", "").strip('"'),
            last_modified=parsedate_to_datetime(headers["last-modified"]),
        )
        return info, content

    def _stat(self, key: str) -> ObjectInfo:
        with self._translate(key):
            found = self._client.stat_object(self.bucket, self._object_name(key))
        return ObjectInfo(key=key, size=found.size or 0, etag=found.etag or "", last_modified=found.last_modified)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        # S3 lists in UTF-8 byte order, which is code point order: the same order as sorted() on str.
        with self._translate():
            for found in self._client.list_objects(self.bucket, prefix=self.prefix + prefix, recursive=True):
                key = found.object_name[len(self.prefix) :]
                if found.is_dir or not is_valid_key(key):
                    continue  # a folder marker or a name written by another tool
                yield ObjectInfo(
                    key=key,
                    size=found.size or 0,
                    etag=found.etag or "",
                    last_modified=found.last_modified.replace(microsecond=0),  # as HEAD reports it
                )

    def _delete(self, key: str) -> None:
        with self._translate():
            self._client.remove_object(self.bucket, self._object_name(key))

    def _object_name(self, key: str) -> str:
        name = self.prefix + key
        if len(name.encode("utf-8")) > MAX_KEY_BYTES:
            raise InvalidStorageKey(
                f"storage key {key!r} is too long for {self.url}: with the store prefix it exceeds "
                f"{MAX_KEY_BYTES} UTF-8 bytes; shorten the key",
                metadata={"key": key, "store": self.url},
            )
        return name

    @contextmanager
    def _translate(self, key: str | None = None) -> Iterator[None]:
        """Turn minio and urllib3 failures into the storage errors; unexpected S3 error codes propagate."""
        try:
            yield
        except S3Error as exc:
            if exc.code == "NoSuchKey" and key is not None:
                raise ObjectNotFound(
                    f"object {key!r} does not exist in store {self.url} (endpoint {self.settings.endpoint_url}); "
                    "check the key (list the store to see what it holds)",
                    metadata={"key": key, "store": self.url},
                ) from None
            if exc.code not in _HINTS:
                raise
            what = f"bucket {self.bucket!r} does not exist" if exc.code == "NoSuchBucket" else f"{exc.code}"
            raise self._unavailable(what, _HINTS[exc.code]) from exc
        except (HTTPError, ServerError, InvalidResponseError) as exc:
            cause = exc.reason if isinstance(exc, MaxRetryError) and exc.reason is not None else exc
            hint = _TLS_HINT if isinstance(cause, SSLError) else _CONNECT_HINT
            raise self._unavailable(f"cannot talk to the endpoint ({_describe(cause)})", hint) from exc

    def _unavailable(self, what: str, hint: str) -> StoreUnavailable:
        return StoreUnavailable(
            f"S3 store {self.url} (bucket {self.bucket!r} at endpoint {self.settings.endpoint_url}) is unavailable: "
            f"{what}; {hint}",
            metadata={"store": self.url, "bucket": self.bucket, "endpoint": self.settings.endpoint_url},
        )


def _describe(exc: BaseException) -> str:
    """The most specific words for a network failure: the OS error under urllib3's wrappers when there is one."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    return f"{type(exc).__name__}: {exc}"
