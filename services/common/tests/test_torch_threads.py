"""in_passing_thread: the caller gets the work's result or exception, and no OpenMP team outlives the work."""

from __future__ import annotations

import contextvars
import os
import threading
import time

import pytest
import torch

from services.common.torch_threads import in_passing_thread

_request = contextvars.ContextVar("request", default="none")


def _parallel_work() -> float:
    # big enough for at::parallel_for to split it over the OpenMP team
    return float(torch.ones(4_000_000).mul_(2).sum())


def _native_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _settled_native_threads(above: int, wait: float = 5.0) -> int:
    deadline = time.monotonic() + wait
    while _native_threads() > above and time.monotonic() < deadline:
        time.sleep(0.02)
    return _native_threads()


def test_returns_the_result_and_passes_arguments():
    assert in_passing_thread(lambda a, *, b: a + b, 2, b=3) == 5


def test_raises_the_work_s_exception_in_the_caller():
    def fail() -> None:
        raise ValueError("dataset/broken.png is not an image")

    with pytest.raises(ValueError, match="broken.png"):
        in_passing_thread(fail)


def test_runs_on_another_thread_with_the_caller_s_context():
    _request.set("job-7")
    seen = in_passing_thread(lambda: (threading.current_thread() is threading.main_thread(), _request.get()))
    assert seen == (False, "job-7")


def _on_a_long_lived_thread(work, *, settle: bool) -> tuple[int, int]:
    """Native threads of the process just before and just after `work` ran on a thread that then lives on."""
    counts: list[int] = []
    done, release = threading.Event(), threading.Event()

    def live() -> None:
        counts.append(_native_threads())
        work()
        counts.append(_settled_native_threads(above=counts[0]) if settle else _native_threads())
        done.set()
        release.wait()

    thread = threading.Thread(target=live)
    thread.start()
    try:
        done.wait()
        return counts[0], counts[1]
    finally:
        release.set()
        thread.join()


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts native threads through Linux /proc")
@pytest.mark.skipif(torch.get_num_threads() < 2, reason="one torch thread never forms an OpenMP team")
def test_no_openmp_team_outlives_the_work():
    before, after = _on_a_long_lived_thread(lambda: in_passing_thread(_parallel_work), settle=True)
    assert after == before

    # the contrast: the same work run by the long-lived thread itself leaves its team behind
    before, after = _on_a_long_lived_thread(_parallel_work, settle=False)
    assert after > before
