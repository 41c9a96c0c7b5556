"""Models by reference: resolution, fingerprints, loading, and deterministic tiny test models.

    resolved = resolve_model("store:models/sd15", store=store)        # or a path, URL, or HF id in the local cache
    sd = load_stable_diffusion(resolved)                              # services.common.models.loading (imports torch)

Modules: `reference` (reference strings -> ResolvedModel), `store_cache` (store prefixes downloaded once, by
content), `fingerprint` (sha256 / A1111 short hash, cached), `loading` (frozen SD, BLIP and CLIP components), `tiny`
(+ `tiny_vocab`, `ldm_checkpoint`: the offline test models). This package namespace stays torch-free so that
`python -m services.common.models.tiny` can skip a current build quickly; import `loading` explicitly.
"""

from services.common.models.fingerprint import HashCache, ModelFingerprint, fingerprint_path
from services.common.models.reference import (
    DEFAULT_SD_CONFIG,
    InvalidModel,
    ModelNotFound,
    ResolvedModel,
    default_cache_dir,
    hf_hub_cache_dir,
    model_display_name,
    resolve_model,
)

__all__ = [
    "DEFAULT_SD_CONFIG",
    "HashCache",
    "InvalidModel",
    "ModelFingerprint",
    "ModelNotFound",
    "ResolvedModel",
    "default_cache_dir",
    "fingerprint_path",
    "hf_hub_cache_dir",
    "model_display_name",
    "resolve_model",
]
