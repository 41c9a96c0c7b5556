"""The trainer's domain engine: textual-inversion training with A1111's semantics, runnable from a notebook.

    spec = TrainingSpec(model="models/tiny-sd", embedding_key="", dataset="datasets/anna/", max_steps=200)
    components = load_components(spec)                       # or the service's model pool
    embedding = create_embedding(components, "subj3ct", init_text="woman", vectors=4)
    session = TrainingSession.prepare(spec, components, LocalStore("/data"), output_prefix="runs/anna/",
                                      embedding=embedding)
    outcome = session.run()                                  # savepoints under runs/anna/savepoints/
    session = TrainingSession.prepare(spec.replace(max_steps=400), components, store, output_prefix="runs/anna/",
                                      resume=latest_savepoint(store, "runs/anna/"))    # bit-exact continuation

No server, no protobuf: the job layer and the gRPC servicer build on this API. Modules: `spec` (the settings),
`init` (names and new embeddings), `data` +
`latents` (images, batches, VAE-once latents), `objective` (noise, targets, loss), `loop` (the training loop),
`savepoints` (files, state, loss.csv), `precision` (device and dtypes), `events` (reports, stops, failures).
A1111's prompt chunks and the splice into CLIP are shared with the preview service: `services.common.prompts`.
"""

from services.trainer.engine.data import BatchPlan
from services.trainer.engine.events import (
    PhaseReport,
    RunOutcome,
    StepReport,
    StopRequest,
    TrainingDiverged,
    TrainingEvents,
    TrainingOutOfMemory,
)
from services.trainer.engine.init import create_embedding, suggest_name, validate_name
from services.trainer.engine.loop import TrainingSession, derived_seed
from services.trainer.engine.precision import load_components, resolve_precision, weight_dtype
from services.trainer.engine.savepoints import (
    LossRow,
    Savepoint,
    SavepointCorrupt,
    SavepointFile,
    TrainingState,
    latest_savepoint,
    list_savepoints,
    load_savepoint,
    read_loss_csv,
)
from services.trainer.engine.spec import TrainingSpec, scale_learning_rate

__all__ = [
    "BatchPlan",
    "LossRow",
    "PhaseReport",
    "RunOutcome",
    "Savepoint",
    "SavepointCorrupt",
    "SavepointFile",
    "StepReport",
    "StopRequest",
    "TrainingDiverged",
    "TrainingEvents",
    "TrainingOutOfMemory",
    "TrainingSession",
    "derived_seed",
    "TrainingSpec",
    "TrainingState",
    "create_embedding",
    "latest_savepoint",
    "list_savepoints",
    "load_components",
    "load_savepoint",
    "read_loss_csv",
    "resolve_precision",
    "scale_learning_rate",
    "suggest_name",
    "validate_name",
    "weight_dtype",
]
