"""Model references: the strings users pass to name a model, resolved to a local folder or file.

| reference                               | resolves to                                                          |
|-----------------------------------------|----------------------------------------------------------------------|
| `/models/sd15` (folder, model_index)    | kind "diffusers"                                                     |
| `/models/x.safetensors`                 | kind "single_file" (SD1.x original format), needs a config reference |
| `/models/blip` (config.json, blip/clip) | kind "transformers" (BLIP captioners, CLIP scorers)                 |
| `store:<prefix>`                        | the prefix in the service's own store, cached locally (store_cache)   |
| `s3://bucket/prefix`, `file:///dir`     | a store opened from the URL, cached locally the same way             |
| `org/name[@rev]`, `hf:org/name[@rev]`   | a snapshot already in the local Hugging Face cache (no network)      |

`.ckpt`/`.pt`/`.bin`/`.pth` single files are refused: they are pickles, which can run code when loaded.
A local path wins over a Hugging Face id that looks the same (`models/tiny-sd`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from services.common.errors import InvalidArgument, NotFound
from services.common.models.fingerprint import HashCache, ModelFingerprint, fingerprint_path
from services.common.models.store_cache import fetch_prefix

if TYPE_CHECKING:
    from services.common.storage import Store

__all__ = [
    "ResolvedModel",
    "ModelNotFound",
    "InvalidModel",
    "DEFAULT_SD_CONFIG",
    "default_cache_dir",
    "hf_hub_cache_dir",
    "model_display_name",
    "resolve_model",
]

DEFAULT_SD_CONFIG = "stable-diffusion-v1-5/stable-diffusion-v1-5"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def model_display_name(reference: str) -> str:
    """The name A1111 shows for a model (infotext "Model:"): the folder or file name without its extension."""
    name = reference.removeprefix("hf:").split("@")[0].rstrip("/").rsplit("/", 1)[-1]
    return name.removesuffix(".safetensors").removesuffix(".ckpt")


_HF_ID = re.compile(r"^(?:hf:)?(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<rev>[\w.\-/]+))?$")
_URL = re.compile(r"^(?P<scheme>s3|file)://")


class ModelNotFound(NotFound):
    reason = "MODEL_NOT_FOUND"


class InvalidModel(InvalidArgument):
    reason = "INVALID_MODEL"


@dataclass(frozen=True)
class ResolvedModel:
    reference: str  # what the user passed
    kind: str  # "diffusers" | "single_file" | "transformers"
    path: Path  # local folder (diffusers, transformers) or file (single_file)
    config_path: Path | None  # single_file only: the diffusers folder holding component configs and tokenizer
    fingerprint: ModelFingerprint


def default_cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """`$TISTUDIO_CACHE_DIR`, else `~/.cache/tistudio`."""
    return Path(env.get("TISTUDIO_CACHE_DIR") or Path.home() / ".cache" / "tistudio").expanduser()


def hf_hub_cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The hub cache as huggingface_hub computes it, read from `env` now (its constants are fixed at import)."""
    if env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.path.expandvars(env.get("HF_HUB_CACHE") or env["HUGGINGFACE_HUB_CACHE"])).expanduser()
    xdg = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    home = env.get("HF_HOME") or os.path.join(xdg, "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def _classify(path: Path, reference: str) -> str:
    """The kind of a local model folder or file; InvalidModel saying what is wrong otherwise."""
    if path.is_dir():
        if (path / "model_index.json").is_file():
            return "diffusers"
        config = path / "config.json"
        if config.is_file():
            try:
                model_type = json.loads(config.read_text()).get("model_type")
            except (OSError, ValueError, AttributeError) as exc:
                raise InvalidModel(
                    f"model {reference!r}: {config} is not valid JSON ({exc}); repair or re-download it"
                ) from exc
            if model_type in ("blip", "clip"):
                return "transformers"
            raise InvalidModel(
                f"model {reference!r}: {config} has model_type {model_type!r}; only BLIP ('blip') and CLIP ('clip') "
                "transformers folders are supported here, or pass a diffusers pipeline folder (with model_index.json)"
            )
        raise InvalidModel(
            f"model {reference!r}: folder {path} holds neither model_index.json (a diffusers Stable Diffusion folder) "
            "nor config.json (a BLIP or CLIP folder); pass the model's top folder or a .safetensors checkpoint"
        )
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise InvalidModel(
            f"model {reference!r}: {path.name} is a pickle ({suffix}), which can run arbitrary code when loaded; "
            "convert it to .safetensors (e.g. with A1111's or kohya's converter) and pass that file instead"
        )
    if suffix != ".safetensors":
        raise InvalidModel(
            f"model {reference!r}: {path.name} is not a supported model file; pass a .safetensors SD1.x checkpoint "
            "or a model folder"
        )
    _check_sd_checkpoint(path, reference)
    return "single_file"


def _check_sd_checkpoint(path: Path, reference: str) -> None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
    except (OSError, SafetensorError) as exc:
        raise InvalidModel(f"model {reference!r}: {path} is not a readable safetensors file ({exc})") from exc
    if not any(k.startswith("model.diffusion_model.") for k in keys):
        raise InvalidModel(
            f"model {reference!r}: {path.name} has no 'model.diffusion_model.*' weights, so it is not a Stable "
            "Diffusion checkpoint (an embedding, LoRA or VAE?); pass a full SD1.x checkpoint"
        )


def _hf_snapshot(repo: str, revision: str | None, hf_cache: Path, reference: str, *, also_local: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, IncompleteSnapshotError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo, revision=revision, cache_dir=hf_cache, local_files_only=True))
    except IncompleteSnapshotError as exc:
        # Some files of the repo were never downloaded (e.g. only the configs, for a single file's config
        # reference): use what is there; loading names any file that is really needed and missing.
        return Path(exc.snapshot_path)
    except (LocalEntryNotFoundError, FileNotFoundError) as exc:
        at = f"@{revision}" if revision else ""
        local = f" (nor is it a local path: no {Path(reference).resolve()})" if also_local else ""
        raise ModelNotFound(
            f"model {reference!r}: {repo}{at} is not in the local Hugging Face cache at {hf_cache}{local}, and this "
            "service has no network access; download it elsewhere (`hf download`) into that cache, or pass a "
            "local path",
            metadata={"reference": reference, "hf_cache": str(hf_cache)},
        ) from exc
    except HFValidationError as exc:
        raise InvalidModel(f"model {reference!r}: {repo!r} is not a valid Hugging Face repo id ({exc})") from exc


def _locate(
    reference: str,
    *,
    store: Store | None,
    cache_dir: Path,
    hf_cache: Path,
    open_store: Callable[[str], Store],
    hashes: HashCache,
) -> Path:
    """A local path for `reference` (downloading store objects into the cache when needed)."""
    if reference.startswith("store:"):
        if store is None:
            raise InvalidModel(f"model {reference!r}: 'store:' references need a store, and none is configured here")
        if not reference.removeprefix("store:").strip("/"):
            raise InvalidModel(f"model {reference!r}: give the model's prefix in the store, e.g. 'store:models/sd15'")
        cached = fetch_prefix(store, reference.removeprefix("store:"), cache_dir, hash_cache=hashes)
        if cached is None:
            raise ModelNotFound(
                f"model {reference!r}: no objects under that prefix in store {store.url}; check the prefix "
                "(list the store)",
                metadata={"reference": reference, "store": store.url},
            )
        return cached.path
    if _URL.match(reference):
        return _from_url(reference, cache_dir, open_store, hashes)
    local = Path(reference).expanduser()
    if not reference.startswith("hf:") and local.exists():
        return local.resolve()
    match = _HF_ID.match(reference)
    if match and not reference.startswith(("/", ".", "~")):
        also_local = not reference.startswith("hf:")
        return _hf_snapshot(match["repo"], match["rev"], hf_cache, reference, also_local=also_local)
    raise ModelNotFound(
        f"model {reference!r}: no such file or folder ({local.resolve()}); pass an existing path, 'store:<prefix>', "
        "an s3:// or file:// URL, or a Hugging Face id already in the local cache",
        metadata={"reference": reference},
    )


def _from_url(url: str, cache_dir: Path, open_store: Callable[[str], Store], hashes: HashCache) -> Path:
    """A store URL names a folder (the store root) or, failing that, one object in its parent folder."""
    cached = fetch_prefix(open_store(url), "", cache_dir, hash_cache=hashes)
    parent, _, name = url.rstrip("/").rpartition("/")
    if cached is None and name and parent.partition("://")[2]:
        cached = fetch_prefix(open_store(parent), name, cache_dir, hash_cache=hashes)
    if cached is None:
        raise ModelNotFound(
            f"model {url!r}: the store holds no objects there; check the URL (list the store)",
            metadata={"reference": url},
        )
    return cached.path


def resolve_model(
    reference: str,
    *,
    config: str | None = None,
    store: Store | None = None,
    cache_dir: Path | None = None,
    hf_cache_dir: Path | None = None,
    open_store: Callable[[str], Store] | None = None,
    env: Mapping[str, str] = os.environ,
) -> ResolvedModel:
    """Resolve `reference` to a local model (see the module table) and fingerprint it.

    `config` (single files only): a reference to a diffusers folder holding the component configs and tokenizer;
    default: DEFAULT_SD_CONFIG from the local Hugging Face cache. `cache_dir` defaults to `default_cache_dir(env)`,
    `hf_cache_dir` to `hf_hub_cache_dir(env)`; `open_store` (for URL references) to
    `services.common.storage.open_store(url, env)`.
    """
    if not isinstance(reference, str) or not reference.strip():
        raise InvalidModel("model reference is empty; pass a path, 'store:<prefix>', a URL or a Hugging Face id")
    reference = reference.strip()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir(env)
    hf_cache = Path(hf_cache_dir) if hf_cache_dir is not None else hf_hub_cache_dir(env)
    if open_store is None:

        def open_store(url: str) -> Store:
            from services.common.storage import open_store as open_store_with_env

            return open_store_with_env(url, env)

    hashes = HashCache(cache_dir / "hashes.json")
    where = dict(store=store, cache_dir=cache_dir, hf_cache=hf_cache, open_store=open_store, hashes=hashes)
    path = _locate(reference, **where)
    kind = _classify(path, reference)
    config_path = None
    if kind == "single_file":
        config_path = _config_folder(reference, config, where)
    fingerprint = fingerprint_path(path, cache=hashes)
    return ResolvedModel(reference, kind, path, config_path, fingerprint)


def _config_folder(reference: str, config: str | None, where: dict) -> Path:
    try:
        path = _locate(config or DEFAULT_SD_CONFIG, **where)
    except ModelNotFound as exc:
        if config:
            raise
        raise ModelNotFound(
            f"model {reference!r} is a single-file checkpoint, which needs a diffusers config folder "
            f"(model_index.json, component configs, tokenizer); the default {DEFAULT_SD_CONFIG!r} is not in the "
            f"local Hugging Face cache at {where['hf_cache']}: pass a config folder (an SD1.5 diffusers folder, "
            "or tiny-sd for the tiny checkpoint)",
            metadata={"reference": reference},
        ) from exc
    if _classify(path, config or DEFAULT_SD_CONFIG) != "diffusers":
        raise InvalidModel(
            f"config {config!r} for single-file model {reference!r} is not a diffusers folder (no model_index.json); "
            "pass the diffusers folder of the same architecture"
        )
    return path
