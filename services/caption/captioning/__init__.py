"""Captioning, pure domain: PIL images in, caption strings out (no protobuf, no storage).

    captioner = Captioner(pool.blip, "models/tiny-blip", batching=BatchingSettings.from_env(env))
    captioner.caption([image], GenerationSettings(prefix="a photo of"))

Modules: `settings` (GenerationSettings, BatchingSettings), `blip` (BlipCaptioner: one model, one generate call),
`batcher` (DynamicBatcher: concurrent callers' images in shared batches), `captioner` (Captioner: both, by model
reference), `metrics` (CaptionMetrics).
"""

from services.caption.captioning.batcher import DynamicBatcher
from services.caption.captioning.blip import BlipCaptioner, to_rgb
from services.caption.captioning.captioner import Captioner
from services.caption.captioning.metrics import CaptionMetrics
from services.caption.captioning.settings import BatchingSettings, GenerationSettings

__all__ = [
    "BatchingSettings",
    "BlipCaptioner",
    "CaptionMetrics",
    "Captioner",
    "DynamicBatcher",
    "GenerationSettings",
    "to_rgb",
]
