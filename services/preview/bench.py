"""Preview service overhead and embedding swap time: `make bench-preview` (not part of `make test`).

    python -m services.preview.bench --json .cache/bench/preview.json

The same image (prompt, seed, Euler a, steps, size, CFG 7) is made three ways, interleaved round by round so a busy
moment on a shared machine hits every path alike:

    diffusers direct   StableDiffusionPipeline built from the loaded components (a fresh Euler a scheduler from the
                       model's config, no safety checker), then `image.save(BytesIO, "PNG")`: the service stores
                       PNGs, so the direct path pays for one too (PIL's default level 6; ours writes level 4 plus
                       the infotext chunk)
    tistudio domain    `Renderer.render` in-process, no server: prompt encoding, the batcher's sampler thread, PNG
    tistudio service   a real preview service (`start_service`, port 0, a local store) called over a gRPC channel:
                       `Generate` with the images stored, not inline

on the tiny model (64 px: nearly all overhead, reported anyway) and on an SD1.5-shaped model with random weights
(built once into `--cache-dir`/sd15-shaped with the trainer benchmark's builder). The goal: the service within 5% of
diffusers direct. Seconds per image are the median and min over `--repeats` rounds after a warm-up.

Embedding swap, through the service with the base model loaded: requests with embedding A, then B, then A again,
and fresh files after that. The cost of a first-time embedding (store read + parse + check) is the first request
using a file minus the repeat request right after it (cached); these requests use `--swap-steps` steps at
`--swap-size` px so that milliseconds are not lost in sampling noise. Goal: no base-model reload (the service's
model pool hands out one components object, the UNet is the same object, the loaded-models gauge reads 1) and well
under a second. `EmbeddingLibrary.load` + `check` alone is timed on fresh files too.

On the CPU, glibc malloc's defaults return torch's large activations to the kernel and fault them in again on every
use; how much depends on the calling thread's arena, so a path's time can move by tens of percent with the thread it
runs in. The table shows page faults and kernel time per image; compare with the allocator pinned, e.g.
`MALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 make bench-preview`.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import torch

__all__ = ["build_sd15_shaped", "main"]

log = logging.getLogger(__name__)

PROMPT = "a photo of a cat sitting on a wooden table, detailed, soft light"
SEED = 1234
CFG = 7.0
TRIGGER = "benchsubject"  # every swap embedding uses this trigger, so every swap request has the same prompt
GOAL_OVERHEAD = 0.05
GOAL_SWAP_SECONDS = 1.0


# --- the SD1.5-shaped model ----------------------------------------------------------------------------------------
def build_sd15_shaped(folder: Path, tiny_sd: Path) -> Path:
    """An SD1.5-shaped diffusers folder with seeded random weights (the trainer benchmark's components), in tiny-sd's
    layout with its tokenizer; built into a temporary folder and renamed, so an existing folder is complete."""
    if (folder / "model_index.json").exists():
        return folder
    from diffusers import StableDiffusionPipeline

    from services.trainer.bench import sd15_components

    started = time.monotonic()
    log.info("building the SD1.5-shaped model into %s (once)", folder)
    components = sd15_components("cpu", torch.float32)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe = StableDiffusionPipeline(
        vae=components.vae,
        text_encoder=components.text_encoder,
        tokenizer=components.tokenizer,
        unet=components.unet,
        scheduler=components.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(tmp, safe_serialization=True)
    scheduler_json = tmp / "scheduler" / "scheduler_config.json"  # SD1.5 ships clip_sample false, as tiny-sd does
    scheduler_json.write_text(json.dumps({**json.loads(scheduler_json.read_text()), "clip_sample": False}, indent=2))
    shutil.rmtree(tmp / "tokenizer")
    shutil.copytree(tiny_sd / "tokenizer", tmp / "tokenizer")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    log.info("built the SD1.5-shaped model in %.0f s", time.monotonic() - started)
    return folder


def _tiny_sd(models: Path) -> Path:
    from services.common.models.tiny import build_tiny_models, is_current_build, tiny_model_paths

    return tiny_model_paths(models)["sd"] if is_current_build(models) else build_tiny_models(models)["sd"]


# --- the three paths -----------------------------------------------------------------------------------------------
class _Service:
    """A preview service in this process on port 0, its model pool watched, and a gRPC stub to it."""

    def __init__(self, model: Path, store_root: Path, cache_dir: Path, device: str) -> None:
        import grpc

        from services.common.model_pool import ModelPool
        from services.common.runtime import start_service
        from services.preview import service
        from tistudio.preview.v1 import preview_pb2_grpc

        pools: list[_WatchedPool] = []

        class _WatchedPool(ModelPool):
            """Keeps every SD components object it hands out: a reload would add a second one."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.handed_out: list[Any] = []
                pools.append(self)

            def stable_diffusion(self, reference: str, config: str = "") -> Any:
                components = super().stable_diffusion(reference, config)
                if not any(c is components for c in self.handed_out):
                    self.handed_out.append(components)
                return components

        env = {
            "TISTUDIO_STORE_URL": store_root.resolve().as_uri(),
            "TISTUDIO_CACHE_DIR": str(cache_dir.resolve()),
            "TISTUDIO_PREVIEW_PORT": "0",
            "TISTUDIO_PREVIEW_METRICS_PORT": "off",
            "TISTUDIO_DRAIN_SECONDS": "0",
            "TISTUDIO_LOG_LEVEL": "ERROR",
            "TISTUDIO_DEVICE": device,
            "TISTUDIO_SD_MODEL": str(model.resolve()),
            "HF_HUB_OFFLINE": "1",
        }
        with mock.patch.object(service, "ModelPool", _WatchedPool):
            self.running = start_service(service.DEFINITION, env)
        self.pool = pools[0]
        started = time.monotonic()
        while not self.running.loaded.wait(0.5):
            if self.running.failed.is_set():
                raise RuntimeError(f"the preview service failed to load {model} (see its log above)")
        self.load_s = time.monotonic() - started
        self.channel = grpc.insecure_channel(self.running.server.address)
        self.stub = preview_pb2_grpc.PreviewServiceStub(self.channel)

    def generate(self, steps: int, size: int, embedding_key: str = "", prompt: str = PROMPT) -> None:
        from tistudio.common.v1 import common_pb2
        from tistudio.preview.v1 import preview_pb2 as pb

        request = pb.GenerateRequest(
            prompt=prompt,
            negative_prompt="",
            seed=SEED,
            sampling=pb.SamplingSettings(
                steps=steps, cfg_scale=CFG, sampler=common_pb2.SAMPLER_EULER_A, width=size, height=size
            ),
            output=common_pb2.StorageRef(key="bench/generations/"),
        )
        if embedding_key:
            request.embeddings.add(file=common_pb2.StorageRef(key=embedding_key), trigger=TRIGGER)
        response = self.stub.Generate(request, timeout=600)
        if len(response.images) != 1 or response.images[0].image.WhichOneof("source") != "ref":
            raise RuntimeError(f"expected one stored image, got {response.images}")

    def loaded_sd_gauge(self) -> float | None:
        return self.running.server.registry.get_sample_value("tistudio_preview_loaded_models", {"kind": "sd"})

    def close(self) -> None:
        self.channel.close()
        self.running.server.stop(grace=0)


def _load_components(model: Path, cache_dir: Path, device: str) -> Any:
    from services.common.models import resolve_model
    from services.common.models.loading import load_stable_diffusion

    return load_stable_diffusion(resolve_model(str(model), cache_dir=cache_dir), device=device)


def _direct(components: Any) -> Callable[[int, int], bytes]:
    """diffusers' StableDiffusionPipeline on the same modules, plus the PNG the service would store."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline

    def run(steps: int, size: int) -> bytes:
        pipe = StableDiffusionPipeline(
            vae=components.vae,
            text_encoder=components.text_encoder,
            tokenizer=components.tokenizer,
            unet=components.unet,
            scheduler=EulerAncestralDiscreteScheduler.from_config(components.scheduler.config),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.set_progress_bar_config(disable=True)
        image = pipe(
            prompt=PROMPT,
            negative_prompt="",
            num_inference_steps=steps,
            guidance_scale=CFG,
            height=size,
            width=size,
            generator=torch.Generator("cpu").manual_seed(SEED),
            output_type="pil",
        ).images[0]
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return buffer.getvalue()

    return run


def _domain(components: Any, model: Path) -> tuple[Callable[[int, int], bytes], Callable[[], None]]:
    from services.common.models import model_display_name
    from services.preview.rendering import ImageOrder, LoadedModel, Renderer, Sampling

    renderer = Renderer()
    loaded = LoadedModel(str(model), model_display_name(str(model)), components)

    def run(steps: int, size: int) -> bytes:
        sampling = Sampling(steps=steps, cfg_scale=CFG, sampler="euler_a", width=size, height=size)
        return renderer.render(loaded, [], [ImageOrder(PROMPT, "", SEED)], sampling)[0].png

    return run, renderer.close


def _timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _timed_with_faults(fn: Callable[[], Any]) -> tuple[float, int, float]:
    """Seconds, and the process's minor page faults and system CPU seconds meanwhile (only this path runs then).
    On the CPU, glibc malloc hands torch's large activations back to the kernel and faults them in again; how often
    depends on the calling thread's arena, which can move one path's time by tens of percent."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    seconds = _timed(fn)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return seconds, after.ru_minflt - before.ru_minflt, after.ru_stime - before.ru_stime


def _summary(times: list[float]) -> dict[str, Any]:
    return {"median_s": statistics.median(times), "min_s": min(times), "all_s": times}


def _same_image(a: bytes, b: bytes) -> float:
    """Largest pixel difference (0-255) between two PNGs: the paths must make the same image."""
    import numpy as np
    from PIL import Image

    pixels = [np.asarray(Image.open(io.BytesIO(d)).convert("RGB"), dtype=np.int16) for d in (a, b)]
    return float(np.abs(pixels[0] - pixels[1]).max())


def measure_overhead(
    label: str, model: Path, service: _Service, components: Any, steps: int, size: int, repeats: int
) -> dict[str, Any]:
    """A warm-up image per path, then `repeats` rounds of direct, domain and service, rotated each round."""
    direct, (domain, close_domain) = _direct(components), _domain(components, model)
    paths: dict[str, Callable[[int, int], Any]] = {
        "direct": direct,
        "domain": domain,
        "service": lambda s, z: service.generate(s, z),
    }
    try:
        log.info("%s: warming up (one image per path)", label)
        max_diff = _same_image(direct(steps, size), domain(steps, size))
        service.generate(steps, size)
        times: dict[str, list[float]] = {name: [] for name in paths}
        faults: dict[str, list[int]] = {name: [] for name in paths}
        system: dict[str, list[float]] = {name: [] for name in paths}
        names = list(paths)
        for round_ in range(repeats):
            order = names[round_ % 3 :] + names[: round_ % 3]
            for name in order:
                seconds, minor_faults, system_s = _timed_with_faults(lambda path=paths[name]: path(steps, size))
                times[name].append(seconds)
                faults[name].append(minor_faults)
                system[name].append(system_s)
            log.info("%s: round %d/%d: %s", label, round_ + 1, repeats, {n: round(t[-1], 3) for n, t in times.items()})
    finally:
        close_domain()
    result = {"model": label, "steps": steps, "size": size, "repeats": repeats, "max_pixel_diff": max_diff}
    for name, t in times.items():
        result[name] = _summary(t)
        result[name]["minor_faults_median"] = statistics.median(faults[name])
        result[name]["system_cpu_s_median"] = statistics.median(system[name])
    for name in ("domain", "service"):
        for stat in ("median_s", "min_s"):
            result[name][f"overhead_{stat[:-2]}"] = result[name][stat] / result["direct"][stat] - 1
        # The same round's ratio, whose median shrugs off a neighbour's load that comes and goes between rounds.
        ratios = [t / d - 1 for t, d in zip(times[name], times["direct"], strict=True)]
        result[name]["overhead_paired_median"] = statistics.median(ratios)
    return result


# --- embedding swap ------------------------------------------------------------------------------------------------
def _put_embedding(store: Any, key: str, width: int, seed: int) -> None:
    from services.common.embeddings import Embedding, EmbeddingFormat, write_embedding

    vectors = torch.randn(4, width, generator=torch.Generator().manual_seed(seed)) * 0.01
    store.put(key, write_embedding(Embedding(TRIGGER, vectors), EmbeddingFormat.SAFETENSORS))


def measure_swap(
    label: str, service: _Service, store: Any, width: int, steps: int, size: int, fresh: int
) -> dict[str, Any]:
    """A, A, B, B, A through the service, then `fresh` new files each used twice; the base model stays put."""
    prefix = f"bench/embeddings/{label}/"
    keys = {name: f"{prefix}{name}.safetensors" for name in ["a", "b"] + [f"fresh{i}" for i in range(fresh)]}
    for seed, key in enumerate(keys.values()):
        _put_embedding(store, key, width, seed)
    unet = service.pool.handed_out[0].unet
    prompt = f"a photo of {TRIGGER} sitting on a wooden table"

    def run(name: str = "") -> float:
        return _timed(lambda: service.generate(steps, size, keys.get(name, ""), prompt))

    for _ in range(2):
        run()  # warm-up at the swap settings, no embedding
    sequence = [(name, run(name)) for name in ("", "", "a", "a", "b", "b", "a")]
    pairs = [(run(f"fresh{i}"), run(f"fresh{i}")) for i in range(fresh)]
    first_costs = [sequence[2][1] - sequence[3][1], sequence[4][1] - sequence[5][1]]
    first_costs += [first - repeat for first, repeat in pairs]
    components = service.pool.handed_out
    return {
        "model": label,
        "steps": steps,
        "size": size,
        "sequence": [{"embedding": name or "none", "seconds": t} for name, t in sequence],
        "fresh_pairs_s": pairs,
        "first_load_added_s": _summary(first_costs),
        "swap_back_to_a_s": sequence[6][1],
        "cached_request_s": statistics.median([sequence[3][1], sequence[5][1], sequence[6][1]]),
        "base_model_loads": len(components),
        "pool_loaded": [list(entry) for entry in service.pool.loaded()],
        "loaded_models_gauge_sd": service.loaded_sd_gauge(),
        "unet_unchanged": len(components) == 1 and components[0].unet is unet,
    }


def measure_library_load(store: Any, width: int, count: int) -> dict[str, Any]:
    """`EmbeddingLibrary.load` + `check` of `count` fresh files, and of cached ones (the request path's part)."""
    from services.preview.embedding_library import EmbeddingLibrary

    library = EmbeddingLibrary(store)
    keys = [f"bench/library/{width}/e{i}.safetensors" for i in range(count)]
    for i, key in enumerate(keys):
        _put_embedding(store, key, width, 1000 + i)

    def load(key: str) -> None:
        library.check(library.load(key, trigger=TRIGGER, field="embedding"), (width,), model_name="bench")

    load(keys[0])  # imports and first-call costs
    fresh = [_timed(lambda key=key: load(key)) for key in keys[1:]]
    cached = [_timed(lambda key=key: load(key)) for key in keys[1:]]
    size = store.stat(keys[0]).size
    return {"width": width, "file_bytes": size, "fresh": _summary(fresh), "cached": _summary(cached)}


# --- report --------------------------------------------------------------------------------------------------------
def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"Preview overhead vs diffusers direct: device {report['device']}, {report['torch_threads']} torch threads, "
        f"Euler a, CFG {CFG:g}, seconds per image (median / min of the rounds; paired: median of each round's "
        "ratio to direct; faults: minor page faults per image, sys: kernel CPU seconds per image); glibc malloc "
        f"settings: {' '.join(f'{k}={v}' for k, v in report['malloc_env'].items()) or 'defaults'}",
        "",
        f"{'model':<13} {'px':>4} {'steps':>5} {'rounds':>6}  {'path':<17} {'median s':>9} {'min s':>8} "
        f"{'overhead med':>12} {'overhead min':>12} {'paired med':>10} {'faults':>9} {'sys s':>6}",
    ]
    for row in report["overhead"]:
        for name, title in (
            ("direct", "diffusers direct"),
            ("domain", "tistudio domain"),
            ("service", "tistudio gRPC"),
        ):
            r = row[name]
            over = f"{'':>12} {'':>12} {'':>10}"
            if name != "direct":
                paired = r["overhead_paired_median"]
                over = f"{r['overhead_median']:>+12.1%} {r['overhead_min']:>+12.1%} {paired:>+10.1%}"
            lines.append(
                f"{row['model']:<13} {row['size']:>4} {row['steps']:>5} {row['repeats']:>6}  {title:<17} "
                f"{r['median_s']:>9.3f} {r['min_s']:>8.3f} {over} {r['minor_faults_median']:>9.0f} "
                f"{r['system_cpu_s_median']:>6.2f}"
            )
        met = row["service"]["overhead_median"] <= GOAL_OVERHEAD
        lines.append(
            f"{'':<13} goal: service <= {GOAL_OVERHEAD:.0%} over direct (median): {'met' if met else 'NOT met'}; "
            f"direct vs domain image max pixel diff {row['max_pixel_diff']:g}"
        )
    for swap in report["swap"]:
        seq = "  ".join(f"{s['embedding']}:{s['seconds']:.3f}" for s in swap["sequence"])
        added = swap["first_load_added_s"]
        lines += [
            "",
            f"Embedding swap via the service, {swap['model']} ({swap['size']} px, {swap['steps']} steps per request)",
            f"  request seconds in order: {seq}",
            f"  first use of a new embedding adds {1000 * added['median_s']:+.1f} ms median, "
            f"{1000 * added['min_s']:+.1f} ms min (first minus cached repeat, {len(added['all_s'])} files); "
            f"swap back to A (cached): {swap['swap_back_to_a_s']:.3f} s vs cached {swap['cached_request_s']:.3f} s",
            f"  base model loads: {swap['base_model_loads']}; pool: {swap['pool_loaded']}; "
            f"tistudio_preview_loaded_models{{kind=sd}} = {swap['loaded_models_gauge_sd']:g}; "
            f"UNet unchanged: {swap['unet_unchanged']}",
        ]
        met = swap["base_model_loads"] == 1 and swap["unet_unchanged"] and added["median_s"] < GOAL_SWAP_SECONDS
        lines.append(
            f"  goal: no base-model reload and well under {GOAL_SWAP_SECONDS:g} s: {'met' if met else 'NOT met'}"
        )
    lines += ["", "EmbeddingLibrary.load + check alone (4 vectors, safetensors, local store)"]
    for lib in report["library_load"]:
        lines.append(
            f"  width {lib['width']:>4} ({lib['file_bytes']} bytes): fresh {1000 * lib['fresh']['median_s']:.2f} ms "
            f"median / {1000 * lib['fresh']['min_s']:.2f} min, cached {1000 * lib['cached']['median_s']:.3f} ms "
            f"median ({len(lib['fresh']['all_s'])} files)"
        )
    return "\n".join(lines)


# --- main ----------------------------------------------------------------------------------------------------------
def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models"), help="the tiny models (built if missing)")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/bench"), help="the SD1.5-shaped model, hashes")
    parser.add_argument("--json", type=Path, default=Path(".cache/bench/preview.json"))
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N], for all three paths")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds on the tiny model")
    parser.add_argument("--steps", type=int, default=20, help="tiny model steps (A1111's default 20)")
    parser.add_argument("--size", type=int, default=64, help="tiny model size (its native 64 px)")
    parser.add_argument("--skip-sd15", action="store_true", help="only the tiny model")
    parser.add_argument("--sd15-repeats", type=int, default=5, help="timed rounds on the SD1.5-shaped model")
    parser.add_argument("--sd15-steps", type=int, default=8)
    parser.add_argument("--sd15-size", type=int, default=128, help="128 px keeps a 2-core CPU run to minutes")
    parser.add_argument("--swap-steps", type=int, default=1, help="steps of each embedding swap request")
    parser.add_argument("--swap-size", type=int, default=64, help="size of each embedding swap request")
    parser.add_argument("--swap-fresh", type=int, default=6, help="new embedding files timed first vs repeat")
    parser.add_argument("--library-files", type=int, default=50, help="fresh files for EmbeddingLibrary.load alone")
    args = parser.parse_args(argv)
    if min(args.repeats, args.sd15_repeats, args.steps, args.sd15_steps, args.swap_steps, args.library_files) < 1:
        parser.error("--repeats, --sd15-repeats, --*steps and --library-files must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    # Own handler: the in-process service sends the root logger's records to stdout as JSON.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    import huggingface_hub.utils
    from transformers.utils import logging as hf_logging

    from services.common.storage import LocalStore

    huggingface_hub.utils.disable_progress_bars()  # no "Writing model shards" / "Loading weights" bars in the table
    hf_logging.disable_progress_bar()

    args.cache_dir.mkdir(parents=True, exist_ok=True)
    tiny = _tiny_sd(args.models)
    runs = [("tiny SD1.x", tiny, 32, args.steps, args.size, args.repeats)]
    if not args.skip_sd15:
        sd15 = build_sd15_shaped(args.cache_dir / "sd15-shaped", tiny)
        runs.append(("SD1.5-shaped", sd15, 768, args.sd15_steps, args.sd15_size, args.sd15_repeats))
    report: dict[str, Any] = {
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},  # glibc tuning, if any
        "prompt": PROMPT,
        "seed": SEED,
        "cfg_scale": CFG,
        "sampler": "euler_a",
        "overhead": [],
        "swap": [],
        "library_load": [],
    }
    with tempfile.TemporaryDirectory(prefix="preview-bench-", dir=args.cache_dir) as tmp:
        store = LocalStore(tmp)
        for label, model, width, steps, size, repeats in runs:
            log.info("%s: loading %s (direct/domain copy and the service's own)", label, model)
            components = _load_components(model, args.cache_dir, args.device)
            service = _Service(model, Path(tmp), args.cache_dir, args.device)
            try:
                report["overhead"].append(measure_overhead(label, model, service, components, steps, size, repeats))
                log.info("%s: embedding swap", label)
                report["swap"].append(
                    measure_swap(label, service, store, width, args.swap_steps, args.swap_size, args.swap_fresh)
                )
                report["overhead"][-1]["service_load_s"] = service.load_s
            finally:
                service.close()
            del components, service
            report["library_load"].append(measure_library_load(store, width, args.library_files))
    print(format_table(report))  # the benchmark's output is its table
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
