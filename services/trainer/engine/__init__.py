"""The trainer's domain engine: textual-inversion training with A1111's semantics, runnable from a notebook.

    spec = TrainingSpec(model="models/tiny-sd", embedding_key="", dataset="datasets/anna/", max_steps=200)
    components = load_components(spec)                       # or the service's model pool
    embedding = create_embedding(components, "subj3ct", init_text="woman", vectors=4)
    session = TrainingSession.prepare(spec, components, LocalStore("/data"), output_prefix="runs/anna/",
                                      embedding=embedding)
    outcome = session.run()                                  # savepoints under runs/anna/savepoints/
    session = TrainingSession.prepare(spec.replace(max_steps=400), components, store, output_prefix="runs/anna/",
                                      resume=latest_savepoint(store, "runs/anna/"))    # bit-exact continuation

Several runs on one loaded model train through shared device batches, each with its own optimizer and schedule:

    group = TrainingGroup(components, resolve_precision("auto", "cuda"), memory=MemoryBudget(40 * 2**30))
    for session in sessions: session.start(); group.add(session)
    while group.sessions: finished = group.round()           # [(session, outcome or exception)]

No server, no protobuf: the job layer and the gRPC servicer build on this API. Modules: `spec` (the settings),
`init` (names and new embeddings), `prepare` (set-up and exact resume), `data` + `latents` (images, batches,
VAE-once latents), `objective` (noise, targets, loss), `loop` (one run's steps), `shared_batch` (runs trained
together), `savepoints` + `save_behind` (files, state, loss.csv, written behind the loop), `run_record`
(metadata, settings.json), `precision` (device and dtypes), `events` (reports, stops, failures), `vectors` (the
trained vectors per text encoder: SDXL's clip_l + clip_g pair, its time ids). Every family (SD1.x, SD2.x, SDXL)
trains through the same code. A1111's prompt chunks and the splice into CLIP are shared with the preview service:
`services.common.prompts`.
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
from services.trainer.engine.loop import MicroBatch, TrainingSession
from services.trainer.engine.precision import load_components, resolve_precision, weight_dtype
from services.trainer.engine.prepare import derived_seed
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
from services.trainer.engine.shared_batch import MemoryBudget, RoundReport, TrainingGroup, group_key
from services.trainer.engine.spec import TrainingSpec, scale_learning_rate

__all__ = [
    "BatchPlan",
    "LossRow",
    "MemoryBudget",
    "MicroBatch",
    "PhaseReport",
    "RoundReport",
    "RunOutcome",
    "Savepoint",
    "SavepointCorrupt",
    "SavepointFile",
    "StepReport",
    "StopRequest",
    "TrainingDiverged",
    "TrainingEvents",
    "TrainingGroup",
    "TrainingOutOfMemory",
    "TrainingSession",
    "derived_seed",
    "TrainingSpec",
    "TrainingState",
    "create_embedding",
    "group_key",
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
