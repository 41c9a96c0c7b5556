"""Caption throughput and latency, with dynamic batching on and off: `make bench-caption`.

    python -m services.caption.bench --clients 1,4,16 --json bench.json

Clients are threads that each caption one image per call, one call after another, like RPC handlers serving
one-image Caption requests. The model is shaped like Salesforce/blip-image-captioning-base (ViT-B/16 at 384 px,
a BERT-base decoder, 30524-token vocab) with random weights, built offline once into `--cache-dir` and loaded
through the service's own loaders. Every caption has exactly `--new-tokens` tokens (min = max), so every image
costs the same work. Not part of `make test`: speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from prometheus_client import CollectorRegistry

from services.caption.captioning import BatchingSettings, Captioner, CaptionMetrics, GenerationSettings
from services.common.models import resolve_model
from services.common.models.loading import BlipComponents, load_blip
from services.common.models.tiny_vocab import bert_vocab

__all__ = ["build_blip_base_random", "run_benchmark", "main"]

log = logging.getLogger(__name__)

BERT_SPECIALS = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"}  # bert-base-uncased's ids
BERT_SIZE = 30522  # bert-base-uncased; BLIP appends [DEC] (its bos, 30522) and [ENC]


def _base_vocab() -> list[str]:
    """30522 word pieces in bert-base-uncased's layout (specials at their ids), the tiny vocab's words, filler."""
    pieces = [BERT_SPECIALS.get(i, f"[unused{i}]") for i in range(104)]
    words = [p for p in bert_vocab() if not p.startswith("[")]
    pieces += words + [f"##x{i}" for i in range(BERT_SIZE - len(pieces) - len(words))]
    return pieces


def build_blip_base_random(folder: Path) -> Path:
    """Save a BLIP-base-shaped captioner with seeded random weights to `folder` (reused when complete)."""
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    if (folder / "model.safetensors").exists() and (folder / "processor_config.json").exists():
        return folder
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = BertTokenizer(
        vocab={piece: i for i, piece in enumerate(_base_vocab())}, do_lower_case=True, bos_token="[DEC]"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    if len(tokenizer) != BERT_SIZE + 2 or tokenizer.bos_token_id != BERT_SIZE:
        raise RuntimeError(f"the generated vocab has {len(tokenizer)} tokens (bos {tokenizer.bos_token_id}); fix it")
    # BlipConfig's defaults are blip-image-captioning-base's shapes; the decoder is BERT-base (12 heads).
    # Vision weights get BERT's init std: BLIP's default (1e-10) would give every image the same embedding, unlike
    # a trained model.
    config = BlipConfig(
        text_config=dict(num_attention_heads=12, bos_token_id=BERT_SIZE, pad_token_id=0, sep_token_id=102),
        vision_config=dict(initializer_range=0.02),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BlipForConditionalGeneration(config)
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(), tokenizer=tokenizer)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def _client_images(count: int, size: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]


def _run_once(
    components: BlipComponents, args: argparse.Namespace, clients: int, batch: int, images: list[Image.Image]
) -> dict:
    """`clients` threads each caption `--images-per-client` images one by one; returns the measurements."""
    registry = CollectorRegistry()
    batching = BatchingSettings(max_batch_size=batch, max_delay_seconds=args.max_delay_ms / 1000)
    captioner = Captioner(
        lambda _: components, "bench", batching=batching, metrics=CaptionMetrics(registry), **_placement(args)
    )
    settings = GenerationSettings(min_length=args.new_tokens, max_length=args.new_tokens)
    latencies: list[float] = []
    lock, start = threading.Lock(), threading.Barrier(clients + 1)

    def client(index: int) -> None:
        start.wait()
        for i in range(args.images_per_client):
            began = time.perf_counter()
            captioner.caption([images[(index + i * clients) % len(images)]], settings)
            with lock:
                latencies.append(time.perf_counter() - began)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    captioner.close()
    batches = registry.get_sample_value("tistudio_caption_batch_size_count") or 1
    quantiles = statistics.quantiles(latencies, n=20, method="inclusive") if len(latencies) > 1 else latencies * 19
    return {
        "clients": clients,
        "batching": "on" if batch > 1 else "off",
        "images": len(latencies),
        "seconds": round(seconds, 3),
        "images_per_s": round(len(latencies) / seconds, 3),
        "p50_s": round(statistics.median(latencies), 3),
        "p95_s": round(quantiles[18], 3),
        "mean_batch": round(registry.get_sample_value("tistudio_caption_batch_size_sum") / batches, 2),
    }


def _placement(args: argparse.Namespace) -> dict:
    return {"device": args.device, "dtype": getattr(torch, args.dtype)}


def run_benchmark(args: argparse.Namespace) -> dict:
    """Build or reuse the model, warm up, and measure every (clients, batching) pair."""
    folder = build_blip_base_random(args.cache_dir / "blip-base-random")
    components = load_blip(resolve_model(str(folder), cache_dir=args.cache_dir), device=args.device)
    images = _client_images(max(args.clients) * 2, args.image_size)
    warm = Captioner(lambda _: components, "bench", batching=BatchingSettings(args.max_batch), **_placement(args))
    warm.caption(images[:2], GenerationSettings(min_length=args.new_tokens, max_length=args.new_tokens))
    warm.close()
    results = []
    for clients in args.clients:
        for batch in (1, args.max_batch):
            results.append(_run_once(components, args, clients, batch, images))
            log.info("measured %s", results[-1])
    by_key = {(r["clients"], r["batching"]): r["images_per_s"] for r in results}
    speedups = {str(c): round(by_key[c, "on"] / by_key[c, "off"], 2) for c in args.clients}
    return {
        "model": "BLIP-base-shaped, random weights (ViT-B/16 @ 384 px, BERT-base decoder, vocab 30524)",
        "device": args.device,
        "dtype": args.dtype,
        "torch_threads": torch.get_num_threads(),
        "new_tokens": args.new_tokens,
        "images_per_client": args.images_per_client,
        "image_size": args.image_size,
        "max_batch": args.max_batch,
        "max_delay_ms": args.max_delay_ms,
        "results": results,
        "speedup": speedups,
    }


def format_table(report: dict) -> str:
    lines = [
        f"{report['model']}",
        f"device {report['device']} {report['dtype']} ({report['torch_threads']} CPU threads), "
        f"{report['new_tokens']} new tokens, {report['images_per_client']} images per client, "
        f"batching on = max batch {report['max_batch']} / {report['max_delay_ms']} ms",
        "",
        f"{'clients':>7}  {'batching':>8}  {'images':>6}  {'images/s':>8}  {'p50 s':>7}  {'p95 s':>7}  "
        f"{'mean batch':>10}",
    ]
    for r in report["results"]:
        lines.append(
            f"{r['clients']:>7}  {r['batching']:>8}  {r['images']:>6}  {r['images_per_s']:>8.2f}  "
            f"{r['p50_s']:>7.2f}  {r['p95_s']:>7.2f}  {r['mean_batch']:>10.2f}"
        )
    lines.append("")
    lines += [f"batching speed-up at {c} clients: {s:.2f}x" for c, s in report["speedup"].items()]
    if "16" in report["speedup"]:
        # The caption issue's goal: at 16 clients, >= 3x on a GPU and > 1x on CPU.
        target, gpu = (3.0, True) if report["device"].startswith("cuda") else (1.0, False)
        met = report["speedup"]["16"] >= target if gpu else report["speedup"]["16"] > target
        lines.append(
            f"goal at 16 clients ({'>=' if gpu else '>'} {target:g}x on {'GPU' if gpu else 'CPU'}): "
            f"{'met' if met else 'NOT met'}"
        )
    return "\n".join(lines)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,4,16", help="comma-separated concurrent client counts")
    parser.add_argument(
        "--images-per-client",
        type=int,
        default=None,
        help="images each client captions (default: 16 on CUDA, 4 on CPU)",
    )
    parser.add_argument("--image-size", type=int, default=512, help="side of the clients' images (the model sees 384)")
    parser.add_argument("--new-tokens", type=int, default=20, help="tokens per caption (min = max)")
    parser.add_argument("--max-batch", type=int, default=16, help="max batch size with batching on")
    parser.add_argument(
        "--max-delay-ms", type=float, default=10.0, help="batching delay with batching on (the default)"
    )
    parser.add_argument("--device", default="cuda" if cuda else "cpu", help="cpu or cuda[:N] (default: cuda if any)")
    parser.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16"),
        default=None,
        help="default: float16 on CUDA, else float32",
    )
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/bench"), help="where the random model is kept")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    args.clients = sorted({int(c) for c in args.clients.split(",") if c.strip()})
    on_cuda = args.device.startswith("cuda")
    args.images_per_client = args.images_per_client or (16 if on_cuda else 4)
    args.dtype = args.dtype or ("float16" if on_cuda else "float32")
    if not args.clients or min(args.clients) < 1 or args.images_per_client < 1 or args.new_tokens < 1:
        parser.error("--clients, --images-per-client and --new-tokens must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import huggingface_hub.utils
    from transformers.utils import logging as hf_logging

    huggingface_hub.utils.disable_progress_bars()  # no "Writing model shards" / "Loading weights" bars in the table
    hf_logging.disable_progress_bar()
    report = run_benchmark(args)
    print(format_table(report))  # the benchmark's output is its table
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
