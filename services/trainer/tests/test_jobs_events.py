"""The event log: sequence numbers, durable segments, and watches that miss nothing, also across a restart."""

from __future__ import annotations

import threading

import pytest

from services.common.diagnostics import Diagnostic, Severity
from services.common.storage import LocalStore
from services.trainer.jobs import EventLog, JobState, Notice, PreviewInfo, Progress, SavepointInfo, StateChanged


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path)


def _payloads():
    note = Diagnostic(Severity.WARNING, "PREVIEWS_SKIPPED", "no preview service", suggestion="set PREVIEW_URL")
    return [
        StateChanged(None, JobState.QUEUED),
        StateChanged(JobState.QUEUED, JobState.PREPARING),
        Progress(step=1, max_steps=4, loss=0.5, learning_rate=0.005, samples_per_second=2.0, eta_seconds=3.0),
        SavepointInfo(1, "jobs/j/s/1/e.safetensors", "jobs/j/s/1/manifest.json", 0.5, 10.0),
        PreviewInfo(1, "jobs/j/p/1/manifest.json", ({"prompt": "a photo of anna", "seed": 7},)),
        Notice(note),
        StateChanged(JobState.RUNNING, JobState.FAILED, Diagnostic(Severity.ERROR, "INTERNAL", "boom")),
    ]


def test_sequences_segments_and_reload(store):
    log = EventLog(store, segment_events=3)
    payloads = _payloads()
    events = [log.append("j", payload) for payload in payloads]
    assert [e.sequence for e in events] == list(range(1, 8))
    assert [e.kind for e in events][2:6] == ["progress", "savepoint_saved", "preview_rendered", "notice"]
    keys = [info.key for info in store.list("jobs/j/events/")]
    assert keys == ["jobs/j/events/00000001.jsonl", "jobs/j/events/00000004.jsonl", "jobs/j/events/00000007.jsonl"]

    reloaded = EventLog(store, segment_events=3)
    assert [e.payload for e in reloaded.events_after("j", 0)] == payloads
    assert [e.sequence for e in reloaded.events_after("j", 5)] == [6, 7]
    assert reloaded.last_sequence("j") == 7
    # Appends continue in the open segment with the next number.
    assert reloaded.append("j", Progress(step=2, max_steps=4)).sequence == 8
    assert [e.sequence for e in EventLog(store, segment_events=3).events_after("j", 6)] == [7, 8]
    assert EventLog(store).events_after("other", 0) == []


def test_watch_blocks_until_events_arrive_and_ends_after_the_final_one(store):
    log = EventLog(store)
    log.append("j", StateChanged(None, JobState.QUEUED))
    seen = []
    waiting = threading.Event()

    def watcher():
        for event in log.watch("j", after=1, timeout=5):
            seen.append(event.sequence)
            waiting.set()

    thread = threading.Thread(target=watcher)
    thread.start()
    log.append("j", StateChanged(JobState.QUEUED, JobState.PREPARING))
    assert waiting.wait(5)
    log.append("j", StateChanged(JobState.PREPARING, JobState.CANCELLED))
    thread.join(5)
    assert not thread.is_alive()
    assert seen == [2, 3]
    # At the final event already seen: nothing more, at once. From earlier: the rest, then the end.
    assert list(log.watch("j", after=3)) == []
    assert [e.sequence for e in log.watch("j", after=0)] == [1, 2, 3]


def test_watch_times_out_without_events_and_ends_on_close(store):
    log = EventLog(store)
    log.append("j", StateChanged(None, JobState.QUEUED))
    assert list(log.watch("j", after=1, timeout=0.05)) == []
    done = threading.Event()

    def watcher():
        list(log.watch("j", after=1))
        done.set()

    thread = threading.Thread(target=watcher)
    thread.start()
    log.close()
    assert done.wait(5)
    thread.join(5)
