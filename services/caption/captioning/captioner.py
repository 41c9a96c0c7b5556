"""What the caption service uses: BLIP by model reference, with dynamic batching across concurrent callers.

A call validates its settings, loads (or finds) the model, and turns its images into pixel arrays on the caller's
own thread (NumPy only: see `BlipCaptioner.pixel_values`), so resizing runs in parallel across RPC threads. Only
the pixels queue for the one worker thread, keyed by (model reference, settings): images of concurrent calls with
equal settings share a generate call; a call with other settings or another model waits for a batch of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from services.caption.captioning.batcher import DynamicBatcher
from services.caption.captioning.blip import BlipCaptioner
from services.caption.captioning.metrics import CaptionMetrics
from services.caption.captioning.settings import BatchingSettings, GenerationSettings
from services.common.models.fingerprint import ModelFingerprint
from services.common.models.loading import BlipComponents

__all__ = ["Captioner"]

_Key = tuple[str, GenerationSettings]


class Captioner:
    """What the caption service uses: BLIP by model reference, with dynamic batching across concurrent callers.

    `load_model(reference)` returns the loaded components; it is called once per reference (ModelPool.blip fits,
    and raises NotFound/InvalidModel for a bad reference). `default_model` captions when a call names no model.
    Thread-safe; call `close()` on shutdown.
    """

    def __init__(
        self,
        load_model: Callable[[str], BlipComponents],
        default_model: str,
        *,
        batching: BatchingSettings = BatchingSettings(),  # noqa: B008 - frozen, so one shared default is safe
        metrics: CaptionMetrics | None = None,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
    ) -> None:
        self._load_model = load_model
        self._default_model = default_model
        self._device = device
        self._dtype = dtype
        self._models: dict[str, BlipCaptioner] = {}
        self._load_lock = threading.Lock()
        self._batcher: DynamicBatcher[_Key, np.ndarray, str] = DynamicBatcher(self._run, batching, metrics=metrics)

    def caption(self, images: Sequence[Image.Image], settings: GenerationSettings, *, model: str = "") -> list[str]:
        """One caption per image, in order ([] for none). Blocks until all are done; raises the first error."""
        settings.validate()
        if not images:
            return []
        reference = model or self._default_model
        blip = self.blip(reference)
        blip.prompt_ids(settings)  # a prefix too long for this model fails here, not in a shared batch
        pixels = blip.pixel_values(images)
        return self._batcher.map((reference, settings.batch_key()), list(pixels))

    @property
    def default_model(self) -> str:
        """The reference that captions calls naming no model."""
        return self._default_model

    def fingerprint(self, model: str = "") -> ModelFingerprint:
        """The fingerprint of the model that captions calls naming `model` ("" = the default model)."""
        return self.blip(model or self._default_model).fingerprint

    def blip(self, model: str = "") -> BlipCaptioner:
        """The BlipCaptioner of `model` ("" = default), loading it on first use."""
        reference = model or self._default_model
        found = self._models.get(reference)  # dict reads are atomic; the lock only guards loading
        if found is not None:
            return found
        with self._load_lock:
            if reference not in self._models:
                components = self._load_model(reference)
                self._models[reference] = BlipCaptioner(components, device=self._device, dtype=self._dtype)
            return self._models[reference]

    @property
    def queue_depth(self) -> int:
        return self._batcher.queue_depth

    def close(self, timeout: float | None = None) -> None:
        """Accept no more images; queued ones still run (or fail with Unavailable after `timeout`)."""
        self._batcher.close(timeout)

    def _run(self, key: _Key, pixels: list[np.ndarray]) -> list[str]:
        reference, settings = key
        return self._models[reference].caption_pixels(np.stack(pixels), settings)
