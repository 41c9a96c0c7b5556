"""SDXL (two text encoders, a clip_l + clip_g pair) and SD2-768 (v-prediction) through the training engine, on the
tiny models: training moves both vectors, savepoints hold the pair, resume is bit-exact, shared batches match runs
alone, init text embeds in each encoder's table, the pair learns a teacher on a fixed batch, and plans follow the
model (its size, its family's recipes)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load as load_safetensors

from services.common.errors import InvalidArgument
from services.common.prompts import PromptEncoder, sdxl_time_ids, trigger_token_ids
from services.common.storage import LocalStore
from services.trainer.engine import (
    TrainingGroup,
    TrainingSession,
    create_embedding,
    latest_savepoint,
    load_savepoint,
    read_loss_csv,
)
from services.trainer.engine.objective import Noised, NoiseSchedule, add_noise, loss_per_sample
from services.trainer.engine.testing import tiny_components, tiny_spec, write_dataset
from services.trainer.plan import plan_request

RTOL = 1e-4
SDXL_SPEC = dict(width=64, height=64, batch_size=1, template="photo_filewords", log_every_steps=1)


@pytest.fixture(scope="module")
def sdxl(tiny_models):
    return tiny_components(tiny_models["sdxl"])


@pytest.fixture
def store(tmp_path):
    store = LocalStore(tmp_path)
    write_dataset(store, "ds/", 3, size=64)
    return store


def _session(components, store, prefix, name="subj3ct", vectors=2, **changes):
    spec = tiny_spec(**(SDXL_SPEC | changes))
    embedding = create_embedding(components, name, "woman face", vectors)
    return TrainingSession.prepare(spec, components, store, output_prefix=prefix, embedding=embedding)


def test_sdxl_trains_both_vectors_and_saves_the_pair(sdxl, store):
    session = _session(sdxl, store, "run/", max_steps=3, save_every_steps=3, extra_formats=("diffusers",))
    start = [v.detach().clone() for v in session.trained]
    outcome = session.run()
    assert outcome.status == "completed" and outcome.loss is not None and torch.isfinite(torch.tensor(outcome.loss))
    assert [tuple(v.shape) for v in outcome.embedding.vectors] == [(2, 32), (2, 48)]
    assert all(not torch.equal(before, v) for before, v in zip(start, outcome.embedding.vectors, strict=True))
    savepoint = latest_savepoint(store, "run/")
    tensors = load_safetensors(store.get(savepoint.embedding_key))
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {"clip_l": (2, 32), "clip_g": (2, 48)}
    assert torch.equal(tensors["clip_g"], outcome.embedding.vectors[1])
    saved, state = load_savepoint(store, savepoint)
    assert saved.metadata["model_family"] == "sdxl" and saved.dims == (32, 48)
    assert all(torch.equal(a, b) for a, b in zip(state.trained, saved.vectors, strict=True))
    diffusers_files = sorted(f.name for f in savepoint.files if f.format == "diffusers")
    assert diffusers_files == ["learned_embeds.safetensors", "learned_embeds_2.safetensors"]


def test_sdxl_refuses_a1111_pt_before_training(sdxl, store):
    with pytest.raises(InvalidArgument) as raised:
        _session(sdxl, store, "run/", extra_formats=("a1111_pt",))
    assert (raised.value.reason, raised.value.field) == ("FORMAT_NOT_FOR_SDXL", "spec.extra_formats")
    plan = _planned(store, sdxl, create_embedding(sdxl, "subj3ct", "woman", 2), extra_formats=["a1111_pt"])
    assert ("FORMAT_NOT_FOR_SDXL", "spec.extra_formats") in {(d.code, d.field) for d in plan.diagnostics}


def test_sdxl_resume_from_a_savepoint_is_bit_exact(sdxl, store):
    changes = dict(max_steps=4, save_every_steps=2, gradient_clipping="norm", gradient_clip="0.5", flip=True)
    straight = _session(sdxl, store, "straight/", **changes)
    straight.run()
    first = _session(sdxl, store, "split/", **changes)
    assert first.run(until_step=2).savepoint.step == 2
    resumed = TrainingSession.prepare(
        first.spec, sdxl, store, output_prefix="split/", resume=latest_savepoint(store, "split/")
    )
    assert resumed.step == 2
    resumed.run()
    assert all(torch.equal(a, b) for a, b in zip(resumed.trained, straight.trained, strict=True))
    ours, theirs = resumed.optimizer.state_dict()["state"], straight.optimizer.state_dict()["state"]
    assert ours.keys() == theirs.keys() == {0, 1}
    assert all(torch.equal(ours[i][k], theirs[i][k]) for i in ours for k in ("exp_avg", "exp_avg_sq"))
    assert read_loss_csv(store, "split/") == read_loss_csv(store, "straight/")


def test_sdxl_runs_trained_together_match_each_alone(sdxl, store):
    runs = {"a": dict(seed=1, learning_rate="0.02", vectors=1), "b": dict(seed=2, learning_rate="0.05", vectors=2)}
    alone = {}
    for name, changes in runs.items():
        outcome = _session(sdxl, store, f"alone-{name}/", f"subj{name}x", max_steps=2, **changes).run()
        alone[name] = outcome.embedding.vectors, [r.loss for r in read_loss_csv(store, f"alone-{name}/")]
    sessions = {
        name: _session(sdxl, store, f"together-{name}/", f"subj{name}x", max_steps=2, **changes)
        for name, changes in runs.items()
    }
    rounds = []
    group = TrainingGroup(sdxl, sessions["a"].precision, on_round=rounds.append)
    for session in sessions.values():
        session.start()
        group.add(session)
    results = {}
    while group.sessions:
        for session, result in group.round():
            results[session.name] = result
    assert [r.runs for r in rounds] == [2, 2]  # one device batch of both runs per step
    for name, (vectors, losses) in alone.items():
        outcome = results[f"subj{name}x"]
        assert outcome.status == "completed"
        for ours, theirs in zip(outcome.embedding.vectors, vectors, strict=True):
            torch.testing.assert_close(ours, theirs, rtol=RTOL, atol=RTOL * theirs.abs().max().item())
        assert [r.loss for r in read_loss_csv(store, f"together-{name}/")] == pytest.approx(losses, rel=RTOL)


def _planned(store, components, embedding, recipe=None, **more):
    fields = {"model": "tiny", "embedding_key": "embeddings/subj3ct.safetensors", "dataset": "ds/", **more}
    return plan_request(fields, recipe, store=store, components=components, embedding=embedding)


def test_sdxl_plans_at_the_models_size_for_a_pair_of_widths(sdxl, store):
    plan = _planned(store, sdxl, create_embedding(sdxl, "subj3ct", "woman", 2))
    assert plan.spec.width == plan.spec.height == sdxl.default_size  # 1024 on real SDXL weights
    assert (plan.model.family, plan.model.embedding_dims) == ("sdxl", (32, 48))


def test_recipes_say_which_family_they_were_tuned_on(sdxl, store):
    embedding = create_embedding(sdxl, "subj3ct", "woman", 2)
    seed_a = _planned(store, sdxl, embedding, "seed-a")
    assert "RECIPE_FAMILY_MISMATCH" in {d.code for d in seed_a.diagnostics}
    own = _planned(store, sdxl, embedding, "diffusers-sdxl")
    assert "RECIPE_FAMILY_MISMATCH" not in {d.code for d in own.diagnostics}
    assert (own.spec.width, own.spec.batch_size, own.spec.gradient_accumulation) == (768, 1, 4)


def test_sdxl_create_embedding_embeds_init_text_in_each_encoders_table(sdxl):
    embedding = create_embedding(sdxl, "subj3ct", "woman face", 3)
    assert embedding.dims == (32, 48) and embedding.metadata["model_family"] == "sdxl"
    for tokenizer, encoder, vectors in zip(sdxl.tokenizers, sdxl.text_encoders, embedding.vectors, strict=True):
        ids = trigger_token_ids(tokenizer, "woman face")
        table = encoder.get_input_embeddings().weight.detach().float()
        expected = torch.stack([table[ids[i * len(ids) // 3]] for i in range(3)])
        assert torch.equal(vectors, expected)


def test_sd2_768_trains_with_v_prediction_and_plans_at_the_models_size(tiny_models, store):
    sd2 = tiny_components(tiny_models["sd2_768"])
    assert sd2.prediction_type == "v_prediction"
    embedding = create_embedding(sd2, "subj3ct", "woman", 1)
    assert _planned(store, sd2, embedding).spec.width == sd2.default_size  # 768 on real SD2-768 weights
    session = _session(sd2, store, "sd2/", vectors=1, width=32, height=32, max_steps=2)
    outcome = session.run()
    assert outcome.status == "completed" and torch.isfinite(torch.tensor(outcome.loss))
    assert outcome.embedding.dims == (40,) and outcome.embedding.metadata["model_family"] == "sd2"


def test_the_sdxl_pair_learns_on_a_fixed_batch(sdxl):
    """test_engine_loop's learning check for SDXL: the target is what the UNet predicts for a known teacher pair
    (both encoders' rows of "red circle"), so the only way down is to move both vectors toward it."""
    encoder = PromptEncoder(sdxl, {"subj3ct": 2})
    batches = encoder.batch(["a photo of subj3ct", "subj3ct"])
    tables = [e.get_input_embeddings().weight for e in sdxl.text_encoders]
    ids = {
        word: sdxl.tokenizer.convert_tokens_to_ids([f"{a}</w>", f"{b}</w>"])
        for word, (a, b) in {"teacher": ("red", "circle"), "start": ("blue", "dog")}.items()
    }
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 8, 8, generator=generator)
    noised = add_noise(latents, NoiseSchedule(sdxl.scheduler.config, torch.device("cpu")), "epsilon", generator)
    time_ids = sdxl_time_ids(16, 16, 2)
    teacher = tuple(table[ids["teacher"]].detach() for table in tables)
    with torch.no_grad():
        target = sdxl.unet(noised.noisy, noised.timesteps, **encoder(batches, teacher).unet_kwargs(time_ids)).sample
    fixed = Noised(noised.noisy, target, noised.timesteps)
    pair = tuple(torch.nn.Parameter(table[ids["start"]].detach().clone()) for table in tables)
    optimizer = torch.optim.AdamW(pair, lr=0.01, weight_decay=0.0)
    losses = []
    for _ in range(30):
        pred = sdxl.unet(fixed.noisy, fixed.timesteps, **encoder(batches, pair).unet_kwargs(time_ids)).sample
        loss = loss_per_sample(pred, fixed).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in pair)  # both encoders carry gradient
