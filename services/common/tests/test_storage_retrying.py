"""`RetryingStore` over a real LocalStore that fails on demand, with an injected clock so no test really waits.

The contract suite (test_storage_contract.py) also runs every contract test through a RetryingStore; the last
test here points one at an S3 endpoint where nothing listens, with real sleeps.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from services.common.errors import InvalidArgument
from services.common.storage import (
    KeyConflict,
    LocalStore,
    ObjectInfo,
    ObjectNotFound,
    RetryingStore,
    RetryPolicy,
    StoreUnavailable,
    open_store,
)
from services.common.storage.base import ChunkStream


class FlakyStore(LocalStore):
    """A LocalStore whose primitives raise StoreUnavailable for their first `fail_first` calls, or while `down`.

    A failing write first reads a few bytes of its source, as a network backend that dies mid-upload would.
    """

    def __init__(self, root: Path, *, fail_first: int = 0) -> None:
        super().__init__(root)
        self.fail_first = fail_first
        self.down = False
        self.calls: Counter[str] = Counter()

    def _maybe_fail(self, operation: str) -> None:
        self.calls[operation] += 1
        if self.down or self.fail_first > 0:
            self.fail_first = max(self.fail_first - 1, 0)
            raise StoreUnavailable(f"flaky backend is down during {operation}; wait for it")

    def check(self) -> None:
        self._maybe_fail("check")
        super().check()

    def _write(self, key: str, source: BinaryIO, length: int | None, content_type: str | None) -> ObjectInfo:
        if self.down or self.fail_first > 0:
            source.read(3)
        self._maybe_fail("write")
        return super()._write(key, source, length, content_type)

    def _open(self, key: str, chunk_size: int) -> tuple[ObjectInfo, ChunkStream]:
        self._maybe_fail("open")
        return super()._open(key, chunk_size)

    def _stat(self, key: str) -> ObjectInfo:
        self._maybe_fail("stat")
        return super()._stat(key)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        self._maybe_fail("list")
        return super()._list(prefix)

    def _delete(self, key: str) -> None:
        self._maybe_fail("delete")
        super()._delete(key)


class FakeTime:
    """A clock that only moves when something sleeps on it; records every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def flaky(tmp_path: Path) -> FlakyStore:
    return FlakyStore(tmp_path / "store")


def retrying(inner: LocalStore, fake_time: FakeTime, policy: RetryPolicy = RetryPolicy(), **kwargs) -> RetryingStore:  # noqa: B008
    return RetryingStore(inner, policy, sleep=fake_time.sleep, clock=fake_time.clock, **kwargs)


def test_put_that_fails_twice_is_replayed_from_the_start(flaky: FlakyStore, fake_time: FakeTime) -> None:
    store = retrying(flaky, fake_time)
    flaky.fail_first = 2
    info = store.put("cats/001.png", b"the whole image")
    assert fake_time.sleeps == [0.5, 1.0]
    assert flaky.calls["write"] == 3
    assert store.get("cats/001.png") == b"the whole image"  # not missing the bytes the failed attempts read
    assert info.size == 15


def test_put_file_is_replayed_too(flaky: FlakyStore, fake_time: FakeTime, tmp_path: Path) -> None:
    source = tmp_path / "weights.bin"
    source.write_bytes(b"0123456789")
    flaky.fail_first = 1
    retrying(flaky, fake_time).put_file("weights.bin", source)
    assert fake_time.sleeps == [0.5]
    assert flaky.get("weights.bin") == b"0123456789"


def test_gives_up_after_patience_saying_how_long_it_tried(flaky: FlakyStore, fake_time: FakeTime) -> None:
    policy = RetryPolicy(patience_seconds=10.0, first_delay=0.5, max_delay=4.0)
    store = retrying(flaky, fake_time, policy)
    flaky.down = True
    with pytest.raises(StoreUnavailable) as caught:
        store.stat("a.txt")
    message = str(caught.value)
    attempts = flaky.calls["stat"]
    assert attempts > 1 and f"gave up after {attempts} attempts over 10.0 s" in message
    assert "TISTUDIO_STORE_PATIENCE_SECONDS" in message and "flaky backend is down during stat" in message
    assert caught.value.reason == "STORE_UNAVAILABLE"
    assert isinstance(caught.value.__cause__, StoreUnavailable)
    assert fake_time.sleeps[:4] == [0.5, 1.0, 2.0, 4.0] and max(fake_time.sleeps) <= policy.max_delay
    assert sum(fake_time.sleeps) <= policy.patience_seconds + policy.max_delay
    assert len(fake_time.sleeps) == attempts - 1  # no sleep after the last attempt


def test_zero_patience_tries_once(flaky: FlakyStore, fake_time: FakeTime) -> None:
    flaky.down = True
    with pytest.raises(StoreUnavailable, match="gave up after 1 attempt over 0.0 s"):
        retrying(flaky, fake_time, RetryPolicy(patience_seconds=0)).delete("a.txt")
    assert flaky.calls["delete"] == 1 and fake_time.sleeps == []


def test_put_stream_cannot_be_replayed_so_is_not_retried(flaky: FlakyStore, fake_time: FakeTime) -> None:
    flaky.fail_first = 1

    def chunks() -> Iterator[bytes]:
        yield b"generated "
        yield b"once"

    with pytest.raises(StoreUnavailable, match="flaky backend is down during write"):
        retrying(flaky, fake_time).put_stream("stream.bin", chunks())
    assert flaky.calls["write"] == 1 and fake_time.sleeps == []
    assert not flaky.exists("stream.bin")


def test_other_errors_are_never_retried(flaky: FlakyStore, fake_time: FakeTime) -> None:
    store = retrying(flaky, fake_time)
    with pytest.raises(ObjectNotFound):
        store.get("missing.txt")
    with pytest.raises(ObjectNotFound):
        store.stat("missing.txt")
    store.put("a", b"object")
    with pytest.raises(KeyConflict):
        store.put("a/b", b"under it")
    assert fake_time.sleeps == []
    assert (flaky.calls["open"], flaky.calls["stat"], flaky.calls["write"]) == (1, 1, 2)


def test_listing_that_fails_midway_is_retried_whole(flaky: FlakyStore, fake_time: FakeTime) -> None:
    keys = ["b.txt", "a/x.txt", "a-b.txt", "a/y/z.txt"]
    for key in keys:
        flaky.put(key, key.encode())
    failed = False
    complete = LocalStore._list

    def half_then_fail(self: FlakyStore, prefix: str) -> Iterator[ObjectInfo]:
        nonlocal failed
        listing = complete(self, prefix)
        yield next(listing)
        if not failed:
            failed = True
            raise StoreUnavailable("connection dropped mid-listing")
        yield from listing

    flaky._list = half_then_fail.__get__(flaky)  # type: ignore[method-assign]
    listed = list(retrying(flaky, fake_time).list())
    assert [info.key for info in listed] == sorted(keys)
    assert fake_time.sleeps == [0.5]


def test_open_is_retried(flaky: FlakyStore, fake_time: FakeTime, tmp_path: Path) -> None:
    flaky.put("model.bin", b"weights")
    store = retrying(flaky, fake_time)
    flaky.fail_first = 1
    assert store.get("model.bin") == b"weights"
    flaky.fail_first = 1
    assert b"".join(store.stream("model.bin", 2)) == b"weights"
    flaky.fail_first = 1
    store.download("model.bin", tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == b"weights"
    assert fake_time.sleeps == [0.5, 0.5, 0.5]


def test_check_is_the_probe_and_tries_once(flaky: FlakyStore, fake_time: FakeTime) -> None:
    store = retrying(flaky, fake_time)
    flaky.down = True
    with pytest.raises(StoreUnavailable, match="flaky backend is down during check"):
        store.check()
    assert flaky.calls["check"] == 1 and fake_time.sleeps == []
    flaky.down = False
    store.check()


def test_on_retry_and_log_see_every_retry(
    flaky: FlakyStore, fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[str, int, str]] = []
    store = retrying(flaky, fake_time, on_retry=lambda op, attempt, exc: seen.append((op, attempt, str(exc))))
    flaky.fail_first = 2
    with caplog.at_level(logging.WARNING, logger="services.common.storage.retrying"):
        assert not store.exists("a.txt")
    assert [(op, attempt) for op, attempt, _ in seen] == [("stat", 1), ("stat", 2)]
    assert all("flaky backend is down" in message for _, _, message in seen)
    assert [(r.operation, r.attempt) for r in caplog.records] == [("stat", 1), ("stat", 2)]  # type: ignore[attr-defined]


def test_wrapper_shows_and_exposes_the_inner_store(flaky: FlakyStore) -> None:
    store = RetryingStore(flaky)
    assert store.inner is flaky and store.url == flaky.url
    assert repr(flaky) in repr(store) and "RetryingStore" in repr(store)


def test_policy_from_env() -> None:
    assert RetryPolicy.from_env({}) == RetryPolicy()
    assert RetryPolicy.from_env({"TISTUDIO_STORE_PATIENCE_SECONDS": " 2.5 "}).patience_seconds == 2.5
    assert RetryPolicy.from_env({"TISTUDIO_STORE_PATIENCE_SECONDS": "0"}).patience_seconds == 0
    for bad in ("-1", "soon", "nan", "inf"):
        with pytest.raises(InvalidArgument, match=f"TISTUDIO_STORE_PATIENCE_SECONDS='{bad}'.*seconds >= 0"):
            RetryPolicy.from_env({"TISTUDIO_STORE_PATIENCE_SECONDS": bad})


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="patience_seconds"):
        RetryPolicy(patience_seconds=-1)
    with pytest.raises(ValueError, match="first_delay <= max_delay"):
        RetryPolicy(first_delay=10, max_delay=1)
    with pytest.raises(ValueError, match="first_delay"):
        RetryPolicy(first_delay=0)


@pytest.mark.s3
def test_unreachable_s3_endpoint_is_retried_then_given_up() -> None:
    # minio's urllib3 pool already retries a refused connection 3 times (about 1.2 s): two attempts take ~2.7 s.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"TISTUDIO_S3_ENDPOINT": f"http://127.0.0.1:{port}", "TISTUDIO_S3_REGION": "us-east-1"}
    env |= {"TISTUDIO_S3_ACCESS_KEY": "k", "TISTUDIO_S3_SECRET_KEY": "s"}
    attempts: list[int] = []
    store = RetryingStore(
        open_store("s3://tistudio-nowhere", env=env),
        RetryPolicy(patience_seconds=0.3, first_delay=0.1, max_delay=0.2),
        on_retry=lambda op, attempt, exc: attempts.append(attempt),
    )
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        store.stat("a.txt")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert attempts and "gave up after" in message and "attempts" in message
    assert f"127.0.0.1:{port}" in message and "TISTUDIO_S3_ENDPOINT" in message
