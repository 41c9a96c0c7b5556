"""The preview service's Prometheus metrics, registered in the service's registry next to the RPC metrics.

    metrics = PreviewMetrics(registry, queue_depth=renderer.queue_depth_fn, loaded_models=pool.loaded)
    with metrics.render("generate") as done: ...; done(images=4)      # latency + images made
    metrics.batch_ran(images=8, denoising_steps=160, seconds=2.0)      # from the sampler thread

Labels are bounded: `operation` is one of the four RPCs, `kind` a model kind. Never a prompt, a key or a model
reference as a label.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["OPERATIONS", "PreviewMetrics"]

OPERATIONS = ("generate", "previews", "sheet", "evaluate")
# 50 ms (a tiny model on a GPU) to 10 min (an evaluation of many savepoints on a CPU).
LATENCY_BUCKETS_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class PreviewMetrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        queue_depth: Callable[[], int] = lambda: 0,
        loaded_models: Callable[[], Iterable[tuple[str, str]]] = tuple,
        loaded_bytes: Callable[[], int] = lambda: 0,
    ) -> None:
        self.images = Counter(
            "tistudio_preview_images_generated", "Images generated, by operation.", ("operation",), registry=registry
        )
        self.latency = Histogram(
            "tistudio_preview_render_duration_seconds",
            "Wall time of a rendering operation, from request to stored images.",
            ("operation",),
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=registry,
        )
        self.denoising_steps = Counter(
            "tistudio_preview_denoising_steps",
            "Denoising steps run, counted per image (a batch of 8 images x 20 steps adds 160).",
            registry=registry,
        )
        self.denoising_rate = Gauge(
            "tistudio_preview_denoising_steps_per_second",
            "Per-image denoising steps per second over the latest batch (includes VAE decoding).",
            registry=registry,
        )
        self.batch_size = Histogram(
            "tistudio_preview_batch_images",
            "Images sampled together in one batch (several requests share a batch when they queue together).",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        for operation in OPERATIONS:
            self.images.labels(operation)
            self.latency.labels(operation)
        registry.register(_StateCollector(queue_depth, loaded_models, loaded_bytes))

    @contextlib.contextmanager
    def render(self, operation: str) -> Iterator[Callable[[int], None]]:
        """Times the block; call the yielded function with the number of images it made."""
        started = time.monotonic()
        made = [0]
        yield lambda images: made.__setitem__(0, made[0] + images)
        self.latency.labels(operation).observe(time.monotonic() - started)
        self.images.labels(operation).inc(made[0])

    def batch_ran(self, *, images: int, denoising_steps: int, seconds: float) -> None:
        self.batch_size.observe(images)
        self.denoising_steps.inc(denoising_steps)
        if seconds > 0:
            self.denoising_rate.set(denoising_steps / seconds)


class _StateCollector(Collector):
    """Queue depth and loaded models, read when Prometheus scrapes."""

    def __init__(self, queue_depth, loaded_models, loaded_bytes) -> None:
        self._queue_depth, self._loaded_models, self._loaded_bytes = queue_depth, loaded_models, loaded_bytes

    def collect(self):
        yield GaugeMetricFamily(
            "tistudio_preview_queue_depth", "Images waiting for the sampler.", value=self._queue_depth()
        )
        loaded = GaugeMetricFamily("tistudio_preview_loaded_models", "Models held in memory, by kind.", labels=["kind"])
        counts: dict[str, int] = {"sd": 0, "clip": 0}
        for kind, _ in self._loaded_models():
            counts[kind] = counts.get(kind, 0) + 1
        for kind, count in sorted(counts.items()):
            loaded.add_metric([kind], count)
        yield loaded
        yield GaugeMetricFamily(
            "tistudio_preview_loaded_model_bytes",
            "Bytes of the parameters and buffers of the loaded models (what the memory budget counts).",
            value=self._loaded_bytes(),
        )
