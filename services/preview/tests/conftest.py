"""Fixtures shared by the preview service's tests: the tiny SD model, a renderer, and an embedding trained by the
trainer's engine (so "an embedding trained by the trainer" is exactly that, not a random tensor)."""

from __future__ import annotations

import pytest
import torch

from services.common.embeddings import EmbeddingFormat, write_embedding
from services.common.models import resolve_model
from services.common.models.loading import load_stable_diffusion
from services.common.storage import LocalStore
from services.preview.rendering import LoadedModel, Renderer
from services.trainer.engine import TrainingSession, create_embedding
from services.trainer.engine.savepoints import list_savepoints
from services.trainer.engine.testing import tiny_spec, write_dataset

TRIGGER = "subj3ct"


@pytest.fixture(scope="module")
def components(tiny_models):
    return load_stable_diffusion(resolve_model(str(tiny_models["sd"])))


@pytest.fixture(scope="module")
def model(components, tiny_models):
    return LoadedModel(str(tiny_models["sd"]), "tiny-sd", components)


@pytest.fixture(scope="module")
def renderer():
    renderer = Renderer(max_batch=8)
    yield renderer
    renderer.close()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, components):
    """A store holding dataset `ds/` (4 captioned images), the untrained embedding at `init/subj3ct.safetensors`,
    and a 6-step training run under `run/` with savepoints at steps 3 and 6."""
    store = LocalStore(tmp_path_factory.mktemp("trained") / "store")
    write_dataset(store, "ds/", 4)
    torch.manual_seed(0)
    embedding = create_embedding(components, TRIGGER, "woman", 2)
    store.put(f"init/{TRIGGER}.safetensors", write_embedding(embedding, EmbeddingFormat.SAFETENSORS))
    spec = tiny_spec(template="photo_filewords", save_every_steps=3, learning_rate="0.05")
    TrainingSession.prepare(spec, components, store, output_prefix="run/", embedding=embedding).run()
    savepoints = list_savepoints(store, "run/")
    assert [s.step for s in savepoints] == [3, 6]
    return store, savepoints
