"""What a dataset is in the store: images with `<stem>.txt` captions beside them, as A1111 reads them.

    datasets/anna/processed/001.png
    datasets/anna/processed/001.txt          the caption (A1111 reads only `.txt`; kohya's `.caption` is not read)
    datasets/anna/processed/001.alpha.png    optional alpha mask for alpha-weighted loss (written by Preprocess)

The caption service writes datasets in this layout and the trainer reads them, so both list them here. Sub-folders
are part of the dataset (keys are listed recursively); names are compared by their full key, so `a/001.png` and
`b/001.png` are different images with different captions.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from services.common.storage import ObjectInfo, ObjectNotFound, Store, validate_prefix

__all__ = [
    "IMAGE_EXTENSIONS",
    "CAPTION_EXTENSION",
    "ALPHA_SUFFIX",
    "DatasetItem",
    "Dataset",
    "list_dataset",
    "list_source_files",
    "dataset_folder",
    "caption_key_for",
    "alpha_key_for",
    "key_stem",
    "read_caption",
]

# Extensions a training dataset's images may have (lower-cased); anything else is not part of the dataset.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
CAPTION_EXTENSION = ".txt"
ALPHA_SUFFIX = ".alpha.png"
# Files tistudio itself writes into dataset folders (reports, manifests, logs): never images, never sources.
_SIDECAR_EXTENSIONS = (".txt", ".caption", ".json")


def key_stem(key: str) -> str:
    """`datasets/a/001.png` -> `datasets/a/001` (the folder is kept: captions sit beside their image)."""
    root, _ = posixpath.splitext(key)
    return root


def caption_key_for(image_key: str) -> str:
    return key_stem(image_key) + CAPTION_EXTENSION


def alpha_key_for(image_key: str) -> str:
    return key_stem(image_key) + ALPHA_SUFFIX


@dataclass(frozen=True)
class DatasetItem:
    image_key: str
    size: int  # bytes of the image object
    etag: str  # changes when the image is replaced
    caption_key: str | None  # `<stem>.txt` when it exists
    alpha_key: str | None  # `<stem>.alpha.png` when it exists


@dataclass(frozen=True)
class Dataset:
    prefix: str
    items: tuple[DatasetItem, ...]  # sorted by image key

    def __len__(self) -> int:
        return len(self.items)

    @property
    def captioned(self) -> int:
        return sum(item.caption_key is not None for item in self.items)


def dataset_folder(prefix: str, *, field: str = "dataset.key") -> str:
    """`prefix` as a folder ("datasets/anna" -> "datasets/anna/"), so `anna` never lists `anna2/` too."""
    validate_prefix(prefix, field=field)
    return prefix if prefix == "" or prefix.endswith("/") else prefix + "/"


def _is_image(key: str) -> bool:
    lower = key.lower()
    return lower.endswith(IMAGE_EXTENSIONS) and not lower.endswith(ALPHA_SUFFIX)


def _items(infos: list[ObjectInfo], keys: set[str], *, with_alpha: bool) -> list[DatasetItem]:
    items = []
    for info in infos:
        caption_key, alpha_key = caption_key_for(info.key), alpha_key_for(info.key)
        items.append(
            DatasetItem(
                image_key=info.key,
                size=info.size,
                etag=info.etag,
                caption_key=caption_key if caption_key in keys else None,
                alpha_key=alpha_key if with_alpha and alpha_key in keys else None,
            )
        )
    return items


def list_dataset(store: Store, prefix: str, *, field: str = "dataset.key") -> Dataset:
    """The images under `prefix` (recursively) with their caption and alpha files; other objects are ignored."""
    folder = dataset_folder(prefix, field=field)
    infos = list(store.list(folder))
    keys = {info.key for info in infos}
    images = [info for info in infos if _is_image(info.key)]
    return Dataset(prefix=folder, items=tuple(_items(images, keys, with_alpha=True)))


def list_source_files(store: Store, prefix: str, *, field: str = "source.key") -> Dataset:
    """Every candidate source image under `prefix`, with the caption file beside each.

    Unlike `list_dataset`, an object with any extension (or none) counts as a candidate, so that Preprocess can
    tell the user "photo.svg: SVG is not supported" instead of silently leaving it out. Caption files and
    tistudio's own reports (`.txt`, `.caption`, `.json`) are not candidates.
    """
    folder = dataset_folder(prefix, field=field)
    infos = list(store.list(folder))
    keys = {info.key for info in infos}
    candidates = [info for info in infos if not info.key.lower().endswith(_SIDECAR_EXTENSIONS)]
    return Dataset(prefix=folder, items=tuple(_items(candidates, keys, with_alpha=False)))


def read_caption(store: Store, item: DatasetItem) -> str | None:
    """The item's caption, stripped ("" for an empty file); None when it has no caption file (or it just vanished).
    Undecodable bytes become U+FFFD rather than failing: a caption is advice to the model, not data to refuse."""
    if item.caption_key is None:
        return None
    try:
        return store.get(item.caption_key).decode("utf-8-sig", errors="replace").strip()
    except ObjectNotFound:
        return None
