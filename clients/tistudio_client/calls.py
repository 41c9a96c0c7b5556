"""The one place the SDK invokes an RPC: default deadline, bearer token, retry policy and error mapping.

Deadlines. Every call gets one unless the caller passes `timeout=`: `QUICK_TIMEOUT` (30 s, the client's
`timeout`) for bookkeeping calls, `LONG_TIMEOUTS` for calls that run a model. A WatchJob connection lasts at most
`WATCH_CONNECTION_SECONDS`; `jobs.watch` reconnects from the last sequence, so a half-open connection is noticed.

Retries happen only on UNAVAILABLE (the request did not reach a healthy server, or the server went away) and
only for calls that are safe to repeat, with exponential back-off and full jitter (`RetryPolicy`):

- read-only: Caption, LintDataset, PlanTraining, GetJob, ListJobs, health Check;
- repeatable writes that produce the same objects again: Preprocess (same request, same destination),
  CaptionDataset (skips what an earlier run wrote), ExportEmbedding, RenderPreviews, ContactSheet, Evaluate;
- StartTraining only with a `request_id` (the trainer returns the job that id made); Generate only with an
  `output` (without one every attempt writes a new folder).

Never retried: CreateEmbedding (a lost success would come back as ALREADY_EXISTS: catch it and reuse the file,
or pass overwrite), PauseJob, ResumeJob and CancelJob (a repeat of a lost success fails FAILED_PRECONDITION).
A stream is retried only before its first message: later, repeating it would repeat events. WatchJob is
resumed by `jobs.watch` instead, from the last sequence it yielded.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from tistudio_client.errors import from_rpc_error

__all__ = [
    "QUICK_TIMEOUT",
    "LONG_TIMEOUTS",
    "WATCH_CONNECTION_SECONDS",
    "IDEMPOTENT",
    "RetryPolicy",
    "DEFAULT_RETRY",
    "Caller",
    "is_idempotent",
]

QUICK_TIMEOUT = 30.0
WATCH_CONNECTION_SECONDS = 300.0
# Calls that run a model or walk a whole dataset. Streams get an hour: a large dataset on CPU is slow.
LONG_TIMEOUTS: dict[str, float | None] = {
    "Caption": 600.0,
    "LintDataset": 600.0,
    "Generate": 600.0,
    "RenderPreviews": 600.0,
    "ContactSheet": 600.0,
    "Evaluate": 600.0,
    "PlanTraining": 120.0,  # loads the tokenizer and reads every caption
    "ExportEmbedding": 120.0,
    "Preprocess": 3600.0,
    "CaptionDataset": 3600.0,
    "WatchJob": WATCH_CONNECTION_SECONDS,
}

IDEMPOTENT = frozenset(
    {
        "Caption",
        "LintDataset",
        "Preprocess",
        "CaptionDataset",
        "PlanTraining",
        "GetJob",
        "ListJobs",
        "ExportEmbedding",
        "RenderPreviews",
        "ContactSheet",
        "Evaluate",
        "Check",
    }
)
# Idempotent only when the request says which job or folder a repeat must land on.
_CONDITIONAL: dict[str, Callable[[Any], bool]] = {
    "StartTraining": lambda request: bool(request.request_id),
    "Generate": lambda request: bool(request.output.key),
}


def is_idempotent(method: str, request: Any) -> bool:
    """Whether repeating `method` (short name, e.g. "GetJob") with `request` after UNAVAILABLE is safe."""
    if method in IDEMPOTENT:
        return True
    condition = _CONDITIONAL.get(method)
    return condition is not None and condition(request)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # in all, the first included; 1 turns retries off
    initial_backoff: float = 0.2  # seconds before the first retry (upper bound, see delay)
    max_backoff: float = 5.0
    multiplier: float = 2.0

    def delay(self, retry: int) -> float:
        """Seconds to sleep before retry number `retry` (0-based): full jitter, so clients that lost the same
        server do not come back in lockstep."""
        return random.uniform(0, min(self.max_backoff, self.initial_backoff * self.multiplier**retry))


DEFAULT_RETRY = RetryPolicy()


class Caller:
    """Invokes multicallables (stub attributes) with this client's deadline, token and retry policy."""

    def __init__(
        self,
        *,
        token: str | None = None,
        timeout: float = QUICK_TIMEOUT,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout
        self.retry = retry
        self._sleep = sleep

    def deadline_for(self, method: str, timeout: float | None = None) -> float | None:
        """The timeout a call gets: the caller's, else the method's long default, else the quick one."""
        if timeout is not None:
            return timeout
        return LONG_TIMEOUTS.get(method, self.timeout)

    def unary(self, method: str, call: grpc.UnaryUnaryMultiCallable, request: Any, timeout: float | None = None):
        """One unary call; retried on UNAVAILABLE when idempotent; failures raise a `TistudioError`."""
        attempts = self.retry.attempts if is_idempotent(method, request) else 1
        deadline = self.deadline_for(method, timeout)
        for attempt in range(attempts):
            try:
                return call(request, timeout=deadline, metadata=self._metadata)
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE or attempt + 1 >= attempts:
                    raise from_rpc_error(err) from err
            self._sleep(self.retry.delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def stream(
        self,
        method: str,
        call: grpc.UnaryStreamMultiCallable,
        request: Any,
        timeout: float | None = None,
        *,
        retry: bool = True,
    ) -> Iterator[Any]:
        """A server stream as an iterator; retried on UNAVAILABLE only before its first message.

        Closing the iterator (or dropping it) cancels the call, so the server stops working for nobody.
        """
        attempts = self.retry.attempts if retry and is_idempotent(method, request) else 1
        deadline = self.deadline_for(method, timeout)
        for attempt in range(attempts):
            responses = call(request, timeout=deadline, metadata=self._metadata)
            received = False
            try:
                for response in responses:
                    received = True
                    yield response
                return
            except grpc.RpcError as err:
                if received or err.code() != grpc.StatusCode.UNAVAILABLE or attempt + 1 >= attempts:
                    raise from_rpc_error(err) from err
            finally:
                responses.cancel()
            self._sleep(self.retry.delay(attempt))
