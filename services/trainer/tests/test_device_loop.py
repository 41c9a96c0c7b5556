"""The device loop: sessions handed over from several job threads train in shared batches per model and size, and
each thread gets its own outcome or exception back."""

from __future__ import annotations

import threading

import pytest
import torch

from services.common.storage import LocalStore
from services.trainer.device_loop import DeviceLoop, default_memory_budget
from services.trainer.engine import StopRequest, TrainingDiverged, TrainingSession, create_embedding, read_loss_csv
from services.trainer.engine.testing import tiny_spec, write_dataset


@pytest.fixture
def store(tmp_path):
    store = LocalStore(tmp_path)
    write_dataset(store, "ds/", 4)
    return store


def _session(components, store, name: str, **changes) -> TrainingSession:
    spec = tiny_spec(**(dict(save_every_steps=0, log_every_steps=1, seed=len(name)) | changes))
    embedding = create_embedding(components, name, "woman", 2)
    return TrainingSession.prepare(spec, components, store, output_prefix=f"{name}/", embedding=embedding)


def _in_threads(loop: DeviceLoop, sessions: dict[str, TrainingSession], **train_kwargs) -> dict[str, object]:
    results: dict[str, object] = {}
    start = threading.Barrier(len(sessions))

    def job(name: str, session: TrainingSession) -> None:
        start.wait()
        try:
            results[name] = loop.train(session, **train_kwargs.get(name, {}))
        except Exception as error:
            results[name] = error

    threads = [threading.Thread(target=job, args=item) for item in sessions.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def test_jobs_on_one_model_and_size_share_batches_and_other_sizes_train_apart(components, store):
    alone = {}
    for name, size in (("jobax", 32), ("jobbx", 32), ("jobcx", 48)):
        alone[name] = _session(components, store, name, width=size, height=size, max_steps=4).run()
    rounds = []
    loop = DeviceLoop(memory_gib=4, on_round=rounds.append)
    sessions = {
        name: TrainingSession.prepare(
            tiny_spec(save_every_steps=0, log_every_steps=1, seed=len(name), max_steps=4, width=size, height=size),
            components,
            store,
            output_prefix=f"together-{name}/",
            embedding=create_embedding(components, name, "woman", 2),
        )
        for name, size in (("jobax", 32), ("jobbx", 32), ("jobcx", 48))
    }
    results = _in_threads(loop, sessions)
    loop.close(timeout=10)
    for name, outcome in results.items():
        assert outcome.status == "completed" and outcome.step == 4
        torch.testing.assert_close(outcome.embedding.vectors[0], alone[name].embedding.vectors[0], rtol=1e-4, atol=1e-6)
        assert [r.loss for r in read_loss_csv(store, f"together-{name}/")] == pytest.approx(
            [r.loss for r in read_loss_csv(store, f"{name}/")], rel=1e-4
        )
    assert max(r.runs for r in rounds) == 2  # the two 32 px jobs; the 48 px job is a group of its own
    assert all(r.capacity is None or r.samples <= r.capacity for r in rounds)


def test_each_thread_gets_its_own_outcome_or_exception(components, store):
    healthy = _session(components, store, "healthyx", max_steps=3)
    broken = _session(components, store, "brokenx", max_steps=3)
    paused = _session(components, store, "pausedx", max_steps=6)
    original = broken.micro_batch_loss
    broken.micro_batch_loss = lambda batch, pred: original(batch, pred) * float("nan")
    loop = DeviceLoop(memory_gib=4)
    results = _in_threads(
        loop,
        {"healthy": healthy, "broken": broken, "paused": paused},
        paused={"should_stop": lambda: StopRequest("pause") if paused.step == 2 else None},
    )
    loop.close(timeout=10)
    assert results["healthy"].status == "completed" and isinstance(results["broken"], TrainingDiverged)
    assert (results["paused"].status, results["paused"].savepoint.step) == ("paused", 2)


def test_the_default_budget_is_a_share_of_free_memory():
    assert 0 < default_memory_budget(torch.device("cpu"))
