"""The CUDA path (skipped without a GPU): bf16 and fp16 runs of the tiny model train, save and load, a step
between reports never waits for the host, and runs trained together match runs trained alone without syncing."""

from __future__ import annotations

import warnings

import pytest
import torch

from services.common.models import resolve_model
from services.common.models.loading import load_stable_diffusion
from services.common.storage import LocalStore
from services.trainer.engine import (
    StopRequest,
    TrainingGroup,
    TrainingSession,
    TrainingSpec,
    create_embedding,
    latest_savepoint,
    load_savepoint,
    weight_dtype,
)
from services.trainer.engine.testing import tiny_spec, write_dataset

pytestmark = pytest.mark.gpu


def _spec(**changes) -> TrainingSpec:
    return tiny_spec(
        **(
            dict(
                save_every_steps=3,
                log_every_steps=3,
                latent_sampling="random",
                flip=True,
                gradient_clipping="norm",
                gradient_clip="1.0",
            )
            | changes
        )
    )


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_runs_train_save_and_resume(tiny_models, tmp_path, precision):
    components = load_stable_diffusion(
        resolve_model(str(tiny_models["sd"])), device="cuda", dtype=weight_dtype(precision, "cuda")
    )
    store = LocalStore(tmp_path)
    write_dataset(store, "ds/", 4)
    spec = _spec(precision=precision)
    embedding = create_embedding(components, "subj3ct", "woman", 2)
    session = TrainingSession.prepare(spec, components, store, output_prefix="run/", embedding=embedding, device="cuda")
    assert session.components.unet.dtype == weight_dtype(precision, "cuda") and session.vectors.dtype == torch.float32
    outcome = session.run(until_step=3)
    assert outcome.loss is not None and outcome.savepoint.step == 3
    resumed = TrainingSession.prepare(
        spec, components, store, output_prefix="run/", device="cuda", resume=latest_savepoint(store, "run/")
    )
    final = resumed.run()
    assert final.step == 6 and torch.isfinite(final.embedding.vectors[0]).all()
    embedding, state = load_savepoint(store, latest_savepoint(store, "run/"))
    assert state.generator_device == "cuda" and torch.equal(embedding.vectors[0], final.embedding.vectors[0])


def test_steps_between_reports_do_not_synchronise(tiny_models, tmp_path):
    components = load_stable_diffusion(resolve_model(str(tiny_models["sd"])), device="cuda", dtype=torch.bfloat16)
    store = LocalStore(tmp_path)
    write_dataset(store, "ds/", 4)
    spec = _spec(max_steps=8, log_every_steps=100, save_every_steps=0, precision="bf16")
    embedding = create_embedding(components, "subj3ct", "woman", 2)
    session = TrainingSession.prepare(spec, components, store, output_prefix="run/", embedding=embedding, device="cuda")
    session.run(until_step=2)  # warm-up: lazy CUDA initialisation may synchronise
    counts = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:

            def poll() -> StopRequest | None:
                counts.append(len(caught))  # warnings so far, before each step
                return None

            session.run(should_stop=poll)  # steps 3..8, one report (a sync) at the end
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message) for w in caught[: counts[-1]]]
    assert counts[0] == counts[-1], f"a training step synchronised with the host: {syncs[:3]}"


def test_runs_trained_together_on_cuda_match_alone_and_do_not_synchronise(tiny_models, tmp_path):
    components = load_stable_diffusion(resolve_model(str(tiny_models["sd"])), device="cuda", dtype=torch.float32)
    store = LocalStore(tmp_path)
    write_dataset(store, "ds/", 4)

    seeds = {"runax": 1, "runbx": 2}

    def session(name: str, prefix: str) -> TrainingSession:
        spec = _spec(max_steps=6, log_every_steps=100, save_every_steps=0, precision="fp32", seed=seeds[name])
        embedding = create_embedding(components, name, "woman", 2)
        return TrainingSession.prepare(
            spec, components, store, output_prefix=prefix, embedding=embedding, device="cuda"
        )

    alone = {name: session(name, f"alone-{name}/").run().embedding.vectors[0] for name in seeds}
    together = {name: session(name, f"together-{name}/") for name in seeds}
    group = TrainingGroup(components, together["runax"].precision)
    for run in together.values():
        run.start(until_step=2)  # warm-up rounds
        group.add(run)
    while group.sessions:
        group.round()
    for run in together.values():
        run.start()
        group.add(run)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            while any(run.step < 5 for run in together.values()):  # rounds before the final report
                group.round()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert not caught, f"a shared round synchronised with the host: {[str(w.message) for w in caught[:3]]}"
    while group.sessions:
        group.round()
    for name, run in together.items():
        # TF32 matmuls and per-shape cuDNN algorithms: batched and alone agree to TF32 rounding.
        torch.testing.assert_close(run.vectors.detach().cpu(), alone[name].cpu(), rtol=2e-3, atol=1e-5)
