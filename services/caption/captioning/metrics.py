"""The caption service's metrics, registered in the server's own CollectorRegistry (never the global one).

    tistudio_caption_queue_depth                      Gauge      images waiting for a batch
    tistudio_caption_batch_size                       Histogram  images per generate call
    tistudio_caption_latency_seconds                  Histogram  per image, submit -> caption (queueing included)
    tistudio_caption_images_total{operation,outcome,reason}  Counter  images by what happened to them

Labels are bounded: operation and outcome come from fixed sets and reason must be an UPPER_SNAKE code (the
`Diagnostic.code` of a skipped image), so no file name or caption can ever become a label value.
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["CaptionMetrics", "OPERATIONS", "OUTCOMES", "BATCH_SIZE_BUCKETS", "LATENCY_BUCKETS_SECONDS"]

OPERATIONS = ("preprocess", "caption_dataset", "caption")
OUTCOMES = ("kept", "skipped", "written", "failed")
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
# 10 ms (a tiny model) up to 2 min (a long queue of beam-search captions on CPU).
LATENCY_BUCKETS_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_REASON = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


class CaptionMetrics:
    """The four caption metric families in `registry`. Thread-safe (prometheus_client locks per child)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.queue_depth = Gauge(
            "tistudio_caption_queue_depth", "Images waiting to be captioned (not yet in a batch).", registry=registry
        )
        self.batch_size = Histogram(
            "tistudio_caption_batch_size",
            "Images captioned per generate call.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.latency = Histogram(
            "tistudio_caption_latency_seconds",
            "Time from submitting one image until its caption (or error) is ready, queueing included.",
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=registry,
        )
        self.images = Counter(
            "tistudio_caption_images_total",
            "Images by operation and what happened to them; reason is a bounded code such as TRUNCATED.",
            ("operation", "outcome", "reason"),
            registry=registry,
        )

    def images_counted(self, operation: str, outcome: str, reason: str = "", count: int = 1) -> None:
        """Count `count` images of `operation` ending in `outcome` (with `reason` for skipped/failed ones).

        A label value outside the fixed sets is a programming error, raised at once so it cannot slip into
        the time series.
        """
        if operation not in OPERATIONS:
            raise ValueError(f"operation {operation!r} is not one of {OPERATIONS}")
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome {outcome!r} is not one of {OUTCOMES}")
        if reason and not _REASON.fullmatch(reason):
            raise ValueError(f"reason {reason!r} must be an UPPER_SNAKE code of at most 64 characters, or ''")
        self.images.labels(operation, outcome, reason).inc(count)
