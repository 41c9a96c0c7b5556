"""Fingerprints: A1111-compatible hashes, folder digests, and the (path, size, mtime_ns) hash cache."""

from __future__ import annotations

import hashlib
import json
import os

from services.common.models.fingerprint import (
    HashCache,
    ModelFingerprint,
    fingerprint_file,
    fingerprint_folder,
    fingerprint_path,
)


class CountingOpener:
    """The `opener` seam: counts which files are actually read."""

    def __init__(self) -> None:
        self.opened: list[str] = []

    def __call__(self, path):
        self.opened.append(os.path.basename(path))
        return open(path, "rb")


def test_single_file_hash_is_a1111_model_hash(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)  # spans several 1 MiB chunks
    path = tmp_path / "model.safetensors"
    path.write_bytes(data)
    fp = fingerprint_file(path)
    assert fp.sha256 == hashlib.sha256(data).hexdigest()
    assert fp.short_hash == fp.sha256[:10]  # A1111 "Model hash"


def test_folder_hash_covers_weight_files_only(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"unet")
    (tmp_path / "text_encoder").mkdir()
    (tmp_path / "text_encoder" / "pytorch_model.bin").write_bytes(b"te")
    (tmp_path / "model_index.json").write_text("{}")
    lines = sorted(
        f"{rel}\0{hashlib.sha256(data).hexdigest()}\n"
        for rel, data in [
            ("unet/diffusion_pytorch_model.safetensors", b"unet"),
            ("text_encoder/pytorch_model.bin", b"te"),
        ]
    )
    expected = hashlib.sha256("".join(lines).encode()).hexdigest()
    assert fingerprint_folder(tmp_path) == ModelFingerprint(expected, expected[:10])
    (tmp_path / "model_index.json").write_text('{"changed": true}')
    assert fingerprint_path(tmp_path).sha256 == expected
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"other")
    assert fingerprint_path(tmp_path).sha256 != expected


def test_cache_hit_does_not_read_the_file_again(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"weights" * 1000)
    cache_file = tmp_path / "cache" / "hashes.json"
    opener = CountingOpener()
    first = fingerprint_file(path, cache=HashCache(cache_file), opener=opener)
    assert opener.opened == ["model.safetensors"]
    # A new HashCache reads the JSON written by the first: the file is not read again.
    second = fingerprint_file(path, cache=HashCache(cache_file), opener=opener)
    assert second == first and opener.opened == ["model.safetensors"]
    entry = json.loads(cache_file.read_text())["sha256"][str(path.resolve())]
    assert entry == {"size": 7000, "mtime_ns": path.stat().st_mtime_ns, "sha256": first.sha256}
    assert [p.name for p in cache_file.parent.iterdir()] == ["hashes.json"]  # no temp files left


def test_changed_mtime_or_size_rehashes(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"a" * 100)
    cache = HashCache(tmp_path / "hashes.json")
    opener = CountingOpener()
    fingerprint_file(path, cache=cache, opener=opener)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # touched: same bytes, new mtime
    fingerprint_file(path, cache=cache, opener=opener)
    path.write_bytes(b"b" * 101)
    changed = fingerprint_file(path, cache=cache, opener=opener)
    assert len(opener.opened) == 3
    assert changed.sha256 == hashlib.sha256(b"b" * 101).hexdigest()


def test_corrupt_cache_is_ignored_and_rewritten(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"x")
    cache_file = tmp_path / "hashes.json"
    cache_file.write_text("{not json")
    fp = fingerprint_file(path, cache=HashCache(cache_file))
    assert json.loads(cache_file.read_text())["sha256"][str(path.resolve())]["sha256"] == fp.sha256


def test_metadata_is_stable(tiny_models, tmp_path):
    first = fingerprint_path(tiny_models["sd_single_file"], cache=HashCache(tmp_path / "h.json"))
    again = fingerprint_path(tiny_models["sd_single_file"])
    assert first == again
    meta = first.as_metadata()
    assert meta == {"base_model_sha256": first.sha256, "base_model_hash": first.sha256[:10]}
    assert all(isinstance(v, str) for v in meta.values())
    assert fingerprint_path(tiny_models["sd"]) == fingerprint_path(tiny_models["sd"])
