"""Training jobs: durable records, numbered event logs, the state machine and the queue that runs them.

    store = LocalStore("/data")
    runner = JobRunner(JobStore(store), EventLog(store), run_job, concurrency=1)
    runner.recover(); runner.start()
    record, created = runner.submit(request_id, spec.to_record(), max_steps=spec.max_steps)
    for event in runner.watch(record.job_id, after=0, timeout=30): ...

Storage, under the job's output prefix `jobs/<job_id>/`: `job.json` (the record, rewritten whole on each change),
`events/<first_seq:08d>.jsonl` (the event log in segments), and whatever the run writes (savepoints, previews).
No protobuf and no torch here: the servicer converts, the run callable wraps the engine.
"""

from services.trainer.jobs.control import JobControl, JobStop
from services.trainer.jobs.events import EventLog, JobEvent, Notice, Progress, StateChanged
from services.trainer.jobs.model import (
    FINAL_STATES,
    IllegalTransition,
    JobOutcome,
    JobRecord,
    JobState,
    PreviewInfo,
    SavepointInfo,
    check_transition,
    spec_fingerprint,
)
from services.trainer.jobs.runner import JobRunner, RunJob
from services.trainer.jobs.store import JobStore, job_prefix

__all__ = [
    "FINAL_STATES",
    "EventLog",
    "IllegalTransition",
    "JobControl",
    "JobEvent",
    "JobOutcome",
    "JobRecord",
    "JobRunner",
    "JobState",
    "JobStop",
    "JobStore",
    "Notice",
    "PreviewInfo",
    "Progress",
    "RunJob",
    "SavepointInfo",
    "StateChanged",
    "check_transition",
    "job_prefix",
    "spec_fingerprint",
]
