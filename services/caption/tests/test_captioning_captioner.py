"""Captioner: BLIP by model reference with batching across concurrent callers, and the caption metrics."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from prometheus_client import CollectorRegistry

from services.caption.captioning import (
    BatchingSettings,
    BlipCaptioner,
    Captioner,
    CaptionMetrics,
    GenerationSettings,
)
from services.caption.tests.test_captioning_blip import load_tiny_blip, sample_images
from services.common.errors import InvalidArgument, NotFound, Unavailable

WAIT = 60  # seconds; only reached when a test is failing
SHORT = GenerationSettings(min_length=4, max_length=12)


class Loader:
    """load_model for the Captioner: "tiny" (image-sensitive) and "blind" (the tiny model as built); counts calls."""

    def __init__(self, tiny_models, cache_dir) -> None:
        self.path, self.cache_dir = tiny_models["blip"], cache_dir
        self.calls: Counter[str] = Counter()

    def __call__(self, reference: str):
        self.calls[reference] += 1
        if reference not in ("tiny", "blind"):
            raise NotFound(f"model {reference!r} does not exist")
        return load_tiny_blip(self.path, self.cache_dir, sensitive=reference == "tiny")


@pytest.fixture
def loader(tiny_models, tmp_path):
    return Loader(tiny_models, tmp_path)


@pytest.fixture
def registry():
    return CollectorRegistry()


def _concurrently(calls: list) -> list:
    """Run the callables on threads released together; return their results in order."""
    start, results = threading.Barrier(len(calls)), [None] * len(calls)

    def worker(i: int) -> None:
        start.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)
    return results


def _direct(loader: Loader, reference: str, images, settings) -> list[str]:
    return BlipCaptioner(loader(reference)).caption(images, settings)


def test_concurrent_callers_share_one_generate_call(loader, registry):
    # Batches only run when full (the delay is an hour), so eight one-image callers must meet in one batch.
    batching = BatchingSettings(max_batch_size=8, max_delay_seconds=3600)
    captioner = Captioner(loader, "tiny", batching=batching, metrics=CaptionMetrics(registry))
    images = sample_images(8)
    results = _concurrently([lambda image=image: captioner.caption([image], SHORT) for image in images])
    captioner.close()
    assert [r[0] for r in results] == _direct(loader, "tiny", images, SHORT)
    assert registry.get_sample_value("tistudio_caption_batch_size_count") == 1
    assert registry.get_sample_value("tistudio_caption_batch_size_sum") == 8
    assert registry.get_sample_value("tistudio_caption_latency_seconds_count") == 8
    assert registry.get_sample_value("tistudio_caption_queue_depth") == 0


def test_batching_off_runs_one_image_per_generate_call(loader, registry):
    captioner = Captioner(loader, "tiny", batching=BatchingSettings(max_batch_size=1), metrics=CaptionMetrics(registry))
    images = sample_images(4)
    assert captioner.caption(images, SHORT) == _direct(loader, "tiny", images, SHORT)
    captioner.close()
    assert registry.get_sample_value("tistudio_caption_batch_size_count") == 4
    assert registry.get_sample_value("tistudio_caption_batch_size_bucket", {"le": "1.0"}) == 4


def test_models_and_settings_never_mix_in_a_batch(loader):
    captioner = Captioner(loader, "tiny", batching=BatchingSettings(max_batch_size=16, max_delay_seconds=0.2))
    images = sample_images(3)
    prefixed = GenerationSettings(prefix="a photo of", min_length=4, max_length=12)
    calls = [
        lambda: captioner.caption(images, SHORT),
        lambda: captioner.caption(images, SHORT, model="blind"),
        lambda: captioner.caption(images, prefixed),
        lambda: captioner.caption(images, SHORT, model="tiny"),
    ]
    tiny, blind, tiny_prefixed, named = _concurrently(calls)
    captioner.close()
    assert tiny == named == _direct(loader, "tiny", images, SHORT)
    assert blind == _direct(loader, "blind", images, SHORT)
    assert len(set(blind)) == 1 and len(set(tiny)) == 3  # the blind model really is another model
    assert tiny_prefixed == _direct(loader, "tiny", images, prefixed)


def test_beam_requests_differing_only_in_sampling_fields_share_a_batch(loader, registry):
    batching = BatchingSettings(max_batch_size=2, max_delay_seconds=3600)
    captioner = Captioner(loader, "tiny", batching=batching, metrics=CaptionMetrics(registry))
    a, b = sample_images(2)
    seeded = GenerationSettings(min_length=4, max_length=12, seed=99, top_p=0.5)
    first, second = _concurrently([lambda: captioner.caption([a], SHORT), lambda: captioner.caption([b], seeded)])
    captioner.close()
    assert first + second == _direct(loader, "tiny", [a, b], SHORT)
    assert registry.get_sample_value("tistudio_caption_batch_size_count") == 1


def test_sampled_captions_do_not_depend_on_who_else_was_in_the_batch(loader):
    captioner = Captioner(loader, "tiny", batching=BatchingSettings(max_batch_size=16, max_delay_seconds=0.1))
    images = sample_images(4)
    sampled = GenerationSettings(sample=True, seed=11, min_length=4, max_length=12)
    alone = [captioner.caption([image], sampled)[0] for image in images]
    together = _concurrently(
        [lambda: captioner.caption(images[:2], sampled), lambda: captioner.caption(images, sampled)]
    )
    captioner.close()
    assert together == [alone[:2], alone]


def test_each_model_loads_once_and_default_is_used_for_empty_names(loader):
    captioner = Captioner(loader, "tiny", batching=BatchingSettings(max_delay_seconds=0))
    _concurrently([lambda: captioner.caption(sample_images(1), SHORT) for _ in range(4)])
    assert captioner.default_model == "tiny"
    assert captioner.fingerprint() == captioner.fingerprint("tiny") == loader("tiny").fingerprint
    assert loader.calls == {"tiny": 2}  # once by the captioner, once by this test
    captioner.close()


def test_bad_requests_fail_before_anything_is_queued(loader):
    captioner = Captioner(loader, "tiny")
    with pytest.raises(InvalidArgument) as caught:
        captioner.caption(sample_images(1), GenerationSettings(num_beams=0))
    assert caught.value.field == "options.num_beams"
    with pytest.raises(NotFound, match="'missing' does not exist"):
        captioner.caption(sample_images(1), SHORT, model="missing")
    with pytest.raises(InvalidArgument, match="shorten the prefix"):
        captioner.caption(sample_images(1), GenerationSettings(prefix="red " * 40))
    assert loader.calls == {"missing": 1, "tiny": 1}
    assert captioner.queue_depth == 0
    assert captioner.caption([], SHORT) == []
    captioner.close()


def test_closed_captioner_refuses_work(loader):
    captioner = Captioner(loader, "tiny")
    captioner.close()
    with pytest.raises(Unavailable, match="shutting down"):
        captioner.caption(sample_images(1), SHORT)


def test_images_counted_labels_are_bounded(registry):
    metrics = CaptionMetrics(registry)
    metrics.images_counted("preprocess", "skipped", "TRUNCATED")
    metrics.images_counted("preprocess", "skipped", "TRUNCATED")
    metrics.images_counted("caption_dataset", "written", count=3)
    labels = {"operation": "preprocess", "outcome": "skipped", "reason": "TRUNCATED"}
    assert registry.get_sample_value("tistudio_caption_images_total", labels) == 2
    written = {"operation": "caption_dataset", "outcome": "written", "reason": ""}
    assert registry.get_sample_value("tistudio_caption_images_total", written) == 3
    for bad in (("train", "kept", ""), ("caption", "lost", ""), ("caption", "failed", "photo.jpg is broken")):
        with pytest.raises(ValueError):
            metrics.images_counted(*bad)
