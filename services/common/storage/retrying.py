"""`RetryingStore`: rides out short storage outages (an S3 restart, a network blip) instead of failing the job.

    store = RetryingStore(open_store(url), RetryPolicy.from_env(os.environ))
    store.put("cats/001.png", data)   # waits through up to TISTUDIO_STORE_PATIENCE_SECONDS of StoreUnavailable

Only `StoreUnavailable` is retried: it means the backend could not be reached, so trying again may work. Every
other error (`ObjectNotFound`, `KeyConflict`, a bad key) would fail the same way again and propagates at once.
Each wrapped primitive sleeps `first_delay`, doubling up to `max_delay`, between attempts, and gives up once
`patience_seconds` have passed since its first failure, re-raising a `StoreUnavailable` that says how long it
tried. What is and is not retried:

- a write whose source can seek (`put`, `put_file`) is replayed from where it started; a `put_stream` of an
  iterator cannot be replayed, so it fails at the first outage;
- a listing is read whole inside the retry (one that fails half way starts over), then returned;
- opening an object (`get`, `stream`, `download`) is retried; reading from an opened stream is not;
- `check()` is never retried: it is the probe that tells whether the store is back, so it answers at once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

from services.common.settings import EnvReader
from services.common.storage.base import ChunkStream, ObjectInfo, Store, StoreUnavailable

__all__ = ["RetryPolicy", "RetryingStore", "PATIENCE_ENV"]

PATIENCE_ENV = "TISTUDIO_STORE_PATIENCE_SECONDS"

_log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying a store that is unavailable, and how far apart the attempts are."""

    patience_seconds: float = 60.0  # give up this long after the first failure; 0 = never retry
    first_delay: float = 0.5  # seconds before the second attempt; doubles after each failure
    max_delay: float = 8.0  # the doubling stops here, so a long outage is still probed every few seconds

    def __post_init__(self) -> None:
        if not 0 <= self.patience_seconds < float("inf"):  # also rejects NaN
            raise ValueError(f"patience_seconds must be a number of seconds >= 0, got {self.patience_seconds}")
        if not 0 < self.first_delay <= self.max_delay < float("inf"):
            raise ValueError(
                f"need 0 < first_delay <= max_delay (seconds), got first_delay={self.first_delay}, "
                f"max_delay={self.max_delay}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> RetryPolicy:
        """The default policy with `patience_seconds` from TISTUDIO_STORE_PATIENCE_SECONDS when it is set."""
        patience = EnvReader(env).parse(PATIENCE_ENV, cls.patience_seconds, _seconds, "a number of seconds >= 0")
        return cls(patience_seconds=patience)


class RetryingStore(Store):
    """Wraps `inner`, retrying its primitives on `StoreUnavailable` as `policy` says (see the module docstring).

    `sleep` and `clock` are injectable for tests; `on_retry(operation, attempt, error)` is called before each
    sleep (operation is "write", "open", "stat", "list" or "delete"; attempt is the number of the attempt that
    just failed, from 1), for metrics. Each retry is also logged as a warning.
    """

    def __init__(
        self,
        inner: Store,
        policy: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, so one shared default is safe
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_retry: Callable[[str, int, StoreUnavailable], None] | None = None,
    ) -> None:
        self.inner = inner
        self.policy = policy
        self.url = inner.url
        self._sleep = sleep
        self._clock = clock
        self._on_retry = on_retry

    def check(self) -> None:
        """Probe the inner store exactly once: callers use this to learn whether it is back, so never wait here."""
        self.inner.check()

    # The primitives call the inner store's primitives: the public methods of this class already checked the key.

    def _write(self, key: str, source: BinaryIO, length: int | None, content_type: str | None) -> ObjectInfo:
        # put_stream hands over a reader without seekable(); an iterator already consumed cannot be read again.
        seekable = getattr(source, "seekable", None)
        if seekable is None or not seekable():
            return self.inner._write(key, source, length, content_type)
        start = source.tell()

        def attempt() -> ObjectInfo:
            source.seek(start)  # a failed attempt may have read part of the source
            return self.inner._write(key, source, length, content_type)

        return self._retry("write", attempt)

    def _open(self, key: str, chunk_size: int) -> tuple[ObjectInfo, ChunkStream]:
        return self._retry("open", lambda: self.inner._open(key, chunk_size))

    def _stat(self, key: str) -> ObjectInfo:
        return self._retry("stat", lambda: self.inner._stat(key))

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Read it all inside the retry: resuming a listing that broke half way could skip or repeat keys.
        return iter(self._retry("list", lambda: list(self.inner._list(prefix))))

    def _delete(self, key: str) -> None:
        self._retry("delete", lambda: self.inner._delete(key))

    def _retry(self, operation: str, call: Callable[[], T]) -> T:
        policy = self.policy
        delay = policy.first_delay
        attempt = 1
        first_failure: float | None = None
        while True:
            try:
                return call()
            except StoreUnavailable as exc:
                now = self._clock()
                if first_failure is None:
                    first_failure = now
                waited = now - first_failure
                if waited >= policy.patience_seconds:
                    raise self._gave_up(operation, attempt, waited, exc) from exc
                # Never sleep past the deadline: the last attempt comes when patience runs out, not after.
                pause = min(delay, policy.patience_seconds - waited)
                if self._on_retry is not None:
                    self._on_retry(operation, attempt, exc)
                _log.warning(
                    "store %s unavailable during %s (attempt %d), retrying in %.2f s: %s",
                    self.url,
                    operation,
                    attempt,
                    pause,
                    exc,
                    extra={"operation": operation, "attempt": attempt},
                )
                self._sleep(pause)
                delay = min(delay * 2, policy.max_delay)
                attempt += 1

    def _gave_up(self, operation: str, attempts: int, waited: float, last: StoreUnavailable) -> StoreUnavailable:
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        return StoreUnavailable(
            f"store {self.url} stayed unavailable during {operation} (gave up after {tries} over {waited:.1f} s; "
            f"{PATIENCE_ENV} sets how long to wait): {last.message}",
            metadata={**last.metadata, "store": self.url, "operation": operation, "attempts": attempts},
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r}, patience_seconds={self.policy.patience_seconds})"


def _seconds(raw: str) -> float:
    value = float(raw)
    if not 0 <= value < float("inf"):  # also rejects NaN
        raise ValueError(raw)
    return value
