"""Store writes that ride out an outage: while the store is away, puts wait in memory (the newest content per key)
and `flush` writes them once it is back. Job records and event segments use it, so a job can still change state
(e.g. to PAUSED because the store went away) and say so while nothing can be made durable. Not thread-safe: the
owner calls it under its own lock."""

from __future__ import annotations

import logging

from services.common.storage import Store, StoreUnavailable

__all__ = ["WriteBehind"]

log = logging.getLogger(__name__)


class WriteBehind:
    def __init__(self, store: Store, content_type: str) -> None:
        self.store = store
        self._content_type = content_type
        self._unwritten: dict[str, bytes] = {}  # key -> content not yet in the store

    def put(self, key: str, data: bytes) -> None:
        if self._unwritten:  # the store is known to be away: do not wait out its retries once per write
            self._unwritten[key] = data
            return
        try:
            self.store.put(key, data, content_type=self._content_type)
        except StoreUnavailable as away:
            log.warning("store unavailable; write kept in memory", extra={"key": key, "error": away.message})
            self._unwritten[key] = data

    def flush(self) -> None:
        """Write what waited; raises StoreUnavailable if the store is still away."""
        for key, data in list(self._unwritten.items()):
            self.store.put(key, data, content_type=self._content_type)
            del self._unwritten[key]
