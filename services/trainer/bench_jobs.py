"""The trainer's multi-job table: N textual-inversion jobs on one loaded model, one after another or batched.

    rows = multi_job_rows(components, root, job_counts=(1, 4, 16), batch=1, size=64, steps=20, device="cpu",
                          precision="fp32")
    print(multi_job_table(rows, "CPU, toy SD1.x, 64 px, fp32"))

What is measured, per job count N and mode:
    sequential  the N runs trained one after another, each `TrainingSession.run()` (a group of one)
    batched     the N runs in one `TrainingGroup`: every round is one device batch of all N runs' micro-batches
Each job has its own seed (its index), its own embedding `job{i}x` (`vectors` vectors from "woman"), its own output
prefix, and the same dataset, "subject" template, constant rate 0.005, size, batch size and step count. Losses are
read once, at the last step (log_every_steps = steps), so training has one host sync per job.

Timing: all N sessions are prepared first (their VAE pass), timed on its own as `prepare_s`. The training clock
starts after that (CUDA: synchronized), and each job's time to finish is the clock when its outcome arrives (for
sequential runs that is cumulative: the last job waits for all before it). Aggregate samples/s is
N * steps * batch over the wall time until the last job ends. Before the timed runs, a 2-step warm-up in the same
mode (1 job for sequential, N for batched: the same device-batch shapes) takes lazy initialisation and, on CUDA,
cuDNN's autotuning out of the clock. Batched rows also give the rounds and the mean jobs per device batch, and the
speed-up over the sequential row of the same N.
"""

from __future__ import annotations

import functools
import itertools
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

from services.common.storage import LocalStore
from services.trainer.engine import (
    MemoryBudget,
    RoundReport,
    RunOutcome,
    TrainingGroup,
    TrainingSession,
    TrainingSpec,
    create_embedding,
)

__all__ = ["MODES", "multi_job_rows", "multi_job_table", "run_jobs"]

MODES = ("sequential", "batched")
WARMUP_STEPS = 2

_calls = itertools.count()  # a fresh output prefix per call, so runs never find another call's savepoints


def _sessions(
    components: Any,
    store: LocalStore,
    *,
    jobs: int,
    batch: int,
    size: int,
    steps: int,
    device: str,
    precision: str,
    vectors: int,
    tag: str,
) -> list[TrainingSession]:
    """`jobs` prepared sessions (each VAE-encodes the dataset once), seeds 0..jobs-1, triggers job{i}x."""
    sessions = []
    for i in range(jobs):
        spec = TrainingSpec(
            model="bench",
            embedding_key="",
            dataset="ds/",
            width=size,
            height=size,
            batch_size=batch,
            max_steps=steps,
            learning_rate="0.005",
            lr_scheduler="constant",
            template="subject",
            precision=precision,
            save_every_steps=0,
            log_every_steps=steps,
            seed=i,
        )
        embedding = create_embedding(components, f"job{i}x", "woman", vectors)
        sessions.append(
            TrainingSession.prepare(
                spec, components, store, output_prefix=f"{tag}/job{i}/", embedding=embedding, device=device
            )
        )
    return sessions


def _train(
    sessions: list[TrainingSession],
    mode: str,
    sync: Callable[[], None],
    memory: MemoryBudget | None = None,
    on_round: Callable[[RoundReport], None] | None = None,
) -> list[float]:
    """Train the sessions to their end; the perf_counter at which each job's outcome arrived, in arrival order."""
    finished: list[float] = []

    def done(result: RunOutcome | BaseException) -> None:
        if isinstance(result, BaseException):
            raise result
        if result.status != "completed":
            raise RuntimeError(f"a benchmark job ended {result.status} at step {result.step}")
        sync()
        finished.append(time.perf_counter())

    if mode == "sequential":
        for session in sessions:
            done(session.run())
        return finished
    group = TrainingGroup(sessions[0].components, sessions[0].precision, memory=memory, on_round=on_round)
    for session in sessions:
        session.start()
        group.add(session)
    while group.sessions:
        for _, result in group.round():
            done(result)
    return finished


def run_jobs(
    components: Any,
    root: str,
    *,
    jobs: int,
    mode: str,
    batch: int,
    size: int,
    steps: int,
    device: str,
    precision: str,
    vectors: int = 4,
    memory: MemoryBudget | None = None,
) -> dict[str, Any]:
    """`jobs` runs of `steps` steps trained in `mode` ("sequential" or "batched") on the dataset at `root`/ds/: the
    aggregate samples/s, each job's time to finish, the preparation time and (batched) the jobs per device batch.
    `memory`: the batched group's budget (None: every run in every round, smaller rounds only after an OOM)."""
    if mode not in MODES:
        raise ValueError(f"mode is {mode!r}: use one of {MODES}")
    cuda = torch.device(device).type == "cuda"
    sync = torch.cuda.synchronize if cuda else lambda: None
    prepare = functools.partial(
        _sessions,
        components,
        LocalStore(root),
        batch=batch,
        size=size,
        device=device,
        precision=precision,
        vectors=vectors,
    )
    tag = f"bench-jobs/{next(_calls)}-{mode}-{jobs}"
    warm = prepare(jobs=jobs if mode == "batched" else 1, steps=WARMUP_STEPS, tag=f"{tag}-warmup")
    _train(warm, mode, sync, memory)
    del warm

    sync()
    started = time.perf_counter()
    sessions = prepare(jobs=jobs, steps=steps, tag=tag)
    sync()
    prepare_s = time.perf_counter() - started
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rounds: list[RoundReport] = []
    started = time.perf_counter()
    finish = [t - started for t in _train(sessions, mode, sync, memory, rounds.append)]
    sync()
    total_s = time.perf_counter() - started

    result: dict[str, Any] = {
        "jobs": jobs,
        "mode": mode,
        "batch": batch,
        "size": size,
        "steps": steps,
        "precision": precision,
        "aggregate_samples_per_s": jobs * steps * batch / total_s,
        "train_s": total_s,
        "per_job_finish_s": finish,
        "mean_finish_s": statistics.fmean(finish),
        "max_finish_s": max(finish),
        "prepare_s": prepare_s,
    }
    if mode == "batched":
        result["rounds"] = len(rounds)
        result["mean_runs_per_round"] = statistics.fmean(r.runs for r in rounds) if rounds else 0.0
        result["capacity"] = rounds[-1].capacity if rounds else None  # samples per batch allowed at the end
    if cuda:
        result["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
        result["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    return result


def multi_job_rows(
    components: Any,
    root: str,
    *,
    job_counts: Iterable[int] = (1, 4, 16),
    batch: int,
    size: int,
    steps: int,
    device: str,
    precision: str,
    vectors: int = 4,
    repeats: int = 1,
    memory: MemoryBudget | None = None,
) -> list[dict[str, Any]]:
    """Sequential then batched for each job count (for 1 job the two are the same work; both are reported), run
    `repeats` times interleaved, the best aggregate of each mode kept (a neighbour's burst on a shared machine hits
    both). Each batched row's `speedup` is its aggregate samples/s over the sequential row's."""
    rows = []
    for jobs in job_counts:
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
        for _ in range(repeats):
            for mode in MODES:
                runs[mode].append(
                    run_jobs(
                        components,
                        root,
                        jobs=jobs,
                        mode=mode,
                        batch=batch,
                        size=size,
                        steps=steps,
                        device=device,
                        precision=precision,
                        vectors=vectors,
                        memory=memory,
                    )
                )
                if torch.device(device).type == "cuda":
                    torch.cuda.empty_cache()
        best = {mode: max(r, key=lambda row: row["aggregate_samples_per_s"]) for mode, r in runs.items()}
        for mode, row in best.items():
            row["all_samples_per_s"] = [r["aggregate_samples_per_s"] for r in runs[mode]]
        best["batched"]["speedup"] = (
            best["batched"]["aggregate_samples_per_s"] / best["sequential"]["aggregate_samples_per_s"]
        )
        rows.extend(best.values())
    return rows


def multi_job_table(rows: list[dict[str, Any]], title: str) -> str:
    """The rows as a printed table (with MFU and peak memory columns when the rows carry them)."""
    mfu = any("mfu" in row for row in rows)
    memory = any("peak_allocated_gib" in row for row in rows)
    header = (
        f"{'jobs':>4}  {'mode':<10} {'steps':>5} {'batch':>5} {'samples/s':>10} {'mean finish s':>14} "
        f"{'max finish s':>13} {'jobs/batch':>10} {'speed-up':>9}"
    )
    header += f" {'MFU':>6}" if mfu else ""
    header += f" {'peak GiB':>9}" if memory else ""
    lines = [f"\n{title}", header]
    for row in rows:
        per_batch = f"{row['mean_runs_per_round']:.1f}" if "mean_runs_per_round" in row else "-"
        speedup = f"{row['speedup']:.2f}x" if "speedup" in row else "-"
        line = (
            f"{row['jobs']:>4}  {row['mode']:<10} {row['steps']:>5} {row['batch']:>5} "
            f"{row['aggregate_samples_per_s']:>10.2f} {row['mean_finish_s']:>14.2f} {row['max_finish_s']:>13.2f} "
            f"{per_batch:>10} {speedup:>9}"
        )
        line += f" {row['mfu']:>6.1%}" if mfu else ""
        line += f" {row['peak_allocated_gib']:>9.2f}" if memory else ""
        lines.append(line)
    return "\n".join(lines)
