"""The learning test and benchmark: teach the toy SD a concept through the services and judge what it draws.

    python -m bench.toy_learning [--seeds 64] [--out bench/results]      (or `make bench-toyworld`)

Everything goes through the SDK, as an app would: 16 photos of the concept (a shape in a colour, captions naming
only the background) -> prepare_dataset -> CreateEmbedding (init text "shape") -> StartTraining (recipe seed-a with
fewer steps, 64 px, 4 x 4 = the 16 images per step) -> Generate over many seeds -> the judge. The exam
(`services.toyworld.concept`) scores fidelity, editability and the weights 0.8 and 1.2 on the last savepoint,
and fidelity on the untrained embedding and on every savepoint, which gives the curve of the concept appearing.
The benchmark also asks the preview service for the progress contact sheet (steps x seeds) and writes the figures
as JSON and Markdown; `tests/test_toy_learning.py` runs the same flow and asserts the thresholds.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from io import BytesIO
from pathlib import Path

from PIL import Image

from services.toyworld import TOY_BLIP, TOY_SD
from services.toyworld.concept import Concept, learning_exam, write_concept_dataset
from services.toyworld.judge import Verdict, judge
from tistudio.caption.v1 import caption_pb2 as cap
from tistudio.common.v1 import common_pb2
from tistudio.preview.v1 import preview_pb2 as pv
from tistudio.trainer.v1 import trainer_pb2 as tr
from tistudio_client.client import Tistudio
from tistudio_client.demo_flow import wait_for_last_preview
from tistudio_client.local import LocalTrio, TrioConfig

__all__ = ["LearningSettings", "LearningResult", "run_learning", "main"]

log = logging.getLogger(__name__)

THRESHOLDS = {"fidelity": 0.90, "editability": 0.90, "weight_0.8": 0.80, "weight_1.2": 0.80}
UNTRAINED_MAX = 0.20
_BATCH = 16  # Generate's largest batch


@dataclass(frozen=True)
class LearningSettings:
    concept: Concept = Concept("heart", "pink")
    trigger: str = "h3artx"  # no word of the world, and more than one token
    init_text: str = "shape"
    vectors: int = 2
    images: int = 16
    max_steps: int = 1000  # seed-a's 3000 steps, scaled down to a third (its schedule as is)
    every: int = 100  # savepoints; the fidelity curve has a point per savepoint
    seeds: int = 64
    steps: int = 20  # sampling: A1111's defaults (Euler a, 20 steps, CFG 7)
    cfg_scale: float = 7.0
    previews: bool = False  # previews during training (the benchmark's contact sheet)
    curve: bool = True  # fidelity at every savepoint, not only the last


@dataclass
class LearningResult:
    job: tr.Job
    untrained: float  # fidelity of the init embedding
    scores: dict[str, float]  # the exam on the last savepoint
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, fidelity)
    seconds: dict[str, float] = field(default_factory=dict)
    sheet: bytes = b""

    def failures(self) -> list[str]:
        misses = [
            f"{name} {self.scores[name]:.0%} < {need:.0%}"
            for name, need in THRESHOLDS.items()
            if self.scores[name] < need
        ]
        if self.untrained > UNTRAINED_MAX:
            misses.append(f"untrained fidelity {self.untrained:.0%} > {UNTRAINED_MAX:.0%}")
        return misses


def run_learning(
    client: Tistudio, work: Path, settings: LearningSettings, say: Callable[[str], None] = print
) -> LearningResult:
    seconds: dict[str, float] = {}
    started = time.monotonic()
    photos = write_concept_dataset(work / "photos", settings.concept, count=settings.images)
    prepared = client.prepare_dataset(
        work / "photos",
        f"datasets/{settings.trigger}",
        preprocess=cap.PreprocessOptions(size=64, existing_caption=cap.EXISTING_CAPTION_ACTION_COPY),
        embedding_name=settings.trigger,
        vectors_per_token=settings.vectors,
    )
    say(f"dataset: {len(photos)} photos of a {settings.concept.words}, captions name only the background")
    created = client.trainer.create_embedding(
        name=settings.trigger, init_text=settings.init_text, vectors_per_token=settings.vectors, overwrite=True
    ).embedding
    job = client.start(_spec(settings, created.file.key, prepared.dataset.key))
    job = client.wait(job.job_id)
    seconds["dataset_and_training"] = round(time.monotonic() - started, 1)
    if job.state != tr.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"training ended {tr.JobState.Name(job.state)}: {job.failure.message}")
    say(f"dataset and {job.step} training steps in {seconds['dataset_and_training']} s")

    exam = learning_exam(settings.trigger, settings.concept, seeds=settings.seeds)
    last = job.latest_savepoint.embedding
    started = time.monotonic()
    untrained = exam.checks["fidelity"].passed(
        settings.concept, _verdicts(client, created.file, settings.trigger, exam.checks["fidelity"].orders, settings)
    )
    verdicts = {
        name: _verdicts(client, last, settings.trigger, check.orders, settings) for name, check in exam.checks.items()
    }
    scores = exam.score(verdicts)
    seconds["exam"] = round(time.monotonic() - started, 1)
    say(f"untrained fidelity {untrained:.0%}; " + ", ".join(f"{k} {v:.0%}" for k, v in scores.items()))
    result = LearningResult(job, untrained, scores, seconds=seconds)
    if settings.curve:
        started = time.monotonic()
        result.curve = _fidelity_curve(client, job, settings, exam)
        seconds["fidelity_curve"] = round(time.monotonic() - started, 1)
        say("fidelity by step: " + ", ".join(f"{step}: {f:.0%}" for step, f in result.curve))
    if settings.previews:
        wait_for_last_preview(client, f"{job.output.key}savepoints/{job.step:06d}/previews/manifest.json", say)
        sheet = client.preview.contact_sheet(
            kind=pv.SHEET_KIND_PROGRESS, job_output=job.output, columns=pv.SHEET_COLUMNS_SEEDS, cell_size=96
        )
        result.sheet = client.store.get(sheet.stored.key)
    return result


def _spec(settings: LearningSettings, embedding: str, dataset: str) -> tr.TrainingSpec:
    spec = tr.TrainingSpec(
        recipe="seed-a",
        embedding=common_pb2.StorageRef(key=embedding),
        dataset=common_pb2.StorageRef(key=dataset),
        max_steps=settings.max_steps,
        width=64,
        height=64,
        batch_size=4,
        gradient_accumulation=max(1, settings.images // 4),
        save_every_steps=settings.every,
        preview_every_steps=settings.every if settings.previews else 0,
        seed=1234,
    )
    if settings.previews:
        spec.preview.CopyFrom(
            tr.PreviewSettings(prompts=["a photo of [name]"], seeds=list(range(1, 7)), steps=settings.steps)
        )
    return spec


def _fidelity_curve(client: Tistudio, job: tr.Job, settings: LearningSettings, exam) -> list[tuple[int, float]]:
    check = exam.checks["fidelity"]
    curve = []
    for step in range(settings.every, job.step + 1, settings.every):
        ref = common_pb2.StorageRef(key=f"{job.output.key}savepoints/{step:06d}/{settings.trigger}.safetensors")
        verdicts = _verdicts(client, ref, settings.trigger, check.orders, settings)
        curve.append((step, check.passed(settings.concept, verdicts)))
    return curve


def _verdicts(
    client: Tistudio,
    embedding: common_pb2.StorageRef,
    trigger: str,
    orders: Sequence[tuple[str, int]],
    settings: LearningSettings,
) -> list[Verdict]:
    """Judge one image per (prompt, seed), asked for in batches of consecutive seeds of one prompt; the requests
    go out together so that the preview service batches them."""
    batches: list[tuple[str, int, int]] = []  # prompt, first seed, count
    for prompt, seed in orders:
        if batches and batches[-1][0] == prompt and batches[-1][1] + batches[-1][2] == seed and batches[-1][2] < _BATCH:
            batches[-1] = (prompt, batches[-1][1], batches[-1][2] + 1)
        else:
            batches.append((prompt, seed, 1))
    reference = pv.EmbeddingRef(file=embedding, trigger=trigger)
    sampling = pv.SamplingSettings(steps=settings.steps, cfg_scale=settings.cfg_scale, width=64, height=64)

    def render(batch: tuple[str, int, int]) -> list[Verdict]:
        prompt, seed, count = batch
        response = client.preview.generate(
            prompt=prompt, embeddings=[reference], seed=seed, batch_size=count, sampling=sampling, include_data=True
        )
        return [judge(Image.open(BytesIO(image.image.inline_data))) for image in response.images]

    with ThreadPoolExecutor(max_workers=4) as pool:
        return [verdict for verdicts in pool.map(render, batches) for verdict in verdicts]


def start_toy_trio(
    root: Path, *, sd_model: Path = TOY_SD, caption_model: Path = TOY_BLIP, env: dict[str, str] | None = None
) -> LocalTrio:
    store = root / "store"
    store.mkdir(parents=True, exist_ok=True)
    trio = LocalTrio(
        TrioConfig(
            store_url=store.as_uri(),
            caption_model=str(caption_model),
            sd_model=str(sd_model),
            metrics=False,
            cache_dir=str(root / "cache"),
            log_dir=root / "logs",
            extra_env={"TISTUDIO_DRAIN_SECONDS": "0", **(env or {})},
        )
    )
    trio.start()
    trio.wait_serving()
    return trio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=64)
    parser.add_argument("--max-steps", type=int, default=LearningSettings.max_steps)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = LearningSettings(seeds=args.seeds, max_steps=args.max_steps, previews=True)
    with tempfile.TemporaryDirectory(prefix="toy-learning-") as tmp:
        trio = start_toy_trio(Path(tmp))
        try:
            with Tistudio(**trio.addresses, store_url=trio.config.store_url) as client:
                result = run_learning(client, Path(tmp), settings)
        finally:
            trio.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "toy-learning.png").write_bytes(result.sheet)
    report = {
        "settings": {**asdict(settings), "concept": asdict(settings.concept)},
        "untrained_fidelity": result.untrained,
        "scores": result.scores,
        "thresholds": THRESHOLDS,
        "fidelity_by_step": result.curve,
        "seconds": result.seconds,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "failures": result.failures(),
    }
    (args.out / "toy-learning.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "toy-learning.md").write_text(markdown(report))
    print(markdown(report))
    return 1 if result.failures() else 0


def markdown(report: dict) -> str:
    settings = report["settings"]
    concept = f"{settings['concept']['colour']} {settings['concept']['shape']}"
    lines = [
        "# The toy world's learning test",
        "",
        f"`make bench-toyworld` ({report['machine']}): an embedding `{settings['trigger']}` ({settings['vectors']} "
        f"vectors, init text `{settings['init_text']}`) trained through the services on {settings['images']} photos "
        f"of a {concept} whose captions name only the background; recipe seed-a at {settings['max_steps']} steps, "
        f"64 px, batch 4 x {settings['images'] // 4}. Each check renders {settings['seeds']} seeds (Euler a, "
        f"{settings['steps']} steps, CFG {settings['cfg_scale']:g}) and the judge reads every picture.",
        "",
        "| check | prompt | passed | needed |",
        "|---|---|---|---|",
        f"| untrained (init embedding) | `a photo of [name]` | {report['untrained_fidelity']:.0%} | at most 20% |",
    ]
    prompts = {
        "fidelity": "a photo of [name]",
        "editability": "a photo of [name] on a <colour> background",
        "weight_0.8": "a photo of ([name]:0.8)",
        "weight_1.2": "a photo of ([name]:1.2)",
    }
    for name, score in report["scores"].items():
        lines.append(f"| {name} | `{prompts[name]}` | {score:.0%} | at least {report['thresholds'][name]:.0%} |")
    lines += [
        "",
        "Fidelity by savepoint: " + ", ".join(f"step {step}: {f:.0%}" for step, f in report["fidelity_by_step"]),
        "",
        f"Seconds: {', '.join(f'{k} {v}' for k, v in report['seconds'].items())}. "
        "The contact sheet `toy-learning.png` shows `a photo of [name]` at every savepoint (rows) for 6 seeds.",
        "",
        "Failures: " + ("; ".join(report["failures"]) or "none"),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
