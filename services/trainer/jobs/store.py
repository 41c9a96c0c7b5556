"""Job records in the store: one `jobs/<job_id>/job.json` each, written whole (atomic per object), all loaded at start.

    jobs = JobStore(LocalStore("/data"))
    record, created = jobs.create("req-1", spec.to_record(), max_steps=spec.max_steps)
    jobs.save(record.replace(step=10))

A retried create with the same request_id and the same spec returns the existing job (created False); the same
request_id with other settings is refused with AlreadyExists(reason="REQUEST_ID_REUSED").
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from services.common.errors import AlreadyExists, NotFound
from services.common.storage import Store
from services.trainer.jobs.model import JobRecord, JobState, spec_fingerprint
from services.trainer.jobs.write_behind import WriteBehind

__all__ = ["JOBS_PREFIX", "JobStore", "job_prefix"]

log = logging.getLogger(__name__)

JOBS_PREFIX = "jobs/"


def job_prefix(job_id: str) -> str:
    return f"{JOBS_PREFIX}{job_id}/"


class JobStore:
    """The durable job table, cached in memory; thread-safe. Records are immutable: save a replaced copy."""

    def __init__(self, store: Store, *, clock: Any = time.time) -> None:
        self.store = store
        self._clock = clock
        self._lock = threading.RLock()
        self._jobs: dict[str, JobRecord] = {}
        self._by_request: dict[str, str] = {}
        self._writes = WriteBehind(store, "application/json")
        self._load()

    def _load(self) -> None:
        for info in self.store.list(JOBS_PREFIX):
            if not info.key.endswith("/job.json") or info.key.count("/") != 2:
                continue
            try:
                record = JobRecord.from_record(json.loads(self.store.get(info.key)))
            except (ValueError, KeyError, TypeError) as exc:
                # One unreadable record must not keep the service from starting; the others still load.
                log.error("skipping unreadable job record", extra={"key": info.key, "error": str(exc)})
                continue
            self._remember(record)

    def _remember(self, record: JobRecord) -> None:
        self._jobs[record.job_id] = record
        if record.request_id:
            self._by_request[record.request_id] = record.job_id

    def create(
        self,
        request_id: str,
        spec: Mapping[str, Any],
        *,
        max_steps: int,
        model: Mapping[str, Any] | None = None,
        fingerprint: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """A new QUEUED job, or the existing one for a retried request_id. Returns (record, created).
        `fingerprint` identifies the request (default: `spec_fingerprint(spec)`); the servicer passes the hash of
        the request as sent, so a retry matches even when the recipe or the dataset resolve differently now."""
        fingerprint = fingerprint or spec_fingerprint(spec)
        with self._lock:
            existing = self.find_by_request_id(request_id) if request_id else None
            if existing is not None:
                if existing.spec_fingerprint != fingerprint:
                    raise AlreadyExists(
                        f"request_id {request_id!r} was already used by job {existing.job_id} with other training "
                        "settings; use a new request_id for a new job, or resend the same settings to get that job",
                        reason="REQUEST_ID_REUSED",
                        field="request_id",
                        metadata={"job_id": existing.job_id, "request_id": request_id},
                    )
                return existing, False
            job_id = uuid.uuid4().hex
            now = self._clock()
            record = JobRecord(
                job_id=job_id,
                request_id=request_id,
                spec=dict(spec),
                spec_fingerprint=fingerprint,
                state=JobState.QUEUED,
                max_steps=max_steps,
                output_prefix=job_prefix(job_id),
                create_time=now,
                update_time=now,
                model=dict(model or {}),
            )
            self.save(record)
            return record, True

    def save(self, record: JobRecord) -> JobRecord:
        """Write the record (atomic put), then make it the cached copy. While the store is away the record is
        kept in memory only and written by `flush` once the store is back (the runner pauses the job then)."""
        with self._lock:
            data = json.dumps(record.to_record(), indent=1, allow_nan=False).encode()
            self._writes.put(f"{record.output_prefix}job.json", data)
            self._remember(record)
            return record

    def flush(self) -> None:
        """Write the records changed while the store was away; raises StoreUnavailable if it still is."""
        with self._lock:
            self._writes.flush()

    def get(self, job_id: str) -> JobRecord:
        with self._lock:
            record = self._jobs.get(job_id)
        if record is None:
            raise NotFound(
                f"no job {job_id!r}; ListJobs shows the jobs that exist",
                reason="JOB_NOT_FOUND",
                field="job_id",
                metadata={"job_id": job_id},
            )
        return record

    def find_by_request_id(self, request_id: str) -> JobRecord | None:
        with self._lock:
            job_id = self._by_request.get(request_id)
            return self._jobs[job_id] if job_id else None

    def list(self, states: Iterable[JobState] = ()) -> list[JobRecord]:
        """Newest first; only `states` when given."""
        wanted = set(states)
        with self._lock:
            records = [r for r in self._jobs.values() if not wanted or r.state in wanted]
        return sorted(records, key=lambda r: (r.create_time, r.job_id), reverse=True)
