"""`tistudio watch | pause | resume | cancel | jobs`: following and steering training jobs.

`watch` draws a progress bar on stderr (step/total, loss, learning rate, samples/s, ETA) with a line for each
state change, savepoint, preview set and notice, then prints the final state on stdout. It exits 0 when the job
SUCCEEDED and 1 when it FAILED or was CANCELLED. With --json every event is a JSON line on stdout instead.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tistudio.trainer.v1 import trainer_pb2 as tr
from tistudio_client.cli_common import (
    diagnostic_lines,
    enum_choices,
    enum_name,
    open_client,
    print_json,
    print_json_line,
    to_dict,
)
from tistudio_client.client import Tistudio

__all__ = ["register", "follow", "job_line"]

STATES = enum_choices(tr.JobState, "JOB_STATE_")


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    watch = commands.add_parser("watch", parents=[common], help="follow a job to its end; exit 1 unless it succeeds")
    watch.add_argument("job_id", metavar="JOB_ID")
    watch.set_defaults(run=_watch, command="watch")
    for verb, text in (("pause", "save the exact state and free the GPU"), ("resume", "continue a paused job")):
        action = commands.add_parser(verb, parents=[common], help=text)
        action.add_argument("job_id", metavar="JOB_ID")
        action.set_defaults(run=_control, command=verb)
    cancel = commands.add_parser("cancel", parents=[common], help="stop a job within one step; savepoints stay")
    cancel.add_argument("job_id", metavar="JOB_ID")
    cancel.set_defaults(run=_control, command="cancel")
    jobs = commands.add_parser("jobs", parents=[common], help="list training jobs, newest first")
    jobs.add_argument("--state", action="append", choices=list(STATES), help="only jobs in this state (repeatable)")
    jobs.add_argument("--limit", type=int, default=0, help="at most this many jobs (default all)")
    jobs.set_defaults(run=_jobs, command="jobs")


def _watch(args: argparse.Namespace) -> int:
    with open_client(args) as ts:
        return follow(ts, args.job_id, as_json=args.json)


def follow(ts: Tistudio, job_id: str, *, as_json: bool = False) -> int:
    """Print the job's events until it ends; 0 when it SUCCEEDED, 1 otherwise."""
    if as_json:
        for event in ts.watch(job_id):
            print_json_line(event)
    else:
        # Asking for the job first reports an unknown id before any bar is drawn, and gives the bar its total.
        bar = _bar(ts.trainer.get_job(job_id=job_id).job.max_steps)
        try:
            for event in ts.watch(job_id):
                _show(bar, event)
        finally:
            bar.close()
    job = ts.trainer.get_job(job_id=job_id).job
    if not as_json:
        print(job_line(job))
        for line in diagnostic_lines([job.failure] if job.failure.code else []):
            print(line)
    return 0 if job.state == tr.JOB_STATE_SUCCEEDED else 1


def _show(bar: Any, event: tr.WatchJobResponse) -> None:
    kind = event.WhichOneof("event")
    if kind == "progress":
        p = event.progress
        bar.update_to(p.step, p.max_steps)
        eta = _duration(p.eta.seconds + p.eta.nanos / 1e9) if p.HasField("eta") else "?"
        bar.set_postfix_str(
            f"loss {p.loss:.4f}, lr {p.learning_rate:.3g}, {p.samples_per_second:.2f} samples/s, eta {eta}"
        )
    elif kind == "savepoint_saved":
        s = event.savepoint_saved
        bar.note(f"savepoint step {s.step}: {s.embedding.key} (loss {s.loss:.4f})")
    elif kind == "preview_rendered":
        p = event.preview_rendered
        bar.note(f"preview step {p.step}: {len(p.items)} images, manifest {p.manifest.key}")
        for item in p.items:
            key = item.image.ref.key if item.image.HasField("ref") else "(inline)"
            bar.note(f"  {key}  seed {item.seed} weight {item.weight:g}  {item.prompt}")
    elif kind == "state_changed":
        c = event.state_changed
        bar.note(f"state {enum_name(tr.JobState, c.current, 'JOB_STATE_')}")
        for line in diagnostic_lines([c.reason] if c.reason.code else []):
            bar.note(line)
    elif kind == "notice":
        for line in diagnostic_lines([event.notice]):
            bar.note(line)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _bar(total: int) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional: fall back to a carriage-return line
        return _PlainBar(total)

    class _Tqdm(tqdm):
        def update_to(self, step: int, total: int) -> None:
            if total and self.total != total:
                self.total = total
            self.update(step - self.n)

        def note(self, text: str) -> None:
            self.write(text, file=sys.stderr)  # tqdm.write defaults to stdout, which --json and scripts own

    return _Tqdm(total=total or None, unit="step", file=sys.stderr, dynamic_ncols=True, mininterval=0.2)


class _PlainBar:
    """A progress line redrawn with a carriage return, for when tqdm is not installed."""

    def __init__(self, total: int) -> None:
        self.step, self.total, self.postfix = 0, total, ""

    def update_to(self, step: int, total: int) -> None:
        self.step, self.total = step, total or self.total

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text
        width = 30
        done = int(width * self.step / self.total) if self.total else 0
        total = self.total or "?"
        sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {self.step}/{total} {text}")
        sys.stderr.flush()

    def note(self, text: str) -> None:
        sys.stderr.write(f"\r{text}\n")
        if self.postfix:
            self.set_postfix_str(self.postfix)

    def close(self) -> None:
        if self.postfix:
            sys.stderr.write("\n")


def job_line(job: tr.Job) -> str:
    """One line about a job: id, state, step/max, loss and its latest savepoint."""
    state = enum_name(tr.JobState, job.state, "JOB_STATE_").upper()
    line = f"job {job.job_id} {state} at step {job.step}/{job.max_steps}"
    if job.loss:
        line += f", loss {job.loss:.4f}"
    if job.latest_savepoint.embedding.key:
        line += f", latest savepoint {job.latest_savepoint.embedding.key}"
    return line


def _control(args: argparse.Namespace) -> int:
    with open_client(args) as ts:
        method = {"pause": ts.trainer.pause_job, "resume": ts.trainer.resume_job, "cancel": ts.trainer.cancel_job}
        job = method[args.command](job_id=args.job_id).job
    if args.json:
        print_json(job)
    else:
        print(job_line(job))
    return 0


def _jobs(args: argparse.Namespace) -> int:
    states = [STATES[s] for s in args.state or []]
    jobs: list[tr.Job] = []
    with open_client(args) as ts:
        token = ""
        while True:
            page = ts.trainer.list_jobs(page_size=100, page_token=token, states=states)
            jobs.extend(page.jobs)
            token = page.next_page_token
            if not token or (args.limit and len(jobs) >= args.limit):
                break
    if args.limit:
        jobs = jobs[: args.limit]
    if args.json:
        print_json([to_dict(job) for job in jobs])
        return 0
    rows = [("JOB_ID", "STATE", "STEP", "LOSS", "EMBEDDING", "CREATED")]
    for job in jobs:
        created = job.create_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S") if job.HasField("create_time") else ""
        rows.append(
            (
                job.job_id,
                enum_name(tr.JobState, job.state, "JOB_STATE_"),
                f"{job.step}/{job.max_steps}",
                f"{job.loss:.4f}" if job.loss else "-",
                job.spec.embedding.key.rsplit("/", 1)[-1],
                created,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if len(rows) == 1:
        print("no jobs")
    return 0
