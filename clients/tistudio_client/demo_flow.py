"""The main job, end to end through the SDK: what `make demo` runs and the end-to-end tests check.

    sample photos -> upload -> Preprocess (crop 1:1, resize) -> CaptionDataset (BLIP) -> fix the captions
    -> LintDataset -> CreateEmbedding -> PlanTraining -> StartTraining (recipe seed-a, scaled down) with previews
    and savepoints -> WatchJob to the end -> ContactSheet (progress by seeds and by weights, final exam) -> Export

On the toy world (the default models) BLIP writes "a purple heart on a green background"; fixing the captions
removes the concept's words ("on a green background"), as users do, so the embedding has to carry the concept.

Everything a user would keep lands in `out`: `embedding/` (every format), `previews/`, `sheets/`, `loss.csv`,
`loss.png`, `lint-report.txt`. Only the SDK is used, so this is also what an app calling tistudio does.
"""

from __future__ import annotations

import posixpath
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tistudio.caption.v1 import caption_pb2 as cap
from tistudio.common.v1 import common_pb2
from tistudio.preview.v1 import preview_pb2 as pv
from tistudio.trainer.v1 import trainer_pb2 as tr
from tistudio_client.client import Tistudio
from tistudio_client.datasets import download
from tistudio_client.loss_plot import loss_plot_png, read_loss_csv
from tistudio_client.sample_data import SAMPLE_CONCEPT, write_sample_dataset

__all__ = ["DemoSettings", "DemoResult", "run_demo_flow", "demo_spec", "remove_words", "wait_for_last_preview"]


@dataclass(frozen=True)
class DemoSettings:
    name: str = "h3artdemo"  # the trigger word: not a single token, so it cannot collide with a real word
    init_text: str = "shape"  # says nothing of the concept, so the previews show it arrive
    vectors: int = 2
    images: int = 12
    concept_words: str = f"{SAMPLE_CONCEPT.colour} {SAMPLE_CONCEPT.shape}"  # removed from the captions
    size: int = 64  # the toy and tiny models' native size; real SD1.5 would use 512
    max_steps: int = 300  # seed-a's 3000, scaled down
    every: int = 50  # preview and savepoint interval, as seed-a
    preview_steps: int = 20
    preview_seeds: tuple[int, ...] = (1, 2, 3, 4)
    sheet_cell: int = 128  # contact-sheet cells, upscaled from 64 px so that labels fit
    formats: tuple[str, ...] = ("safetensors", "pt", "diffusers")  # "pt" left out for SDXL, which A1111 cannot hold


@dataclass
class DemoResult:
    job: tr.Job
    events: list[tr.WatchJobResponse] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)  # what landed in `out`, by role


def demo_spec(settings: DemoSettings, embedding: str, dataset: str) -> tr.TrainingSpec:
    """seed-a (its schedule, template, tag dropout, latents) with fewer steps, a smaller image size and a
    full-cycle batch (4 x 3 = 12 images)."""
    return tr.TrainingSpec(
        recipe="seed-a",
        embedding=common_pb2.StorageRef(key=embedding),
        dataset=common_pb2.StorageRef(key=dataset),
        max_steps=settings.max_steps,
        width=settings.size,
        height=settings.size,
        batch_size=4,
        gradient_accumulation=max(1, settings.images // 4),
        save_every_steps=settings.every,
        preview_every_steps=settings.every,
        preview=tr.PreviewSettings(
            prompts=["a photo of [name]", "a photo of [name] on a green background"],
            seeds=list(settings.preview_seeds),
            weights=[0.8, 1.0, 1.2],
            steps=settings.preview_steps,
        ),
        seed=1234,
        log_every_steps=5,
    )


def run_demo_flow(
    client: Tistudio,
    out: Path,
    settings: DemoSettings | None = None,
    *,
    say: Callable[[str], None] = print,
    on_event: Callable[[tr.WatchJobResponse], None] | None = None,
) -> DemoResult:
    settings = settings or DemoSettings()
    photos = write_sample_dataset(out / "sample-photos", count=settings.images)
    say(f"sample dataset: {len(photos)} photos in {out / 'sample-photos'}")
    prepared = client.prepare_dataset(
        out / "sample-photos",
        "datasets/demo",
        preprocess=cap.PreprocessOptions(size=settings.size),
        embedding_name=settings.name,
        vectors_per_token=settings.vectors,
        write_report=False,  # the report that counts is the one after the captions are fixed
    )
    kept = len(prepared.outcomes) - len(prepared.skipped)
    say(f"preprocess: {kept} kept, {len(prepared.skipped)} skipped; captions written: {prepared.captioning.written}")
    for image in prepared.captions[:3]:
        say(f"  {posixpath.basename(image.image_key)}: {image.result.caption!r}")
    fixed = _fix_captions(client, [image.caption_key for image in prepared.captions], settings.concept_words)
    examples = "".join(f"; {before!r} -> {after!r}" for before, after in fixed[:2])
    say(f"captions fixed: {len(fixed)} lose {settings.concept_words!r}{examples}")
    lint = client.caption.lint_dataset(
        dataset=prepared.dataset,
        embedding_name=settings.name,
        vectors_per_token=settings.vectors,
        training_size=settings.size,
        write_report=True,
    )
    files: dict[str, Path] = {}
    files["lint"] = _write(out / "lint-report.txt", lint.report_text.encode())
    say(f"lint: {len(lint.findings)} findings (lint-report.txt)")

    embedding = client.trainer.create_embedding(
        name=settings.name, init_text=settings.init_text, vectors_per_token=settings.vectors, overwrite=True
    ).embedding
    spec = demo_spec(settings, embedding.file.key, prepared.dataset.key)
    plan = client.plan(spec).plan
    say(f"plan: {plan.end_step} steps of {plan.samples_per_step} samples, {plan.epochs:.1f} epochs")
    job = client.start(spec)
    say(f"training job {job.job_id}")
    events = []
    for event in client.watch(job.job_id):
        events.append(event)
        if on_event is not None:
            on_event(event)
        if event.HasField("progress"):
            p = event.progress
            rate = f"{p.samples_per_second:.1f} samples/s"
            say(f"  step {p.step}/{p.max_steps} loss {p.loss:.4f} lr {p.learning_rate:g} {rate}")
    job = client.trainer.get_job(job_id=job.job_id).job
    failure = f": {job.failure.code}: {job.failure.message}" if job.failure.code else ""
    say(f"job {tr.JobState.Name(job.state)} at step {job.step}{failure}")
    if job.state != tr.JOB_STATE_SUCCEEDED:
        return DemoResult(job, events, files)

    output = job.output.key
    wait_for_last_preview(client, f"{output}savepoints/{job.step:06d}/previews/manifest.json", say)
    files["loss_csv"] = _write(out / "loss.csv", client.store.get(f"{output}loss.csv"))
    files["loss_png"] = _write(out / "loss.png", loss_plot_png(read_loss_csv(files["loss_csv"].read_bytes())))
    for key in client.store.list(f"{output}savepoints/"):
        if "/previews/" in key.key:
            step_folder = key.key[len(output) + len("savepoints/") :].split("/")[0]
            download(client.store, key.key, out / "previews" / step_folder)
    files["previews"] = out / "previews"
    for columns, name in ((pv.SHEET_COLUMNS_SEEDS, "progress-seeds"), (pv.SHEET_COLUMNS_WEIGHTS, "progress-weights")):
        sheet = client.preview.contact_sheet(
            kind=pv.SHEET_KIND_PROGRESS,
            job_output=common_pb2.StorageRef(key=output),
            columns=columns,
            cell_size=settings.sheet_cell,
        )
        files[name] = _write(out / "sheets" / f"{name}.png", client.store.get(sheet.stored.key))
    final = job.latest_savepoint.embedding
    exam = client.preview.contact_sheet(
        kind=pv.SHEET_KIND_FINAL_EXAM,
        dataset=prepared.dataset,
        embedding=pv.EmbeddingRef(file=final, trigger=settings.name),
        seed=1,
        sampling=pv.SamplingSettings(steps=settings.preview_steps),
        cell_size=settings.sheet_cell,
    )
    files["final_exam"] = _write(out / "sheets" / "final-exam.png", client.store.get(exam.stored.key))
    sdxl = plan.model.family == common_pb2.MODEL_FAMILY_SDXL
    formats = [f for f in settings.formats if not (sdxl and f == "pt")]
    exported = client.export(job.job_id, out / "embedding", formats=formats)
    files.update({f"embedding_{i}": path for i, path in enumerate(exported)})
    say(f"exported {', '.join(posixpath.basename(str(p)) for p in exported)}")
    return DemoResult(job, events, files)


def remove_words(caption: str, words: str) -> str:
    """The caption without `words` and the article before them: "a purple star on a green background" ->
    "on a green background"; a caption without them comes back unchanged."""
    pattern = re.compile(rf"\b(?:an?\s+|the\s+)?{re.escape(words)}\b[\s,]*", re.IGNORECASE)
    return re.sub(r"\s{2,}", " ", pattern.sub("", caption)).strip(" ,")


def _fix_captions(client: Tistudio, caption_keys: list[str], words: str) -> list[tuple[str, str]]:
    """Rewrite each caption without `words`; returns the (before, after) pairs that changed."""
    changed = []
    for key in caption_keys:
        before = client.store.get(key).decode("utf-8").strip()
        after = remove_words(before, words)
        if after != before:
            client.store.put(key, (after + "\n").encode("utf-8"))
            changed.append((before, after))
    return changed


def wait_for_last_preview(client: Tistudio, manifest_key: str, say: Callable[[str], None]) -> None:
    """Previews render in the background, so the last one may land a little after the job ends."""
    deadline = time.monotonic() + 120
    while not client.store.exists(manifest_key):
        if time.monotonic() > deadline:
            say(f"the last preview ({manifest_key}) did not arrive within 120 s; the sheets show what there is")
            return
        time.sleep(0.25)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
