"""Conversions between tistudio.common.v1 messages and domain values, shared by every servicer."""

from __future__ import annotations

from services.common.diagnostics import Diagnostic
from services.common.errors import InvalidArgument
from services.common.models import ModelFingerprint, model_display_name
from services.common.storage import Store
from tistudio.common.v1 import common_pb2

__all__ = [
    "FAMILY_SIZES",
    "diagnostic_to_proto",
    "own_store_key",
    "storage_ref",
    "progress_to_proto",
    "model_info",
    "family_to_proto",
]

# Training and preprocessing size per model family (A1111: 512 for SD1.x and SD2-base, 768 for SD2-768; SDXL 1024).
FAMILY_SIZES = {
    common_pb2.MODEL_FAMILY_UNSPECIFIED: 512,
    common_pb2.MODEL_FAMILY_SD1: 512,
    common_pb2.MODEL_FAMILY_SD2_512: 512,
    common_pb2.MODEL_FAMILY_SD2_768: 768,
    common_pb2.MODEL_FAMILY_SDXL: 1024,
}


def diagnostic_to_proto(diagnostic: Diagnostic) -> common_pb2.Diagnostic:
    return common_pb2.Diagnostic(
        severity=int(diagnostic.severity),
        code=diagnostic.code,
        message=diagnostic.message,
        suggestion=diagnostic.suggestion,
        field=diagnostic.field,
        key=diagnostic.key,
    )


def own_store_key(ref: common_pb2.StorageRef, store: Store, *, field: str) -> str:
    """The key of `ref`, which must name this service's own store.

    Reading other stores on a caller's say-so would let any client make the server fetch arbitrary URLs (or local
    files with file://) using the server's credentials, so a foreign store_url is refused.
    """
    if ref.store_url and ref.store_url.rstrip("/") != store.url.rstrip("/"):
        raise InvalidArgument(
            f"{field}.store_url {ref.store_url!r} is not this service's store ({store.url}); leave store_url empty "
            "and put the data in the shared store",
            field=f"{field}.store_url",
            reason="FOREIGN_STORE",
        )
    return ref.key


def storage_ref(key: str) -> common_pb2.StorageRef:
    return common_pb2.StorageRef(key=key)


def progress_to_proto(completed: int, total: int) -> common_pb2.Progress:
    return common_pb2.Progress(completed=completed, total=total)


_FAMILIES = {"sd1": common_pb2.MODEL_FAMILY_SD1, "sdxl": common_pb2.MODEL_FAMILY_SDXL}


def family_to_proto(family: str, prediction_type: str) -> int:
    """ModelFamily from the loaded model's family ("sd1", "sd2", "sdxl") and its scheduler's prediction type."""
    if family == "sd2":  # SD2 768 is the v-prediction model; the 512 base predicts epsilon
        return common_pb2.MODEL_FAMILY_SD2_768 if prediction_type == "v_prediction" else common_pb2.MODEL_FAMILY_SD2_512
    return _FAMILIES.get(family, common_pb2.MODEL_FAMILY_UNSPECIFIED)


def model_info(reference: str, fingerprint: ModelFingerprint, **fields) -> common_pb2.ModelInfo:
    """ModelInfo with the display name A1111 shows: the folder or file name without its extension."""
    return common_pb2.ModelInfo(
        reference=reference,
        name=model_display_name(reference),
        sha256=fingerprint.sha256,
        short_hash=fingerprint.short_hash,
        **fields,
    )
