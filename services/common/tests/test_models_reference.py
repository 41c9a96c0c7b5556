"""Model references: local paths, store prefixes (cached once), the local Hugging Face cache, and refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from services.common.errors import InvalidArgument, NotFound
from services.common.models.reference import (
    DEFAULT_SD_CONFIG,
    InvalidModel,
    ModelNotFound,
    hf_hub_cache_dir,
    resolve_model,
)
from services.common.storage.local import LocalStore

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class CountingStore(LocalStore):
    """A LocalStore that counts downloads and can fail the n-th one (an interrupted transfer)."""

    def __init__(self, root: Path, fail_on: int | None = None) -> None:
        super().__init__(root)
        self.downloads = 0
        self.fail_on = fail_on

    def download(self, key, path):
        self.downloads += 1
        if self.downloads == self.fail_on:
            raise ConnectionError("connection reset while downloading " + key)
        return super().download(key, path)


def _upload(store: LocalStore, folder: Path, prefix: str) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            store.put_file(f"{prefix}/{path.relative_to(folder).as_posix()}", path)


def _fake_hf_cache(root: Path, repo: str, source: Path) -> Path:
    """The hub cache layout: models--org--name/{refs/main, snapshots/<commit>/...}."""
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    snapshot = repo_dir / "snapshots" / COMMIT
    shutil.copytree(source, snapshot)
    return snapshot


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"


@pytest.fixture
def hf_cache(tmp_path, tiny_models, monkeypatch):
    root = tmp_path / "hf" / "hub"
    _fake_hf_cache(root, "tiny-org/tiny-sd", tiny_models["sd"])
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    return root


def test_local_folders_and_file_resolve_by_kind(tiny_models, cache_dir):
    sd = resolve_model(str(tiny_models["sd"]), cache_dir=cache_dir)
    assert (sd.kind, sd.path, sd.config_path) == ("diffusers", tiny_models["sd"], None)
    blip = resolve_model(str(tiny_models["blip"]), cache_dir=cache_dir)
    assert blip.kind == "transformers"
    single = resolve_model(str(tiny_models["sd_single_file"]), config=str(tiny_models["sd"]), cache_dir=cache_dir)
    assert (single.kind, single.config_path) == ("single_file", tiny_models["sd"])
    assert single.fingerprint.short_hash == single.fingerprint.sha256[:10]
    assert len({sd.fingerprint, blip.fingerprint, single.fingerprint}) == 3


def test_store_prefix_downloads_once_and_shares_identical_content(tiny_models, tmp_path, cache_dir):
    store = CountingStore(tmp_path / "store")
    _upload(store, tiny_models["sd"], "models/tiny-sd")
    _upload(store, tiny_models["sd"], "models/copy-of-tiny-sd")
    n_files = sum(1 for p in tiny_models["sd"].rglob("*") if p.is_file())

    first = resolve_model("store:models/tiny-sd", store=store, cache_dir=cache_dir)
    assert first.kind == "diffusers" and store.downloads == n_files
    assert first.path.parent == cache_dir / "models" / "by-content"
    # The digests computed while downloading were recorded under the final paths (no second read to fingerprint).
    hashed = json.loads((cache_dir / "hashes.json").read_text())["sha256"]
    assert str(first.path / "unet" / "diffusion_pytorch_model.safetensors") in hashed
    assert first.fingerprint == resolve_model(str(tiny_models["sd"]), cache_dir=cache_dir).fingerprint

    again = resolve_model("store:models/tiny-sd/", store=store, cache_dir=cache_dir)
    assert again.path == first.path and store.downloads == n_files, "second resolution must not download"

    copy = resolve_model("store:models/copy-of-tiny-sd", store=store, cache_dir=cache_dir)
    assert copy.path == first.path
    assert len(list((cache_dir / "models" / "by-content").iterdir())) == 1
    assert len(list((cache_dir / "models" / "by-listing").iterdir())) == 2
    assert list((cache_dir / "models" / "tmp").iterdir()) == []


def test_store_single_file_with_config(tiny_models, tmp_path, cache_dir):
    store = CountingStore(tmp_path / "store")
    store.put_file("ckpt/tiny-sd.safetensors", tiny_models["sd_single_file"])
    resolved = resolve_model(
        "store:ckpt/tiny-sd.safetensors", config=str(tiny_models["sd"]), store=store, cache_dir=cache_dir
    )
    assert resolved.kind == "single_file" and resolved.path.name == "tiny-sd.safetensors"
    assert resolved.path.read_bytes() == tiny_models["sd_single_file"].read_bytes()


def test_interrupted_download_leaves_no_entry_and_a_retry_works(tiny_models, tmp_path, cache_dir):
    store = CountingStore(tmp_path / "store", fail_on=3)
    _upload(store, tiny_models["sd"], "models/tiny-sd")
    with pytest.raises(ConnectionError):
        resolve_model("store:models/tiny-sd", store=store, cache_dir=cache_dir)
    models = cache_dir / "models"
    assert not (models / "by-listing").exists() or not list((models / "by-listing").iterdir())
    assert not (models / "by-content").exists() or not list((models / "by-content").iterdir())
    assert list((models / "tmp").iterdir()) == []
    assert resolve_model("store:models/tiny-sd", store=store, cache_dir=cache_dir).kind == "diffusers"


def test_store_url_references(tiny_models, tmp_path, cache_dir):
    store_root = tmp_path / "bucket"
    store = LocalStore(store_root)
    _upload(store, tiny_models["blip"], "tiny-blip")
    store.put_file("ckpt/tiny-sd.safetensors", tiny_models["sd_single_file"])
    folder = resolve_model((store_root / "tiny-blip").as_uri(), cache_dir=cache_dir)
    assert folder.kind == "transformers"
    assert folder.fingerprint == resolve_model(str(tiny_models["blip"]), cache_dir=cache_dir).fingerprint
    single_url = (store_root / "ckpt" / "tiny-sd.safetensors").as_uri()
    single = resolve_model(single_url, config=str(tiny_models["sd"]), cache_dir=cache_dir)
    assert single.kind == "single_file" and single.path.name == "tiny-sd.safetensors"
    with pytest.raises(ModelNotFound, match="holds no objects"):
        resolve_model((store_root / "absent").as_uri(), cache_dir=cache_dir)
    with pytest.raises(InvalidArgument, match="three slashes"):
        resolve_model("file://relative/dir", cache_dir=cache_dir)


def test_store_errors(tmp_path, cache_dir):
    store = CountingStore(tmp_path / "store")
    with pytest.raises(ModelNotFound, match="no objects under that prefix"):
        resolve_model("store:nothing/here", store=store, cache_dir=cache_dir)
    with pytest.raises(InvalidModel, match="need a store"):
        resolve_model("store:models/x", cache_dir=cache_dir)
    with pytest.raises(InvalidModel, match="give the model's prefix"):
        resolve_model("store:/", store=store, cache_dir=cache_dir)


def test_hugging_face_id_from_the_local_cache(hf_cache, cache_dir):
    for reference in ("tiny-org/tiny-sd", "hf:tiny-org/tiny-sd", "tiny-org/tiny-sd@main", f"tiny-org/tiny-sd@{COMMIT}"):
        resolved = resolve_model(reference, cache_dir=cache_dir)
        assert resolved.kind == "diffusers", reference
        assert resolved.path == hf_cache / "models--tiny-org--tiny-sd" / "snapshots" / COMMIT


def test_hf_cache_location_follows_the_environment(tmp_path):
    assert hf_hub_cache_dir({"HF_HUB_CACHE": str(tmp_path / "a")}) == tmp_path / "a"
    assert hf_hub_cache_dir({"HF_HOME": str(tmp_path / "h")}) == tmp_path / "h" / "hub"
    assert hf_hub_cache_dir({"XDG_CACHE_HOME": str(tmp_path / "x")}) == tmp_path / "x" / "huggingface" / "hub"


def test_missing_hugging_face_id_says_where_it_looked(hf_cache, cache_dir):
    with pytest.raises(ModelNotFound) as info:
        resolve_model("someone/absent-model", cache_dir=cache_dir)
    message = str(info.value)
    assert str(hf_cache) in message and "no network" in message and "local path" in message
    assert isinstance(info.value, NotFound) and info.value.reason == "MODEL_NOT_FOUND"


def test_single_file_config_from_the_hf_cache_and_its_absence(tiny_models, hf_cache, cache_dir):
    resolved = resolve_model(str(tiny_models["sd_single_file"]), config="tiny-org/tiny-sd", cache_dir=cache_dir)
    assert resolved.config_path == hf_cache / "models--tiny-org--tiny-sd" / "snapshots" / COMMIT
    with pytest.raises(ModelNotFound) as info:
        resolve_model(str(tiny_models["sd_single_file"]), cache_dir=cache_dir)
    assert DEFAULT_SD_CONFIG in str(info.value) and "pass a config folder" in str(info.value)


def test_missing_path_and_refused_files(tmp_path, tiny_models, cache_dir):
    with pytest.raises(ModelNotFound, match="no such file or folder"):
        resolve_model(str(tmp_path / "nope"), cache_dir=cache_dir)
    for name in ("model.ckpt", "model.pt", "model.bin"):
        (tmp_path / name).write_bytes(b"\x80\x04pickle")
        with pytest.raises(InvalidModel, match="is a pickle .*convert it to .safetensors") as info:
            resolve_model(str(tmp_path / name), cache_dir=cache_dir)
        assert isinstance(info.value, InvalidArgument) and info.value.reason == "INVALID_MODEL"
    embedding = tmp_path / "embedding.safetensors"
    import torch
    from safetensors.torch import save_file

    save_file({"emb_params": torch.zeros(2, 32)}, str(embedding))
    with pytest.raises(InvalidModel, match="not a Stable Diffusion checkpoint"):
        resolve_model(str(embedding), config=str(tiny_models["sd"]), cache_dir=cache_dir)
    with pytest.raises(InvalidModel, match="neither model_index.json"):
        resolve_model(str(tmp_path), cache_dir=cache_dir)
    with pytest.raises(InvalidModel, match="not a diffusers folder"):
        resolve_model(str(tiny_models["sd_single_file"]), config=str(tiny_models["blip"]), cache_dir=cache_dir)
    with pytest.raises(InvalidModel, match="empty"):
        resolve_model("  ", cache_dir=cache_dir)
