"""Caption a few images given inline or by key (the Caption RPC), decoded with the same safe decoder as datasets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.caption.captioning import Captioner, CaptionMetrics
from services.caption.describe import CaptionSettings, describe
from services.caption.hygiene import CleanCaption
from services.caption.images import DecodeLimits, ImageRejected, decode_image
from services.common.errors import InvalidArgument, NotFound
from services.common.storage import ObjectNotFound, Store

__all__ = ["ImageInput", "MAX_IMAGES", "caption_images"]

MAX_IMAGES = 64  # one request is a handful of images; datasets go through CaptionDataset


@dataclass(frozen=True)
class ImageInput:
    """Exactly one of `key` (an object in the store) and `data` (encoded image bytes)."""

    key: str = ""
    data: bytes | None = None

    @property
    def name(self) -> str:
        return self.key or "inline image"


def caption_images(
    store: Store,
    inputs: Sequence[ImageInput],
    settings: CaptionSettings,
    *,
    captioner: Captioner,
    metrics: CaptionMetrics | None = None,
) -> list[CleanCaption]:
    if not inputs:
        raise InvalidArgument("no images given; send 1 to 64 images", field="images", reason="NO_IMAGES")
    if len(inputs) > MAX_IMAGES:
        raise InvalidArgument(
            f"{len(inputs)} images in one request; send at most {MAX_IMAGES}, or caption a dataset with CaptionDataset",
            field="images",
            reason="TOO_MANY_IMAGES",
        )
    settings.validate()
    images = [_decode(store, index, image) for index, image in enumerate(inputs)]
    captions = describe(captioner, images, settings)
    if metrics is not None:
        for _ in captions:
            metrics.images_counted("caption", "written")
    return captions


def _decode(store: Store, index: int, image: ImageInput):
    field = f"images[{index}]"
    if image.data is None:
        try:
            data = store.get(image.key)
        except ObjectNotFound as exc:
            raise NotFound(f"{field}: {image.key} does not exist in the store; upload it first", field=field) from exc
    else:
        data = image.data
    try:
        return decode_image(data, name=image.name, limits=DecodeLimits()).rgb
    except ImageRejected as rejected:
        diagnostic = rejected.diagnostic
        raise InvalidArgument(
            f"{field}: {diagnostic.message}; {diagnostic.suggestion}".rstrip("; "),
            field=field,
            reason=diagnostic.code,
        ) from rejected
