"""CaptionDataset: captions land beside images, reruns change nothing, policies apply once, interrupted runs resume."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from services.caption.caption_dataset import CaptionPolicy, caption_dataset
from services.caption.caption_ledger import LEDGER_NAME
from services.caption.captioning import BatchingSettings, Captioner
from services.caption.describe import CaptionSettings, describe
from services.caption.events import CaptionAction, CaptionDatasetSummary, CaptionedImage, Progress
from services.caption.hygiene import HygieneSettings
from services.common.models import resolve_model
from services.common.models.loading import load_blip
from services.common.storage import LocalStore

DATASET = "datasets/anna/processed/"


class CountingCaptioner(Captioner):
    """The real captioner, counting the images it was asked to caption."""

    captioned = 0

    def caption(self, images, settings, *, model=""):
        self.captioned += len(images)
        return super().caption(images, settings, model=model)


class FailingStore(LocalStore):
    """A local store whose caption writes fail after `allowed` of them, like a process killed mid-run."""

    def __init__(self, root, allowed: int) -> None:
        super().__init__(root)
        self.allowed = allowed

    def put(self, key, data, *, content_type=None):
        if key.endswith(".txt"):
            if self.allowed == 0:
                raise KeyboardInterrupt("killed")
            self.allowed -= 1
        return super().put(key, data, content_type=content_type)


@pytest.fixture(scope="module")
def captioner(tiny_models):
    blip = load_blip(resolve_model(str(tiny_models["blip"])))
    made = CountingCaptioner(lambda reference: blip, str(tiny_models["blip"]), batching=BatchingSettings(4, 0.001))
    yield made
    made.close()


def _png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(out, format="PNG")
    return out.getvalue()


def _dataset(store, count: int = 5) -> list[str]:
    keys = []
    for index in range(count):
        key = f"{DATASET}{index:03d}.png"
        store.put(key, _png((40 * index, 255 - 30 * index, 90)))
        keys.append(key)
    return keys


def _run(store, captioner, policy=CaptionPolicy.SKIP, settings=None):
    events = list(caption_dataset(store, DATASET, settings or CaptionSettings(), policy, captioner=captioner))
    images = [event for event in events if isinstance(event, CaptionedImage)]
    assert isinstance(events[0], Progress) and events[0].total == len(images)
    assert isinstance(events[-1], CaptionDatasetSummary)
    return images, events[-1]


def _captions(store) -> dict[str, str]:
    return {info.key: store.get(info.key).decode() for info in store.list(DATASET) if info.key.endswith(".txt")}


def _direct_caption(store, captioner, key, settings=None) -> str:
    image = Image.open(io.BytesIO(store.get(key))).convert("RGB")
    return describe(captioner, [image], settings or CaptionSettings())[0].caption


def test_captions_land_beside_each_image_as_blip_wrote_them(tmp_path, captioner):
    store = LocalStore(tmp_path)
    keys = _dataset(store)
    images, summary = _run(store, captioner)
    assert (summary.written, summary.skipped, summary.failed) == (5, 0, 0)
    captions = _captions(store)
    assert sorted(captions) == [key.replace(".png", ".txt") for key in keys]
    for event in images:
        assert event.action is CaptionAction.WRITTEN
        assert (
            captions[event.caption_key] == event.caption.caption == _direct_caption(store, captioner, event.image_key)
        )
        assert event.caption.caption.strip()


@pytest.mark.parametrize("policy", list(CaptionPolicy))
def test_running_twice_changes_nothing(tmp_path, captioner, policy):
    store = LocalStore(tmp_path)
    keys = _dataset(store, count=3)
    store.put(keys[0].replace(".png", ".txt"), b"a woman, hand written")
    _run(store, captioner, policy)
    before = {info.key: store.get(info.key) for info in store.list(DATASET)}
    captioner.captioned = 0
    images, summary = _run(store, captioner, policy)
    assert (summary.written, summary.skipped, summary.failed) == (0, 3, 0)
    assert captioner.captioned == 0, "a rerun must not caption again"
    assert {info.key: store.get(info.key) for info in store.list(DATASET)} == before
    assert all(event.action is CaptionAction.SKIPPED_EXISTING for event in images)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (CaptionPolicy.SKIP, "{existing}"),
        (CaptionPolicy.OVERWRITE, "{new}"),
        (CaptionPolicy.PREPEND, "{new} {existing}"),
        (CaptionPolicy.APPEND, "{existing} {new}"),
    ],
)
def test_policies_decide_what_happens_to_an_existing_caption(tmp_path, captioner, policy, expected):
    store = LocalStore(tmp_path)
    keys = _dataset(store, count=2)
    existing = "a woman, hand written caption"
    store.put(keys[0].replace(".png", ".txt"), f"{existing}\n".encode())
    new = _direct_caption(store, captioner, keys[0])
    _run(store, captioner, policy)
    captions = _captions(store)
    assert captions[keys[0].replace(".png", ".txt")].strip() == expected.format(existing=existing, new=new)
    assert captions[keys[1].replace(".png", ".txt")] == _direct_caption(store, captioner, keys[1])


def test_hygiene_applies_to_the_written_captions(tmp_path, captioner):
    store = LocalStore(tmp_path)
    _dataset(store, count=2)
    settings = CaptionSettings(hygiene=HygieneSettings(class_phrase="a woman", comma_phrases=True))
    images, _ = _run(store, captioner, settings=settings)
    for event in images:
        assert store.get(event.caption_key).decode().startswith("a woman, ")
        assert event.caption.raw and event.caption.caption != event.caption.raw
        assert any(edit.rule == "CLASS_PHRASE" for edit in event.caption.edits)


def test_an_interrupted_run_continues_where_it_stopped(tmp_path, captioner):
    reference = LocalStore(tmp_path / "reference")
    _dataset(reference, count=6)
    reference.put(f"{DATASET}000.txt", b"hand written")
    _run(reference, captioner, CaptionPolicy.APPEND)

    store = FailingStore(tmp_path / "interrupted", allowed=2)
    _dataset(store, count=6)
    store.put(f"{DATASET}000.txt", b"hand written")
    store.allowed = 2
    with pytest.raises(KeyboardInterrupt):
        _run(store, captioner, CaptionPolicy.APPEND)
    assert store.exists(DATASET + LEDGER_NAME), "the intent is recorded before captions are written"
    assert len(_captions(store)) < 6

    store.allowed = 10**6
    captioner.captioned = 0
    images, summary = _run(store, captioner, CaptionPolicy.APPEND)
    assert captioner.captioned == 0, "captions recorded before the interruption are not generated again"
    assert summary.failed == 0 and summary.written == 6 - 2
    assert _captions(store) == _captions(reference), "APPEND applied exactly once, as in an uninterrupted run"


def test_an_undecodable_image_fails_alone(tmp_path, captioner):
    store = LocalStore(tmp_path)
    _dataset(store, count=2)
    store.put(f"{DATASET}broken.png", b"\x89PNG\r\n\x1a\n not really")
    images, summary = _run(store, captioner)
    assert (summary.written, summary.failed) == (2, 1)
    broken = next(event for event in images if event.image_key.endswith("broken.png"))
    assert broken.action is CaptionAction.FAILED
    assert broken.error.key == f"{DATASET}broken.png" and broken.error.suggestion
    assert not store.exists(f"{DATASET}broken.txt")
