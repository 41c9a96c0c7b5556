"""The dataset layout: images with `<stem>.txt` captions and `<stem>.alpha.png` masks beside them."""

from __future__ import annotations

import pytest

from services.common.datasets import caption_key_for, dataset_folder, list_dataset, list_source_files
from services.common.storage import InvalidStorageKey, LocalStore


@pytest.fixture
def store(tmp_path):
    store = LocalStore(tmp_path)
    for key in (
        "ds/001.png",
        "ds/001.txt",
        "ds/001.alpha.png",
        "ds/002.JPG",
        "ds/sub/003.webp",
        "ds/sub/003.txt",
        "ds/notes.md",
        "ds/drawing.svg",
        "ds/lint.json",
        "ds2/004.png",
    ):
        store.put(key, b"x")
    return store


def test_a_dataset_is_its_images_with_their_captions_and_masks(store):
    dataset = list_dataset(store, "ds")
    assert dataset.prefix == "ds/"
    assert [item.image_key for item in dataset.items] == ["ds/001.png", "ds/002.JPG", "ds/sub/003.webp"]
    first, second, third = dataset.items
    assert (first.caption_key, first.alpha_key) == ("ds/001.txt", "ds/001.alpha.png")
    assert (second.caption_key, second.alpha_key) == (None, None)
    assert third.caption_key == "ds/sub/003.txt"
    assert len(dataset) == 3 and dataset.captioned == 2


def test_source_files_include_every_candidate_so_bad_ones_get_a_reason(store):
    keys = [item.image_key for item in list_source_files(store, "ds/").items]
    assert keys == ["ds/001.alpha.png", "ds/001.png", "ds/002.JPG", "ds/drawing.svg", "ds/notes.md", "ds/sub/003.webp"]


def test_a_prefix_is_a_folder_not_a_name_prefix(store):
    assert dataset_folder("ds") == "ds/" and dataset_folder("") == ""
    assert all(item.image_key.startswith("ds/") for item in list_dataset(store, "ds").items)


def test_caption_keys_sit_beside_images():
    assert caption_key_for("a/b/photo.final.jpeg") == "a/b/photo.final.txt"


def test_a_bad_prefix_names_the_field(store):
    with pytest.raises(InvalidStorageKey) as caught:
        list_dataset(store, "../etc", field="dataset.key")
    assert caught.value.field == "dataset.key"
