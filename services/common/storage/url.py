"""`open_store(url)`: the one way services turn a configured store URL into a `Store`.

Two forms:
- `file:///abs/path` — a `LocalStore` rooted at that directory (created by `check()` or the first write);
- `s3://bucket[/prefix]` — an `S3Store`; every key lives under `prefix/`. The connection comes from the
  environment, read once here:

| variable               | meaning                                                  | default                        |
|------------------------|----------------------------------------------------------|--------------------------------|
| TISTUDIO_S3_ENDPOINT   | `host[:port]` or `http(s)://host[:port]`                 | `s3.amazonaws.com`             |
| TISTUDIO_S3_ACCESS_KEY | access key id (falls back to AWS_ACCESS_KEY_ID)          | none: anonymous requests       |
| TISTUDIO_S3_SECRET_KEY | secret key (falls back to AWS_SECRET_ACCESS_KEY)         |                                |
| TISTUDIO_S3_REGION     | bucket region                                            | asked of the server            |
| TISTUDIO_S3_SECURE     | `true`/`false`: https or http                            | false for `http://`, else true |
| TISTUDIO_S3_CA_BUNDLE  | PEM file of CAs to trust (a private MinIO's certificate) | the certifi bundle             |

Opening contacts nothing; call `check()` at start-up to fail fast on a wrong endpoint, bucket or credentials.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from services.common.errors import InvalidArgument
from services.common.storage.base import Store
from services.common.storage.keys import InvalidStorageKey, validate_prefix
from services.common.storage.local import LocalStore
from services.common.storage.s3 import S3Settings, S3Store

__all__ = ["open_store", "s3_settings_from_env"]

_FORMS = "'file:///absolute/path' or 's3://bucket/optional/prefix'"
# S3 bucket naming rules: 3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_ENDPOINT = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def open_store(url: str, env: Mapping[str, str] = os.environ) -> Store:
    """The store `url` names; raises `InvalidArgument` saying what to change when it is malformed."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return _open_local(url, parts.netloc, parts.path)
    if parts.scheme == "s3":
        return _open_s3(url, parts.netloc, parts.path, env)
    raise InvalidArgument(f"store URL {url!r} is not supported; use {_FORMS}", metadata={"url": url})


def s3_settings_from_env(env: Mapping[str, str]) -> S3Settings:
    """The S3 connection settings from TISTUDIO_S3_* (see the module docstring)."""
    endpoint = env.get("TISTUDIO_S3_ENDPOINT", "").strip() or S3Settings.endpoint
    scheme, _, host = endpoint.rpartition("://")
    if scheme not in ("", "http", "https") or not _ENDPOINT.fullmatch(host):
        raise InvalidArgument(
            f"TISTUDIO_S3_ENDPOINT={endpoint!r} is not an endpoint; give 'host:port' or 'http(s)://host:port' "
            "(no path), e.g. 'minio:9000'",
            metadata={"variable": "TISTUDIO_S3_ENDPOINT"},
        )
    secure = scheme != "http"
    flag = env.get("TISTUDIO_S3_SECURE", "").strip().lower()
    if flag:
        if flag not in _BOOLEANS:
            raise InvalidArgument(
                f"TISTUDIO_S3_SECURE={flag!r} is not a boolean; set it to 'true' (https) or 'false' (http)",
                metadata={"variable": "TISTUDIO_S3_SECURE"},
            )
        if scheme and _BOOLEANS[flag] != secure:
            raise InvalidArgument(
                f"TISTUDIO_S3_SECURE={flag!r} contradicts TISTUDIO_S3_ENDPOINT={endpoint!r}; drop one of them",
                metadata={"variable": "TISTUDIO_S3_SECURE"},
            )
        secure = _BOOLEANS[flag]
    access_key = env.get("TISTUDIO_S3_ACCESS_KEY") or env.get("AWS_ACCESS_KEY_ID") or None
    secret_key = env.get("TISTUDIO_S3_SECRET_KEY") or env.get("AWS_SECRET_ACCESS_KEY") or None
    if access_key and not secret_key:
        raise InvalidArgument(
            "an S3 access key is set but no secret key; set TISTUDIO_S3_SECRET_KEY (or AWS_SECRET_ACCESS_KEY)",
            metadata={"variable": "TISTUDIO_S3_SECRET_KEY"},
        )
    ca_bundle = env.get("TISTUDIO_S3_CA_BUNDLE") or None
    if ca_bundle is not None and not os.path.isfile(ca_bundle):
        raise InvalidArgument(
            f"TISTUDIO_S3_CA_BUNDLE={ca_bundle!r} is not a file; point it at a PEM file of CA certificates",
            metadata={"variable": "TISTUDIO_S3_CA_BUNDLE"},
        )
    return S3Settings(
        endpoint=host,
        secure=secure,
        access_key=access_key,
        secret_key=secret_key,
        region=env.get("TISTUDIO_S3_REGION") or None,
        ca_bundle=ca_bundle,
    )


def _open_local(url: str, host: str, path: str) -> LocalStore:
    if host not in ("", "localhost") or not path.startswith("/"):
        raise InvalidArgument(
            f"store URL {url!r} is not a local directory; write it as 'file:///absolute/path' (three slashes)",
            metadata={"url": url},
        )
    return LocalStore(unquote(path))


def _open_s3(url: str, netloc: str, path: str, env: Mapping[str, str]) -> S3Store:
    if "@" in netloc:
        raise InvalidArgument(
            "store URL must not carry credentials; set TISTUDIO_S3_ACCESS_KEY and TISTUDIO_S3_SECRET_KEY instead",
            metadata={"url": url.split("@")[-1]},
        )
    if not _BUCKET.fullmatch(netloc) or ".." in netloc:
        raise InvalidArgument(
            f"store URL {url!r} names the bucket {netloc!r}, which is not a valid S3 bucket name; use 3-63 "
            "lowercase letters, digits, '.' and '-', starting and ending with a letter or digit",
            metadata={"url": url},
        )
    prefix = unquote(path).lstrip("/")
    try:
        validate_prefix(prefix if prefix.endswith("/") or not prefix else prefix + "/")
    except InvalidStorageKey as exc:
        raise InvalidArgument(f"store URL {url!r} has an unusable prefix: {exc}", metadata={"url": url}) from None
    settings = s3_settings_from_env(env)
    try:
        return S3Store(netloc, prefix=prefix, settings=settings)
    except ValueError as exc:  # minio's own endpoint checks (e.g. a port out of range)
        raise InvalidArgument(
            f"TISTUDIO_S3_ENDPOINT={settings.endpoint!r} is not usable: {exc}; give 'host:port'",
            metadata={"variable": "TISTUDIO_S3_ENDPOINT"},
        ) from exc
