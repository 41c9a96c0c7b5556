"""The preview manifest: JSON round trip, refusals that name the manifest, and collecting a job's progress."""

from __future__ import annotations

import json
import logging

import pytest

from services.common.errors import InvalidArgument
from services.common.storage import LocalStore
from services.preview.manifest import (
    MANIFEST_NAME,
    MANIFEST_VERSION,
    PreviewEntry,
    PreviewManifest,
    collect_progress,
    read_manifest,
    write_manifest,
)

KEY = "jobs/abc/savepoints/000050/previews/manifest.json"


def make_manifest(step: int = 50, seeds: tuple[int, ...] = (1, 2)) -> PreviewManifest:
    folder = f"jobs/abc/savepoints/{step:06d}/previews/"
    return PreviewManifest(
        step=step,
        job_id="abc",
        prompts=("a photo of [name]", "[name] on a beach"),
        negative_prompt="blurry",
        trigger="kitty",
        embedding_key=f"jobs/abc/savepoints/{step:06d}/kitty.safetensors",
        model={"reference": "sd15", "sha256": "ab" * 32, "short_hash": "abababab"},
        sampling={"steps": 20, "cfg_scale": 7.0, "sampler": "euler", "width": 64, "height": 64},
        entries=tuple(PreviewEntry(f"{folder}p0-s{seed}.png", 0, "a photo of kitty", seed, 1.0) for seed in seeds),
    )


def document(manifest: PreviewManifest) -> dict:
    return json.loads(manifest.to_json())


def test_round_trip_and_shape() -> None:
    manifest = make_manifest()
    data = manifest.to_json()
    assert data.endswith(b"}\n")
    assert list(json.loads(data)) == sorted(json.loads(data))
    assert json.loads(data)["version"] == MANIFEST_VERSION
    assert PreviewManifest.from_json(data, key=KEY) == manifest


def test_integer_weight_reads_as_float() -> None:
    raw = document(make_manifest())
    raw["entries"][0]["weight"] = 1
    parsed = PreviewManifest.from_json(json.dumps(raw).encode(), key=KEY)
    assert parsed.entries[0].weight == 1.0 and isinstance(parsed.entries[0].weight, float)


def test_newer_version_refused() -> None:
    raw = document(make_manifest())
    raw["version"] = MANIFEST_VERSION + 1
    with pytest.raises(InvalidArgument, match=f"{KEY} has version {MANIFEST_VERSION + 1}.*upgrade"):
        PreviewManifest.from_json(json.dumps(raw).encode(), key=KEY)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"{not json", "is not valid UTF-8 JSON"),
        (b"\xff\xfe", "is not valid UTF-8 JSON"),
        (b"[]", "must be a JSON object, got list"),
    ],
)
def test_unreadable_data_names_the_key(data: bytes, problem: str) -> None:
    with pytest.raises(InvalidArgument, match=f"preview manifest {KEY} {problem}"):
        PreviewManifest.from_json(data, key=KEY)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.pop("step"), "is missing field 'step'"),
        (lambda d: d["entries"][1].pop("seed"), r"is missing field 'entries\[1\].seed'"),
        (lambda d: d.update(step="50"), "field 'step' must be an integer, got str"),
        (lambda d: d["entries"][0].update(weight=True), r"field 'entries\[0\].weight' must be a number, got bool"),
        (lambda d: d["entries"][0].update(prompt_index=2), r"entries\[0\].prompt_index is 2, but there are 2"),
        (lambda d: d.update(prompts=["a", 3]), "field 'prompts' must be a list of strings"),
    ],
)
def test_bad_fields_are_named(change, problem: str) -> None:
    raw = document(make_manifest())
    change(raw)
    with pytest.raises(InvalidArgument, match=f"preview manifest {KEY} {problem}") as caught:
        PreviewManifest.from_json(json.dumps(raw).encode(), key=KEY)
    assert caught.value.metadata == {"key": KEY}


def test_write_then_read(tmp_path) -> None:
    store = LocalStore(tmp_path)
    manifest = make_manifest()
    key = write_manifest(store, "jobs/abc/savepoints/000050/previews", manifest)
    assert key == KEY and key.endswith(MANIFEST_NAME)
    assert read_manifest(store, key) == manifest


def test_collect_progress_sorts_skips_corrupt_and_ignores_other_files(tmp_path, caplog) -> None:
    store = LocalStore(tmp_path)
    for step in (200, 50, 100):
        write_manifest(store, f"jobs/abc/savepoints/{step:06d}/previews/", make_manifest(step))
    store.put("jobs/abc/savepoints/000150/previews/manifest.json", b"{truncated")
    store.put("jobs/abc/savepoints/000050/manifest.json", b"the savepoint's own manifest, not a preview one")
    store.put("jobs/abc/savepoints/000050/previews/p0-s1.png", b"png")
    store.put("jobs/other/savepoints/000010/previews/manifest.json", make_manifest(10).to_json())
    with caplog.at_level(logging.WARNING, logger="services.preview.manifest"):
        manifests = collect_progress(store, "jobs/abc")
    assert [m.step for m in manifests] == [50, 100, 200]
    assert "jobs/abc/savepoints/000150/previews/manifest.json" in caplog.text


def test_collect_progress_of_a_job_without_previews(tmp_path) -> None:
    assert collect_progress(LocalStore(tmp_path), "jobs/none/") == []
