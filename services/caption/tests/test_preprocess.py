"""Preprocess over a store: every file gets its own fate, the good ones become a captioned 1:1 dataset."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image, ImageOps

from services.caption.captioning import BatchingSettings, Captioner
from services.caption.describe import CaptionSettings
from services.caption.events import ImageOutcome, PreprocessSummary, Progress
from services.caption.hygiene import HygieneSettings
from services.caption.images import GeometrySettings
from services.caption.preprocess import MANIFEST_NAME, REQUEST_NAME, preprocess_dataset
from services.caption.preprocess_settings import ExistingCaptionAction, PreprocessSettings
from services.caption.tests.corpus import CORPUS_EXPECTATIONS, build_corpus, gradient
from services.common.datasets import list_dataset
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.models import resolve_model
from services.common.models.loading import load_blip
from services.common.storage import LocalStore, open_store

SOURCE = "datasets/anna/raw/"
DEST = "datasets/anna/processed/"


@pytest.fixture(scope="module")
def captioner(tiny_models):
    blip = load_blip(resolve_model(str(tiny_models["blip"])))
    made = Captioner(lambda reference: blip, str(tiny_models["blip"]), batching=BatchingSettings(8, 0.001))
    yield made
    made.close()


def _run(store, settings=None, captioner=None, source=SOURCE, dest=DEST):
    events = list(preprocess_dataset(store, source, dest, settings or PreprocessSettings(), captioner=captioner))
    outcomes = {event.source_key: event for event in events if isinstance(event, ImageOutcome)}
    progress = [event for event in events if isinstance(event, Progress)]
    assert isinstance(events[-1], PreprocessSummary)
    assert progress[0].completed == 0 and progress[-1].completed == progress[-1].total == len(outcomes)
    return outcomes, events[-1]


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _load(store, key) -> Image.Image:
    return Image.open(io.BytesIO(store.get(key)))


def test_every_corpus_file_gets_its_own_fate_and_the_run_completes(tmp_path):
    store = LocalStore(tmp_path)
    for name, data in build_corpus().items():
        store.put(SOURCE + name, data)
    outcomes, summary = _run(store)

    assert sorted(key.removeprefix(SOURCE) for key in outcomes) == sorted(CORPUS_EXPECTATIONS)
    for name, (fate, code) in CORPUS_EXPECTATIONS.items():
        outcome = outcomes[SOURCE + name]
        assert outcome.kept is (fate == "kept"), name
        if fate == "skipped":
            assert outcome.reason.code == code and outcome.reason.key == SOURCE + name
            assert outcome.reason.message and outcome.reason.suggestion
            assert outcome.derived_keys == ()
        else:
            assert code is None or code in {note.code for note in outcome.notes}, name
            for key in outcome.derived_keys:
                assert _load(store, key).size == (512, 512)
    kept = sum(fate == "kept" for fate, _ in CORPUS_EXPECTATIONS.values())
    assert (summary.kept, summary.skipped, summary.images_written) == (kept, len(CORPUS_EXPECTATIONS) - kept, kept)
    assert len(list_dataset(store, DEST)) == kept
    manifest = json.loads(store.get(DEST + MANIFEST_NAME))
    assert manifest["summary"]["kept"] == kept
    assert {entry["source"]: entry["status"] for entry in manifest["images"]} == {
        SOURCE + name: fate for name, (fate, _) in CORPUS_EXPECTATIONS.items()
    }


def test_flips_alpha_and_captions_are_written_beside_each_image(tmp_path, captioner):
    store = LocalStore(tmp_path)
    store.put(SOURCE + "face.png", _png(gradient(640, 512, seed=1)))
    transparent = gradient(512, 512, seed=2).convert("RGBA")
    transparent.putalpha(Image.new("L", (512, 512), 0).resize((512, 512)))
    store.put(SOURCE + "cutout.png", _png(transparent))
    settings = PreprocessSettings(
        geometry=GeometrySettings(size=128, flip_copies=True, keep_alpha=True),
        caption=CaptionSettings(hygiene=HygieneSettings(class_phrase="a woman")),
    )
    outcomes, summary = _run(store, settings, captioner)

    face = outcomes[SOURCE + "face.png"]
    assert set(face.derived_keys) == {
        DEST + name for name in ("face.png", "face.txt", "face-flipped.png", "face-flipped.txt")
    }
    assert (
        _load(store, DEST + "face-flipped.png").tobytes() == ImageOps.mirror(_load(store, DEST + "face.png")).tobytes()
    )
    caption = store.get(DEST + "face.txt").decode()
    assert caption == store.get(DEST + "face-flipped.txt").decode() == face.caption.caption
    assert caption.startswith("a woman")
    assert DEST + "cutout.alpha.png" in outcomes[SOURCE + "cutout.png"].derived_keys
    assert _load(store, DEST + "cutout.alpha.png").getextrema() == (0, 0)
    assert summary.images_written == 4
    items = {item.image_key: item for item in list_dataset(store, DEST).items}
    assert items[DEST + "cutout.png"].alpha_key == DEST + "cutout.alpha.png"
    assert DEST + "cutout.alpha.png" not in items, "alpha masks are not training images"


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (ExistingCaptionAction.IGNORE, "{new}"),
        (ExistingCaptionAction.COPY, "{existing}"),
        (ExistingCaptionAction.PREPEND, "{existing} {new}"),
        (ExistingCaptionAction.APPEND, "{new} {existing}"),
    ],
)
def test_existing_caption_actions_follow_a1111(tmp_path, captioner, action, expected):
    store = LocalStore(tmp_path)
    store.put(SOURCE + "001.png", _png(gradient(256, 256, seed=3)))
    store.put(SOURCE + "001.txt", b"my own words\n")
    geometry = GeometrySettings(size=128)
    _run(store, PreprocessSettings(geometry=geometry, caption=CaptionSettings()), captioner, dest="blip-only/")
    new = store.get("blip-only/001.txt").decode()
    _run(store, PreprocessSettings(geometry=geometry, existing_caption=action, caption=CaptionSettings()), captioner)
    assert store.get(DEST + "001.txt").decode() == expected.format(new=new, existing="my own words")


def test_copy_without_captioning_carries_captions_over(tmp_path):
    store = LocalStore(tmp_path)
    store.put(SOURCE + "001.png", _png(gradient(256, 256)))
    store.put(SOURCE + "001.txt", b"a woman, smiling")
    store.put(SOURCE + "002.png", _png(gradient(256, 256, seed=5)))
    settings = PreprocessSettings(geometry=GeometrySettings(size=128), existing_caption=ExistingCaptionAction.COPY)
    outcomes, _ = _run(store, settings)
    assert store.get(DEST + "001.txt") == b"a woman, smiling"
    assert not store.exists(DEST + "002.txt"), "no caption and no BLIP: no caption file (as A1111)"


def test_a_rerun_of_the_same_request_rewrites_the_same_bytes_and_drops_stale_outputs(tmp_path):
    store = LocalStore(tmp_path)
    for index in range(3):
        store.put(f"{SOURCE}{index}.jpg", _png(gradient(300, 200, seed=index)))
    settings = PreprocessSettings(geometry=GeometrySettings(size=64, flip_copies=True))
    _run(store, settings)
    first = {info.key: store.get(info.key) for info in store.list(DEST) if info.key.endswith(".png")}
    store.delete(f"{SOURCE}2.jpg")
    _run(store, settings)
    second = {info.key: store.get(info.key) for info in store.list(DEST) if info.key.endswith(".png")}
    assert second == {key: data for key, data in first.items() if "/2" not in key}


def test_a_destination_holding_something_else_is_refused(tmp_path):
    store = LocalStore(tmp_path)
    store.put(SOURCE + "a.png", _png(gradient(128, 128)))
    store.put(DEST + "notes.md", b"mine")
    with pytest.raises(FailedPrecondition, match="not empty") as caught:
        _run(store)
    assert caught.value.reason == "DESTINATION_NOT_EMPTY" and caught.value.field == "destination.key"
    store.delete(DEST + "notes.md")
    _run(store, PreprocessSettings(geometry=GeometrySettings(size=64)))
    with pytest.raises(FailedPrecondition, match="other options"):
        _run(store, PreprocessSettings(geometry=GeometrySettings(size=128)))
    assert json.loads(store.get(DEST + REQUEST_NAME))["settings"]["geometry"]["size"] == 64


def test_overlapping_source_and_destination_are_refused(tmp_path):
    store = LocalStore(tmp_path)
    with pytest.raises(InvalidArgument, match="overlaps") as caught:
        _run(store, source=SOURCE, dest=SOURCE + "out/")
    assert caught.value.field == "destination.key"


def test_sources_sharing_a_stem_keep_apart(tmp_path):
    store = LocalStore(tmp_path)
    store.put(SOURCE + "a.png", _png(gradient(128, 128, seed=1)))
    store.put(SOURCE + "a.jpg", _png(gradient(128, 128, seed=2)))
    _run(store, PreprocessSettings(geometry=GeometrySettings(size=64)))
    assert {item.image_key for item in list_dataset(store, DEST).items} == {DEST + "a-jpg.png", DEST + "a-png.png"}


@pytest.mark.s3
def test_preprocess_runs_the_same_on_s3(s3_store_url, tmp_path):
    store = open_store(s3_store_url.url, env=s3_store_url.env)
    local = LocalStore(tmp_path)
    corpus = build_corpus()
    for name in ("good.jpg", "truncated.png", "exif-rotated.jpg"):
        store.put(SOURCE + name, corpus[name])
        local.put(SOURCE + name, corpus[name])
    s3_outcomes, _ = _run(store)
    local_outcomes, _ = _run(local)
    assert {key: (o.kept, o.derived_keys) for key, o in s3_outcomes.items()} == {
        key: (o.kept, o.derived_keys) for key, o in local_outcomes.items()
    }
    for outcome in s3_outcomes.values():
        for key in outcome.derived_keys:
            assert store.get(key) == local.get(key)
