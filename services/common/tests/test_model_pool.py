"""The model pool: one load per reference, and the memory budget that drops the least recently used models."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest
import torch

from services.common import model_pool
from services.common.model_pool import ModelPool, footprint_bytes
from services.common.storage import LocalStore


@dataclass
class _Modules:
    layer: torch.nn.Module
    other: torch.nn.Module
    name: str = "not a module"


def _pool(tmp_path, **kwargs) -> ModelPool:
    return ModelPool(LocalStore(tmp_path / "store"), tmp_path / "cache", env={}, **kwargs)


def _tensor_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


@pytest.fixture(scope="module")
def refs(tiny_models) -> dict[str, str]:
    return {kind: str(tiny_models[kind]) for kind in ("sd", "clip", "blip")}


@pytest.fixture(scope="module")
def sizes(refs, tmp_path_factory) -> dict[str, int]:
    """Footprint of each tiny model, from one pool with no budget."""
    pool = _pool(tmp_path_factory.mktemp("sizes"))
    return {
        "sd": footprint_bytes(pool.stable_diffusion(refs["sd"])),
        "clip": footprint_bytes(pool.clip(refs["clip"])),
        "blip": footprint_bytes(pool.blip(refs["blip"])),
    }


def _load(pool: ModelPool, refs: dict[str, str], kind: str):
    load = {"sd": pool.stable_diffusion, "clip": pool.clip, "blip": pool.blip}[kind]
    return load(refs[kind])


def test_footprint_counts_parameters_and_buffers_of_module_fields_only() -> None:
    layer = torch.nn.Linear(3, 2)  # 6 weights + 2 biases, float32
    other = torch.nn.BatchNorm1d(4).half()  # 8 parameters + 8 running stats (fp16) + 1 int64 counter
    assert footprint_bytes(_Modules(layer, other)) == 8 * 4 + 16 * 2 + 8


def test_footprint_of_stable_diffusion_is_unet_vae_and_text_encoder(refs, tmp_path) -> None:
    sd = _pool(tmp_path).stable_diffusion(refs["sd"])
    expected = _tensor_bytes(sd.unet) + _tensor_bytes(sd.vae) + _tensor_bytes(sd.text_encoder)
    assert expected > 0
    assert footprint_bytes(sd) == expected


def test_without_a_budget_every_model_stays(refs, sizes, tmp_path) -> None:
    pool = _pool(tmp_path)
    assert pool.loaded() == [] and pool.loaded_bytes() == 0
    for kind in ("sd", "clip", "blip"):
        _load(pool, refs, kind)
    assert pool.loaded() == [("sd", refs["sd"]), ("clip", refs["clip"]), ("blip", refs["blip"])]
    assert pool.loaded_bytes() == sum(sizes.values())


def test_over_budget_the_least_recently_loaded_model_is_dropped(refs, sizes, tmp_path) -> None:
    assert sizes["blip"] <= sizes["clip"] < sizes["sd"]  # so the budget below fits any two holding clip or blip
    pool = _pool(tmp_path, memory_budget_bytes=sizes["sd"] + sizes["clip"])
    sd = _load(pool, refs, "sd")
    _load(pool, refs, "clip")
    assert pool.loaded_bytes() == sizes["sd"] + sizes["clip"]

    _load(pool, refs, "blip")
    assert pool.loaded() == [("clip", refs["clip"]), ("blip", refs["blip"])]
    assert pool.loaded_bytes() == sizes["clip"] + sizes["blip"]
    reloaded = _load(pool, refs, "sd")  # dropped: asking again loads it anew
    assert reloaded is not sd
    assert pool.loaded() == [("blip", refs["blip"]), ("sd", refs["sd"])]


def test_using_a_model_makes_it_recent_so_another_is_dropped(refs, sizes, tmp_path) -> None:
    pool = _pool(tmp_path, memory_budget_bytes=sizes["sd"] + sizes["clip"])
    sd = _load(pool, refs, "sd")
    _load(pool, refs, "clip")
    assert _load(pool, refs, "sd") is sd  # a hit: same object, and now the most recently used

    _load(pool, refs, "blip")
    assert pool.loaded() == [("sd", refs["sd"]), ("blip", refs["blip"])]
    assert pool.loaded_bytes() == sizes["sd"] + sizes["blip"]
    assert _load(pool, refs, "sd") is sd


def test_the_model_just_loaded_stays_even_alone_over_budget(refs, sizes, tmp_path) -> None:
    pool = _pool(tmp_path, memory_budget_bytes=1)
    clip = _load(pool, refs, "clip")
    assert pool.loaded() == [("clip", refs["clip"])]
    assert pool.loaded_bytes() == sizes["clip"]

    _load(pool, refs, "sd")
    assert pool.loaded() == [("sd", refs["sd"])]
    assert pool.loaded_bytes() == sizes["sd"]
    assert _load(pool, refs, "clip") is not clip


def test_concurrent_requests_for_one_model_load_it_once(refs, tmp_path, monkeypatch) -> None:
    loads = []
    real_load_clip = model_pool.load_clip

    def slow_counting_load(resolved, **kwargs):
        loads.append(resolved)
        time.sleep(0.2)  # long enough for the other threads to arrive while this load runs
        return real_load_clip(resolved, **kwargs)

    monkeypatch.setattr(model_pool, "load_clip", slow_counting_load)
    pool = _pool(tmp_path)
    start = threading.Barrier(4)
    results: list[object] = []
    errors: list[BaseException] = []

    def request() -> None:
        start.wait()
        try:
            results.append(pool.clip(refs["clip"]))
        except BaseException as exc:  # reported by the assertion below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=request) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert len(loads) == 1
    assert len(results) == 4 and all(result is results[0] for result in results)
    assert pool.loaded() == [("clip", refs["clip"])]


def test_loads_of_different_models_in_two_pools_never_overlap(refs, tmp_path, monkeypatch) -> None:
    """from_pretrained patches torch globally while it builds weights, so loads must take turns process-wide."""
    spans: list[tuple[float, float]] = []
    real_clip, real_blip = model_pool.load_clip, model_pool.load_blip

    def timed(real):
        def load(resolved, **kwargs):
            started = time.monotonic()
            time.sleep(0.1)  # widen the window in which an unserialised second load would start
            model = real(resolved, **kwargs)
            spans.append((started, time.monotonic()))
            return model

        return load

    monkeypatch.setattr(model_pool, "load_clip", timed(real_clip))
    monkeypatch.setattr(model_pool, "load_blip", timed(real_blip))
    first, second = _pool(tmp_path / "a"), _pool(tmp_path / "b")
    threads = [
        threading.Thread(target=first.clip, args=(refs["clip"],)),
        threading.Thread(target=second.blip, args=(refs["blip"],)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    (a_start, a_end), (b_start, b_end) = sorted(spans)
    assert a_end <= b_start
