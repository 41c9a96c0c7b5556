"""One contract, two backends: every test taking `store` runs on a local directory and on S3 (moto on loopback),
and once more on a local directory behind `RetryingStore`, which must not change what the contract sees.

Backend-specific checks (unreachable endpoints, missing buckets, multipart aborts, files in the way) follow the
contract; the parsing of store URLs and S3 settings is in test_storage_url.py.
"""

from __future__ import annotations

import os
import random
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path

import pytest

from services.common.storage import (
    InvalidStorageKey,
    KeyConflict,
    LocalStore,
    ObjectNotFound,
    RetryingStore,
    S3Store,
    Store,
    StoreUnavailable,
    open_store,
    s3_settings_from_env,
)
from services.common.storage.local import TEMP_DIR_NAME
from services.common.testing.s3_fixtures import S3Endpoint, S3StoreURL


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3), "retrying-local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        opened = open_store((tmp_path / "store").as_uri())
    elif request.param == "retrying-local":
        opened = RetryingStore(open_store((tmp_path / "store").as_uri()))
    else:
        target: S3StoreURL = request.getfixturevalue("s3_store_url")
        opened = open_store(target.url, env=target.env)
    opened.check()
    return opened


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


class Boom(Exception):
    pass


def failing_chunks(first: bytes) -> Iterator[bytes]:
    yield first
    raise Boom("the source failed midway")


def assert_no_temp_residue(store: Store) -> None:
    store = store.inner if isinstance(store, RetryingStore) else store
    if isinstance(store, LocalStore):
        temp_dir = Path(store.root, TEMP_DIR_NAME)
        assert not temp_dir.exists() or list(temp_dir.iterdir()) == []


# --- the contract ---------------------------------------------------------------------------------------------


def test_round_trip(store: Store) -> None:
    info = store.put("models/embedding.safetensors", b"weights", content_type="application/octet-stream")
    assert (info.key, info.size) == ("models/embedding.safetensors", 7)
    assert info.etag
    assert info.last_modified.tzinfo is not None and info.last_modified.utcoffset() == UTC.utcoffset(None)
    assert store.get("models/embedding.safetensors") == b"weights"
    assert store.stat("models/embedding.safetensors") == info
    assert store.exists("models/embedding.safetensors")
    assert [found.key for found in store.list()] == ["models/embedding.safetensors"]
    store.delete("models/embedding.safetensors")
    assert not store.exists("models/embedding.safetensors")
    assert list(store.list()) == []


def test_put_overwrites(store: Store) -> None:
    first = store.put("a.txt", b"first version")
    second = store.put("a.txt", b"second, longer version")
    assert store.get("a.txt") == b"second, longer version"
    assert second.size == 22 and second.etag != first.etag
    assert store.stat("a.txt") == second


def test_empty_object(store: Store) -> None:
    assert store.put("empty", b"").size == 0
    assert store.get("empty") == b""
    assert list(store.stream("empty")) == []
    assert store.put_stream("empty-stream", iter([])).size == 0


def test_put_stream_concatenates_any_bytes_like_chunks(store: Store) -> None:
    info = store.put_stream("s.bin", [b"ab", bytearray(b"cd"), b"", memoryview(b"ef")])
    assert info.size == 6
    assert store.get("s.bin") == b"abcdef"


def test_failed_put_stream_leaves_the_old_object(store: Store) -> None:
    old = store.put("data/weights.bin", b"old content")
    with pytest.raises(Boom):
        store.put_stream("data/weights.bin", failing_chunks(payload(300_000)))
    assert store.get("data/weights.bin") == b"old content"
    assert list(store.list()) == [old]
    assert_no_temp_residue(store)


def test_failed_put_stream_creates_nothing(store: Store) -> None:
    with pytest.raises(Boom):
        store.put_stream("new/object.bin", failing_chunks(b"partial"))
    assert not store.exists("new/object.bin")
    assert list(store.list()) == []
    assert_no_temp_residue(store)


def test_put_file_and_download(store: Store, tmp_path: Path) -> None:
    source = tmp_path / "source.png"
    source.write_bytes(payload(70_000))
    info = store.put_file("images/cat.png", source)
    assert info.size == 70_000

    target = tmp_path / "out" / "deeper" / "cat.png"
    assert store.download("images/cat.png", target) == store.stat("images/cat.png")
    assert target.read_bytes() == source.read_bytes()

    store.put("images/cat.png", b"replaced")
    store.download("images/cat.png", target)
    assert target.read_bytes() == b"replaced"
    assert os.listdir(target.parent) == ["cat.png"]


def test_failed_download_leaves_the_target_untouched(store: Store, tmp_path: Path) -> None:
    target = tmp_path / "downloads" / "keep.txt"
    target.parent.mkdir()
    target.write_bytes(b"precious")
    with pytest.raises(ObjectNotFound):
        store.download("missing.txt", target)
    assert target.read_bytes() == b"precious"
    assert os.listdir(target.parent) == ["keep.txt"]


def test_stream_yields_bounded_chunks(store: Store) -> None:
    data = payload(5 * 1024 * 1024 + 123, seed=1)
    store.put("big.bin", data)
    chunks = list(store.stream("big.bin", chunk_size=1 << 20))
    assert len(chunks) >= 6
    assert all(0 < len(chunk) <= 1 << 20 for chunk in chunks)
    assert b"".join(chunks) == data


def test_stream_abandoned_midway_releases_the_object(store: Store) -> None:
    store.put("big.bin", payload(3 * 1024 * 1024))
    for _ in range(3):
        chunks = store.stream("big.bin", chunk_size=64 * 1024)
        assert len(next(chunks)) == 64 * 1024
        chunks.close()  # type: ignore[attr-defined]
    store.put("big.bin", b"still writable and readable")
    assert store.get("big.bin") == b"still writable and readable"


def test_list_is_sorted_recursive_and_filtered_by_prefix(store: Store) -> None:
    for key in ["b.txt", "a/y/z.txt", "ab/c.txt", "a/x.txt", "a-b.txt"]:
        store.put(key, key.encode())
    assert [info.key for info in store.list()] == ["a-b.txt", "a/x.txt", "a/y/z.txt", "ab/c.txt", "b.txt"]
    assert [info.key for info in store.list("a/")] == ["a/x.txt", "a/y/z.txt"]
    assert [info.key for info in store.list("a")] == ["a-b.txt", "a/x.txt", "a/y/z.txt", "ab/c.txt"]
    assert [info.key for info in store.list("a/y/z")] == ["a/y/z.txt"]
    assert list(store.list("nothing/")) == []
    assert [(info.key, info.size) for info in store.list("a/y/")] == [("a/y/z.txt", 9)]
    assert all(info == store.stat(info.key) for info in store.list())


def test_delete_is_idempotent_and_leaves_siblings(store: Store) -> None:
    store.delete("never/existed")
    store.put("d/one", b"1")
    store.put("d/two", b"2")
    store.delete("d/one")
    store.delete("d/one")
    assert [info.key for info in store.list()] == ["d/two"]
    store.delete("d/two")
    store.put("d/three", b"3")  # the folder pruned by the delete comes back
    assert store.get("d/three") == b"3"


@pytest.mark.parametrize("operation", ["get", "stream", "stat", "download"])
def test_missing_object_raises_object_not_found(store: Store, operation: str, tmp_path: Path) -> None:
    calls: dict[str, Callable[[], object]] = {
        "get": lambda: store.get("no/such.key"),
        "stream": lambda: store.stream("no/such.key"),
        "stat": lambda: store.stat("no/such.key"),
        "download": lambda: store.download("no/such.key", tmp_path / "x"),
    }
    with pytest.raises(ObjectNotFound) as caught:
        calls[operation]()
    assert "'no/such.key'" in str(caught.value) and store.url in str(caught.value)
    assert caught.value.reason == "OBJECT_NOT_FOUND"


@pytest.mark.parametrize(
    "operation", ["put", "put_stream", "put_file", "get", "stream", "download", "stat", "exists", "delete", "list"]
)
def test_every_method_validates_keys(store: Store, operation: str, tmp_path: Path) -> None:
    bad = "../escape"
    source = tmp_path / "f"
    source.write_bytes(b"x")
    calls: dict[str, Callable[[], object]] = {
        "put": lambda: store.put(bad, b"x"),
        "put_stream": lambda: store.put_stream(bad, [b"x"]),
        "put_file": lambda: store.put_file(bad, source),
        "get": lambda: store.get(bad),
        "stream": lambda: store.stream(bad),
        "download": lambda: store.download(bad, tmp_path / "out"),
        "stat": lambda: store.stat(bad),
        "exists": lambda: store.exists(bad),
        "delete": lambda: store.delete(bad),
        "list": lambda: store.list(bad),
    }
    with pytest.raises(InvalidStorageKey, match=r"'\.\./escape'"):
        calls[operation]()
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape").exists()


def test_unicode_keys(store: Store) -> None:
    keys = ["données/été (1).txt", "模型/权重.bin", "Ünïcödé+=@,~.txt"]
    for index, key in enumerate(keys):
        store.put(key, f"{index}".encode())
    assert [info.key for info in store.list()] == sorted(keys)
    assert [store.get(key) for key in keys] == [b"0", b"1", b"2"]
    assert [info.key for info in store.list("données/")] == ["données/été (1).txt"]


def test_concurrent_readers_never_see_a_partial_object(store: Store) -> None:
    # Version i is byte i repeated (64 KiB + i) times: a torn read shows mixed bytes or a wrong length.
    def version(i: int) -> bytes:
        return bytes([i]) * (64 * 1024 + i)

    store.put("hot.bin", version(0))
    done = threading.Event()
    failures: list[str] = []

    def read() -> None:
        while not done.is_set():
            try:
                data = store.get("hot.bin") if random.random() < 0.5 else b"".join(store.stream("hot.bin", 8192))
            except Exception as exc:  # reported below rather than lost in the thread
                failures.append(repr(exc))
                return
            if data != version(data[0]):
                failures.append(f"torn read: {len(data)} bytes starting with {data[0]}")

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for i in range(1, 40):
            store.put("hot.bin", version(i))
    finally:
        done.set()
        for reader in readers:
            reader.join()
    assert failures == []
    assert store.get("hot.bin") == version(39)


# --- local only -----------------------------------------------------------------------------------------------


def test_local_check_creates_a_missing_root(tmp_path: Path) -> None:
    root = tmp_path / "new" / "root"
    open_store(root.as_uri()).check()
    assert root.is_dir()


def test_local_check_rejects_a_file(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    store = open_store(not_a_dir.as_uri())
    with pytest.raises(StoreUnavailable) as caught:
        store.check()
    assert str(not_a_dir) in str(caught.value) and "writable directory" in str(caught.value)
    with pytest.raises(StoreUnavailable):
        store.put("a", b"x")


def test_local_object_and_folder_of_the_same_name_conflict(tmp_path: Path) -> None:
    store = open_store(tmp_path.as_uri())
    store.put("a", b"object")
    with pytest.raises(KeyConflict, match="'a/b'"):
        store.put("a/b", b"under it")
    store.put("c/d", b"x")
    with pytest.raises(KeyConflict):
        store.put("c", b"folder in the way")
    assert store.get("a") == b"object" and not store.exists("c")
    assert_no_temp_residue(store)


def test_local_list_skips_foreign_files(tmp_path: Path) -> None:
    store = open_store(tmp_path.as_uri())
    store.put("ok.txt", b"x")
    (tmp_path / ".DS_Store").write_bytes(b"x")
    (tmp_path / "bad:name").write_bytes(b"x")
    (tmp_path / "folder").mkdir()
    assert [info.key for info in store.list()] == ["ok.txt"]
    assert not store.exists("folder")


# --- S3 only --------------------------------------------------------------------------------------------------


def closed_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.s3
def test_s3_unreachable_endpoint_is_unavailable() -> None:
    port = closed_loopback_port()
    env = {"TISTUDIO_S3_ENDPOINT": f"http://127.0.0.1:{port}", "TISTUDIO_S3_ACCESS_KEY": "k"}
    env["TISTUDIO_S3_SECRET_KEY"] = "s"
    store = open_store("s3://tistudio-nowhere", env=env)
    for probe in (store.check, lambda: store.get("a")):
        with pytest.raises(StoreUnavailable) as caught:
            probe()
        message = str(caught.value)
        assert f"127.0.0.1:{port}" in message and "tistudio-nowhere" in message
        assert "TISTUDIO_S3_ENDPOINT" in message


@pytest.mark.s3
def test_s3_https_to_a_plain_http_server_is_unavailable(s3_endpoint: S3Endpoint) -> None:
    if not s3_endpoint.endpoint.startswith("http://"):
        pytest.skip("needs a plain-http S3 endpoint")
    env = s3_endpoint.env() | {"TISTUDIO_S3_ENDPOINT": s3_endpoint.endpoint.replace("http://", "https://")}
    with pytest.raises(StoreUnavailable, match="TISTUDIO_S3_SECURE"):
        open_store("s3://tistudio-tls", env=env).check()


@pytest.mark.s3
def test_s3_missing_bucket_is_unavailable(s3_endpoint: S3Endpoint) -> None:
    store = open_store("s3://tistudio-no-such-bucket", env=s3_endpoint.env())
    for probe in (store.check, lambda: store.put("a", b"x"), lambda: list(store.list())):
        with pytest.raises(StoreUnavailable) as caught:
            probe()
        message = str(caught.value)
        assert "'tistudio-no-such-bucket' does not exist" in message and s3_endpoint.endpoint in message


@pytest.mark.s3
def test_s3_failed_multipart_stream_is_aborted(s3_store_url: S3StoreURL, s3_endpoint: S3Endpoint) -> None:
    # The smallest part S3 allows, so that two parts are enough to go multipart.
    store = S3Store(s3_store_url.bucket, settings=s3_settings_from_env(s3_store_url.env), part_size=5 << 20)
    store.put("ckpt.bin", b"old")
    with pytest.raises(Boom):
        store.put_stream("ckpt.bin", failing_chunks(payload(6 << 20)))
    assert store.get("ckpt.bin") == b"old"
    assert [info.key for info in store.list()] == ["ckpt.bin"]
    uploads = s3_endpoint.client()._list_multipart_uploads(s3_store_url.bucket)  # no public API lists them
    assert list(uploads.uploads) == []

    data = payload(11 << 20, seed=2)
    info = store.put_stream("ckpt.bin", (data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)))
    assert info.size == len(data) and info.etag.endswith("-3")  # three parts
    assert store.get("ckpt.bin") == data


@pytest.mark.s3
def test_s3_prefix_scopes_every_key(s3_store_url: S3StoreURL) -> None:
    scoped = open_store(s3_store_url.url + "/team/datasets", env=s3_store_url.env)
    whole = open_store(s3_store_url.url, env=s3_store_url.env)
    scoped.put("cats/1.png", b"x")
    assert [info.key for info in scoped.list()] == ["cats/1.png"]
    assert [info.key for info in whole.list()] == ["team/datasets/cats/1.png"]
    assert scoped.url == s3_store_url.url + "/team/datasets/"
