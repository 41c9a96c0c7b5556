"""Object storage behind one small interface: a local directory or an S3 bucket, chosen by URL.

    store = open_store("s3://tistudio/datasets")     # or "file:///var/lib/tistudio"
    store.check()                                    # at start-up: raises StoreUnavailable saying what to fix
    store.put("cats/001.png", data)
    for info in store.list("cats/"): ...

Both backends pass one contract suite (services/common/tests/test_storage_contract.py): atomic writes, chunked
reads, sorted recursive listing, idempotent delete, the same key rules (`keys`) and the same errors.
Wrap either in `RetryingStore` to wait out short outages (`StoreUnavailable`) instead of failing at once.
"""

from services.common.storage.base import KeyConflict, ObjectInfo, ObjectNotFound, Store, StoreUnavailable
from services.common.storage.keys import InvalidStorageKey, validate_key, validate_prefix
from services.common.storage.local import LocalStore
from services.common.storage.retrying import RetryingStore, RetryPolicy
from services.common.storage.s3 import S3Settings, S3Store
from services.common.storage.url import open_store, s3_settings_from_env

__all__ = [
    "Store",
    "ObjectInfo",
    "open_store",
    "validate_key",
    "validate_prefix",
    "InvalidStorageKey",
    "ObjectNotFound",
    "StoreUnavailable",
    "KeyConflict",
    "LocalStore",
    "S3Store",
    "S3Settings",
    "RetryingStore",
    "RetryPolicy",
    "s3_settings_from_env",
]
