"""Heavy torch work from long-lived threads runs on a thread that ends with it.

    components = in_passing_thread(load_stable_diffusion, resolved, device="cpu")

Why: torch's OpenMP runtime on Linux (libgomp) gives every thread that runs a parallel region a team of worker
threads, kept for as long as that thread lives. Once the process holds more team threads than it has cores, libgomp
throttles every team: between parallel regions its workers spin 100 times instead of 300,000 and then sleep on a
futex (libgomp's GOMP_SPINCOUNT documentation; OMP_WAIT_POLICY=ACTIVE only raises that to 1,000). A training loop
is thousands of small parallel regions per step, so one idle team left behind by a job thread that loaded a model
or encoded its dataset made the trainer's device loop 2.2x slower on a 2-core machine (the toy learning run:
41 s per 100 steps, 18 s once the job's set-up ran on a passing thread). Long-lived threads (job workers, gRPC
handlers) that do occasional heavy torch work next to a loop that owns the device hand that work to a passing
thread, whose team goes away with it.

The work runs in a copy of the caller's context variables; torch's grad mode is per thread, so the work sets its
own (the loaders and the engine do).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["in_passing_thread"]

P = ParamSpec("P")
T = TypeVar("T")


def in_passing_thread(work: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `work(*args, **kwargs)` on a new thread, wait for it, and return its result or raise its exception."""
    context = contextvars.copy_context()
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(context.run(work, *args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - handed back to the caller's thread as is
            failure.append(error)

    thread = threading.Thread(target=run, name=f"passing-{threading.current_thread().name}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
