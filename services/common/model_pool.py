"""Models a service keeps loaded, by reference.

Each model loads once, even when concurrent requests ask for it at the same moment: the first caller loads, the
others wait on that key's lock and share the result. Requests for models already loaded are never held up. Loads
themselves run one at a time per process: `from_pretrained` builds weights on accelerate's "meta" device by patching
torch globally, so two loads in two threads can corrupt each other ("Cannot copy out of meta tensor").

With a memory budget, the least recently used models are dropped when a new load takes the total (the bytes of
their parameters and buffers) over it; the model just loaded always stays. A request still holding a dropped model
finishes with it: the memory is freed when the last user lets go.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch

from services.common.models.loading import (
    BlipComponents,
    ClipComponents,
    StableDiffusionComponents,
    load_blip,
    load_clip,
    load_stable_diffusion,
)
from services.common.models.reference import ResolvedModel, resolve_model
from services.common.runtime import ServiceContext
from services.common.settings import EnvReader
from services.common.storage import Store
from services.common.torch_threads import in_passing_thread

__all__ = ["ModelPool", "footprint_bytes", "stable_diffusion_pool"]

log = logging.getLogger(__name__)

T = TypeVar("T")
_LOADING = threading.Lock()  # one from_pretrained at a time in this process, whichever pool asks


class ModelPool:
    def __init__(
        self,
        store: Store,
        cache_dir: Path,
        *,
        device: str = "cpu",
        env: Mapping[str, str] = os.environ,
        memory_budget_bytes: int | None = None,
    ) -> None:
        self._store = store
        self._cache_dir = cache_dir
        self._device = device
        self._env = env
        self._budget = memory_budget_bytes
        self._models: OrderedDict[tuple[str, str, str], Any] = OrderedDict()  # least recently used first
        self._sizes: dict[tuple[str, str, str], int] = {}
        self._key_locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        return self._device

    def stable_diffusion(self, reference: str, config: str = "") -> StableDiffusionComponents:
        """The SD components of `reference` (config: the component configs of a single-file checkpoint)."""
        key = ("sd", reference, config)
        return self._get(key, lambda resolved: load_stable_diffusion(resolved, device=self._device))

    def blip(self, reference: str) -> BlipComponents:
        return self._get(("blip", reference, ""), lambda resolved: load_blip(resolved, device=self._device))

    def clip(self, reference: str) -> ClipComponents:
        return self._get(("clip", reference, ""), lambda resolved: load_clip(resolved, device=self._device))

    def loaded_bytes(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    def loaded(self) -> list[tuple[str, str]]:
        """(kind, reference) of every loaded model."""
        with self._lock:
            return [(kind, reference) for kind, reference, _ in self._models]

    def _get(self, key: tuple[str, str, str], load: Callable[[ResolvedModel], T]) -> T:
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._models:
                    self._models.move_to_end(key)
                    return self._models[key]
            kind, reference, config = key
            started = time.monotonic()
            resolved = resolve_model(
                reference, config=config or None, store=self._store, cache_dir=self._cache_dir, env=self._env
            )
            with _LOADING:
                model = in_passing_thread(load, resolved)  # see torch_threads.py
            log.info(
                "loaded %s model",
                kind,
                extra={
                    "reference": reference,
                    "sha256": resolved.fingerprint.sha256,
                    "seconds": round(time.monotonic() - started, 2),
                },
            )
            with self._lock:
                self._models[key] = model
                self._sizes[key] = footprint_bytes(model)
                self._evict(keep=key)
            return model

    def _evict(self, *, keep: tuple[str, str, str]) -> None:
        if self._budget is None:
            return
        for key in list(self._models):
            if sum(self._sizes.values()) <= self._budget:
                return
            if key != keep:
                del self._models[key]
                size = self._sizes.pop(key)
                log.info(
                    "dropped %s model to stay within the memory budget",
                    key[0],
                    extra={"reference": key[1], "bytes": size},
                )


def footprint_bytes(model: Any) -> int:
    """Bytes of the parameters and buffers of every torch module among `model`'s fields."""
    total = 0
    for value in vars(model).values():
        if isinstance(value, torch.nn.Module):
            tensors = [*value.parameters(), *value.buffers()]
            total += sum(t.numel() * t.element_size() for t in tensors)
    return total


def stable_diffusion_pool(
    context: ServiceContext, *, memory_budget_bytes: int | None = None
) -> tuple[ModelPool, Callable[[], None]]:
    """The pool of a service that runs Stable Diffusion (trainer, preview), and its start-up load.

    TISTUDIO_SD_MODEL names a base model to load before the service turns SERVING, so the first request does
    not wait for it; requests may name other models, which load on demand.
    """
    models = ModelPool(
        context.store,
        context.runtime.cache_dir,
        device=context.runtime.device,
        env=context.env,
        memory_budget_bytes=memory_budget_bytes,
    )
    default_model = EnvReader(context.env).text("TISTUDIO_SD_MODEL")

    def preload() -> None:
        if default_model is not None:
            models.stable_diffusion(default_model)

    return models, preload
