"""Runs trained together through shared device batches match the same runs trained alone.

Each run here differs from the others in what a shared batch must keep apart: seed, trigger and vector count,
batch size and accumulation, learning-rate schedule, template (so conditioning lengths), length. The reference is
each run alone (`TrainingSession.run`, a group of one) from the same seeds; together, every run's embedding and
loss curve must match it within 1e-4 relative.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from services.common.storage import LocalStore
from services.trainer.engine import (
    MemoryBudget,
    StopRequest,
    TrainingDiverged,
    TrainingGroup,
    TrainingSession,
    create_embedding,
    latest_savepoint,
    read_loss_csv,
)
from services.trainer.engine.testing import tiny_spec, write_dataset

RTOL = 1e-4

LONG_CAPTION = ", ".join(f"detail number {i} of the scene" for i in range(14))  # > 75 tokens: several chunks

RUNS = {
    "a": dict(seed=1, batch_size=2, gradient_accumulation=1, learning_rate="0.02", max_steps=6, vectors=2),
    "b": dict(seed=2, batch_size=1, gradient_accumulation=3, learning_rate="0.05:2, 0.01", max_steps=5, vectors=3),
    "c": dict(seed=3, batch_size=3, gradient_accumulation=2, learning_rate="0.01", max_steps=4, vectors=1),
}


@pytest.fixture
def store(tmp_path):
    store = LocalStore(tmp_path)
    write_dataset(store, "ds/", 6)
    write_dataset(store, "long/", 6, seed=5)
    for i in range(6):
        store.put(f"long/{i:03d}.txt", f"a woman, {LONG_CAPTION}".encode())
    return store


def _session(components, store, name: str, prefix: str, **changes) -> TrainingSession:
    settings = RUNS[name] | changes
    vectors = settings.pop("vectors")
    spec = tiny_spec(template="photo_filewords", save_every_steps=0, log_every_steps=1, **settings)
    embedding = create_embedding(components, f"subj{name}x", "woman", vectors)
    return TrainingSession.prepare(spec, components, store, output_prefix=prefix, embedding=embedding)


def _alone(components, store, name: str, **changes) -> tuple[torch.Tensor, list[float]]:
    session = _session(components, store, name, f"alone-{name}/", **changes)
    outcome = session.run()
    return outcome.embedding.vectors[0], [row.loss for row in read_loss_csv(store, f"alone-{name}/")]


def _together(group: TrainingGroup, sessions: dict[str, TrainingSession]) -> dict[str, object]:
    results: dict[str, object] = {}
    names = {id(session): name for name, session in sessions.items()}
    while group.sessions:
        for session, result in group.round():
            results[names[id(session)]] = result
    return results


def _assert_same(store, name: str, prefix: str, vectors: torch.Tensor, reference) -> None:
    alone_vectors, alone_losses = reference
    torch.testing.assert_close(vectors, alone_vectors, rtol=RTOL, atol=RTOL * alone_vectors.abs().max().item())
    losses = [row.loss for row in read_loss_csv(store, prefix)]
    assert losses == pytest.approx(alone_losses, rel=RTOL)


def test_runs_trained_together_match_each_run_trained_alone(components, store):
    reference = {name: _alone(components, store, name) for name in RUNS}
    sessions = {name: _session(components, store, name, f"together-{name}/") for name in RUNS}
    rounds = []
    group = TrainingGroup(components, sessions["a"].precision, on_round=rounds.append)
    for session in sessions.values():
        session.start()
        group.add(session)
    results = _together(group, sessions)
    for name, outcome in results.items():
        assert outcome.status == "completed"
        _assert_same(store, name, f"together-{name}/", outcome.embedding.vectors[0], reference[name])
    # Micro-batches per run: a 6, b 15, c 8. All three share rounds until c ends, then a, then b goes on alone.
    assert [r.runs for r in rounds[:6]] == [3] * 6 and rounds[0].samples == 2 + 1 + 3
    assert len(rounds) == 15 and rounds[-1].runs == 1


def test_different_conditioning_lengths_share_a_round(components, store):
    reference = {"a": _alone(components, store, "a"), "b": _alone(components, store, "b", dataset="long/")}
    sessions = {
        "a": _session(components, store, "a", "together-a/"),
        "b": _session(components, store, "b", "together-b/", dataset="long/"),
    }
    assert sessions["b"].tokenizer(sessions["b"].prompts.fixed[0]).chunks > 1
    group = TrainingGroup(components, sessions["a"].precision)
    for session in sessions.values():
        session.start()
        group.add(session)
    results = _together(group, sessions)
    for name in sessions:
        _assert_same(store, name, f"together-{name}/", results[name].embedding.vectors[0], reference[name])


def test_runs_join_late_pause_resume_and_cancel_without_touching_the_others(components, store):
    reference = {name: _alone(components, store, name) for name in ("a", "b")}
    group_events: list[str] = []
    a = _session(components, store, "a", "together-a/")
    b = _session(components, store, "b", "together-b/")
    c = _session(components, store, "c", "together-c/")
    group = TrainingGroup(components, a.precision)
    a.start(should_stop=lambda: StopRequest("pause") if a.step == 2 else None)
    c.start(should_stop=lambda: StopRequest("cancel") if c.step == 1 else None)
    group.add(a)
    group.add(c)
    a_final, rounds = None, 0
    while group.sessions:
        rounds += 1
        if rounds == 5:  # b joins late
            b.start()
            group.add(b)
        for session, result in group.round():
            group_events.append(f"{session.name}:{result.status}@{result.step}")
            if session is a:  # resume the paused run from its savepoint, as the job layer does
                savepoint = latest_savepoint(store, "together-a/")
                a_final = TrainingSession.prepare(
                    a.spec, components, store, output_prefix="together-a/", resume=savepoint
                )
                a_final.start()
                group.add(a_final)
    assert sorted(group_events[:2]) == ["subjax:paused@2", "subjcx:cancelled@1"]
    assert sorted(group_events[2:]) == ["subjax:completed@6", "subjbx:completed@5"]
    _assert_same(store, "a", "together-a/", a_final.vectors.detach(), reference["a"])
    _assert_same(store, "b", "together-b/", b.vectors.detach(), reference["b"])


def test_packing_keeps_each_device_batch_within_the_memory_budget(components, store):
    reference = {name: _alone(components, store, name) for name in RUNS}
    sessions = {name: _session(components, store, name, f"together-{name}/") for name in RUNS}
    rounds = []
    probe = TrainingGroup(components, sessions["a"].precision, memory=MemoryBudget(1 << 40))
    sessions["a"].start(until_step=1)
    probe.add(sessions["a"])
    probe.round()
    per_sample = probe._per_sample_bytes
    assert per_sample > 1000  # activations kept for the backward, weights excluded
    sessions["a"] = _session(components, store, "a", "together-a/")
    budget = MemoryBudget(int(per_sample * 4 * 1.5))  # room for 4 samples
    group = TrainingGroup(components, sessions["a"].precision, memory=budget, on_round=rounds.append)
    for session in sessions.values():
        session.start()
        group.add(session)
    results = _together(group, sessions)
    assert rounds[0].runs == 1  # the measuring round
    assert all(r.samples <= 4 or r.runs == 1 for r in rounds)
    assert max(r.samples for r in rounds) > 1 and all(r.capacity == 4 for r in rounds[1:])
    for name, outcome in results.items():
        _assert_same(store, name, f"together-{name}/", outcome.embedding.vectors[0], reference[name])


def test_out_of_memory_in_a_shared_round_retries_smaller_rounds_and_changes_nothing(components, store, monkeypatch):
    reference = {name: _alone(components, store, name) for name in ("a", "c")}
    sessions = {name: _session(components, store, name, f"together-{name}/") for name in ("a", "c")}
    unet_forward = type(components.unet).forward
    sizes = []

    def small_memory(self, sample, *args, **kwargs):
        sizes.append(sample.shape[0])
        if sample.shape[0] > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return unet_forward(self, sample, *args, **kwargs)

    monkeypatch.setattr(type(components.unet), "forward", small_memory)
    group = TrainingGroup(components, sessions["a"].precision)
    for session in sessions.values():
        session.start()
        group.add(session)
    results = _together(group, sessions)
    assert sizes[0] == 5 and group.capacity == 3 and max(sizes[1:]) <= 3
    for name, outcome in results.items():
        _assert_same(store, name, f"together-{name}/", outcome.embedding.vectors[0], reference[name])


def test_a_run_that_diverges_leaves_and_the_others_go_on(components, store):
    reference = _alone(components, store, "a")
    a = _session(components, store, "a", "together-a/")
    b = _session(components, store, "b", "together-b/")
    original = b.micro_batch_loss
    b.micro_batch_loss = lambda batch, pred: original(batch, pred) * float("nan")
    group = TrainingGroup(components, a.precision)
    for session in (a, b):
        session.start()
        group.add(session)
    results = _together(group, {"a": a, "b": b})
    assert isinstance(results["b"], TrainingDiverged) and results["a"].status == "completed"
    _assert_same(store, "a", "together-a/", results["a"].embedding.vectors[0], reference)


def test_a_group_takes_only_started_runs_on_its_own_model_and_precision(components, store):
    a = _session(components, store, "a", "together-a/")
    with pytest.raises(ValueError, match="own loaded model"):
        TrainingGroup(SimpleNamespace(unet=components.unet), a.precision).add(a)
    with pytest.raises(ValueError, match="start the session"):
        TrainingGroup(components, a.precision).add(a)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's inductor imports deprecated torch.jit parts
def test_a_compiled_unet_trains_the_same_runs(components, store):
    reference = {name: _alone(components, store, name) for name in ("a", "c")}
    sessions = {name: _session(components, store, name, f"compiled-{name}/") for name in ("a", "c")}
    group = TrainingGroup(components, sessions["a"].precision, compile_unet=True)
    for session in sessions.values():
        session.start()
        group.add(session)
    results = _together(group, sessions)
    for name, outcome in results.items():
        _assert_same(store, name, f"compiled-{name}/", outcome.embedding.vectors[0], reference[name])
