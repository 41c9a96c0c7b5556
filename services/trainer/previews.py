"""Previews of a running job, rendered by the preview service in the background: training never waits for them.

    dispatcher = PreviewDispatcher(renderer)          # renderer None: no preview service configured
    dispatcher.submit(PreviewRequest(...), sink)      # returns at once; sink.report_preview / sink.notice later
    dispatcher.close(timeout=30)

One worker thread renders requests in order. When previews fall behind training (a slow preview GPU, a fast
tiny model) at most `max_pending` requests wait; the oldest is dropped with a notice, so the newest savepoint is
always the next one rendered and memory stays bounded. Every preview step that is not rendered says why, once per
job and reason: no preview service configured, the service unreachable, or the service refusing the request.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from services.common.diagnostics import Diagnostic, Severity
from services.trainer.job_spec import PreviewSettings
from services.trainer.jobs.model import PreviewInfo

__all__ = ["PreviewDispatcher", "PreviewRenderer", "PreviewRequest", "PreviewSink", "PreviewUnavailable"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreviewRequest:
    job_id: str
    step: int
    model: str  # the job's model reference
    model_config: str
    embedding_key: str  # the savepoint's .safetensors
    trigger: str  # the embedding's name, the word the prompts use
    prompts: tuple[str, ...]  # resolved: the job's preview prompts, or the last training prompt
    settings: PreviewSettings
    output_prefix: str  # beside the savepoint: savepoints/<step>/previews/


class PreviewUnavailable(Exception):
    """The preview could not be rendered; `code` and `message` go into the job's notice."""

    def __init__(self, code: str, message: str, suggestion: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.suggestion = suggestion


class PreviewRenderer(Protocol):
    def render(self, request: PreviewRequest) -> PreviewInfo:
        """Render and store the images; raise PreviewUnavailable when they cannot be."""
        ...


class PreviewSink(Protocol):
    def report_preview(self, preview: PreviewInfo) -> None: ...

    def notice(self, diagnostic: Diagnostic) -> None: ...


NOT_CONFIGURED = PreviewUnavailable(
    "PREVIEWS_NOT_CONFIGURED",
    "no preview service is configured, so no previews are rendered; training goes on",
    "Set TISTUDIO_PREVIEW_ADDRESS on the trainer to the preview service's host:port.",
)


class PreviewDispatcher:
    def __init__(
        self,
        renderer: PreviewRenderer | None,
        *,
        max_pending: int = 2,
        on_skipped: Callable[[str], None] = lambda code: None,
    ) -> None:
        self._renderer = renderer
        self._max_pending = max_pending
        self._on_skipped = on_skipped
        self._pending: deque[tuple[PreviewRequest, PreviewSink]] = deque()
        self._told: dict[str, str] = {}  # job_id -> the last reason its notice gave (one notice per reason)
        self._lock = threading.Condition()
        self._closed = False
        self._busy = False
        self._thread: threading.Thread | None = None

    @property
    def configured(self) -> bool:
        return self._renderer is not None

    def submit(self, request: PreviewRequest, sink: PreviewSink) -> None:
        """Queue the request and return; the sink hears of the preview, or of why there is none."""
        if self._renderer is None:
            self._skip(request, sink, NOT_CONFIGURED)
            return
        with self._lock:
            if self._closed:
                return
            if len(self._pending) >= self._max_pending:
                dropped, dropped_sink = self._pending.popleft()
                behind = PreviewUnavailable(
                    "PREVIEWS_BEHIND",
                    f"previews fell behind training; step {dropped.step} was not rendered so that newer steps are",
                    "Render previews less often (preview_every_steps) or give the preview service a faster GPU.",
                )
                self._skip(dropped, dropped_sink, behind)
            self._pending.append((request, sink))
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="preview-dispatch", daemon=True)
                self._thread.start()
            self._lock.notify_all()

    def idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is pending or rendering (tests, shutdown). True when idle."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._pending and not self._busy, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Render what is pending (up to `timeout`), then stop the worker."""
        self.idle(timeout)
        with self._lock:
            self._closed = True
            self._pending.clear()
            self._lock.notify_all()

    def _work(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._pending or self._closed)
                if self._closed:
                    return
                request, sink = self._pending.popleft()
                self._busy = True
            try:
                self._render(request, sink)
            finally:
                with self._lock:
                    self._busy = False
                    self._lock.notify_all()

    def _render(self, request: PreviewRequest, sink: PreviewSink) -> None:
        assert self._renderer is not None
        try:
            preview = self._renderer.render(request)
        except PreviewUnavailable as unavailable:
            self._skip(request, sink, unavailable)
            return
        except Exception:  # noqa: BLE001 - a preview bug must never touch the training job
            log.exception("preview rendering failed", extra={"job_id": request.job_id, "step": request.step})
            self._skip(request, sink, PreviewUnavailable("PREVIEW_FAILED", "rendering the preview failed"))
            return
        with self._lock:
            self._told.pop(request.job_id, None)  # working again: a later failure is news
        sink.report_preview(preview)

    def forget(self, job_id: str) -> None:
        """The job's run ended: its next run tells its reasons afresh (and the table stays small)."""
        with self._lock:
            self._told.pop(job_id, None)

    def _skip(self, request: PreviewRequest, sink: PreviewSink, why: PreviewUnavailable) -> None:
        self._on_skipped(why.code)
        with self._lock:
            if self._told.get(request.job_id) == why.code:
                return
            self._told[request.job_id] = why.code
        sink.notice(
            Diagnostic(
                Severity.WARNING,
                why.code,
                f"step {request.step}: {why.message}",
                why.suggestion,
                field="spec.preview_every_steps",
            )
        )
