"""How the trainer service starts: its settings, the job runner, and its gRPC registration.

Settings besides the shared ones (services/common/settings.py):
    TISTUDIO_SD_MODEL                  the base model loaded before SERVING, and the default of requests that name none
    TISTUDIO_TRAINER_CONCURRENCY       jobs trained at once on this trainer's device (default 8); jobs on one model
                                       and training size share its device batches (device_loop.py)
    TISTUDIO_TRAINER_COMPILE           1: run the UNet through torch.compile (CUDA; the first steps of each new batch
                                       shape pay for compilation); default 0
    TISTUDIO_TRAINER_BATCH_MEMORY_GIB  device memory the shared batches' activations may use (default: 90% of the
                                       free CUDA memory, or half the available RAM on a CPU)
    TISTUDIO_STORE_PATIENCE_SECONDS    how long store operations are retried before a job pauses (default 60)
    TISTUDIO_PREVIEW_ADDRESS           the preview service (host:port); unset: previews are skipped, with a notice
    TISTUDIO_PREVIEW_TOKEN, TISTUDIO_PREVIEW_TIMEOUT_SECONDS   see preview_client.py

On SIGTERM the runner asks every running job to save a savepoint at its current step and stop; the jobs stay
RUNNING in the store, and the next trainer process (a rolling update's new pod) resumes them exactly from there.
"""

from __future__ import annotations

from services.common.model_pool import stable_diffusion_pool
from services.common.runtime import ServiceContext, ServiceDefinition, ServiceParts
from services.common.settings import EnvReader, on_off, positive_float, positive_int
from services.common.storage import RetryingStore, RetryPolicy
from services.trainer.device_loop import DeviceLoop
from services.trainer.jobs import EventLog, JobRunner, JobStore
from services.trainer.metrics import TrainerMetrics
from services.trainer.preview_client import GrpcPreviewRenderer
from services.trainer.previews import PreviewDispatcher
from services.trainer.servicer import TrainerServicer
from services.trainer.training_job import JobTrainer
from tistudio.trainer.v1 import trainer_pb2, trainer_pb2_grpc

__all__ = ["DEFINITION"]


def build(context: ServiceContext) -> ServiceParts:
    read = EnvReader(context.env)
    concurrency = read.parse("TISTUDIO_TRAINER_CONCURRENCY", 8, positive_int, "a whole number of jobs, at least 1")
    batch_memory = read.parse("TISTUDIO_TRAINER_BATCH_MEMORY_GIB", None, positive_float, "GiB, e.g. 40")
    models, preload = stable_diffusion_pool(context)
    # Every trainer store operation rides out short outages; a longer one pauses the job (training_job.py).
    store = RetryingStore(context.store, RetryPolicy.from_env(context.env))
    jobs, events = JobStore(store), EventLog(store)
    renderer = GrpcPreviewRenderer.from_env(context.env)
    runner: JobRunner
    metrics = TrainerMetrics(
        context.registry, jobs=jobs.list, queue_length=lambda: runner.queue_length(), device=context.runtime.device
    )
    previews = PreviewDispatcher(renderer, on_skipped=lambda code: metrics.previews_skipped.labels(code).inc())
    compile_unet = read.parse("TISTUDIO_TRAINER_COMPILE", False, on_off, "on/off, true/false, 1/0, yes/no")
    device_loop = DeviceLoop(memory_gib=batch_memory, on_round=metrics.observe_round, compile_unet=compile_unet)
    trainer = JobTrainer(
        store, models, device=context.runtime.device, previews=previews, metrics=metrics, device_loop=device_loop
    )
    runner = JobRunner(jobs, events, trainer, concurrency=concurrency)
    servicer = TrainerServicer(store, models, runner, default_model=read.text("TISTUDIO_SD_MODEL") or "")

    def load() -> None:
        preload()
        # Jobs that were queued or running when the last process stopped continue from their latest savepoints.
        runner.recover()
        runner.start()

    def shutdown() -> None:
        runner.shutdown(timeout=context.server.grace_seconds)
        device_loop.close(timeout=5.0)
        previews.close(timeout=5.0)
        if renderer is not None:
            renderer.close()

    return ServiceParts(
        register=lambda server: trainer_pb2_grpc.add_TrainerServiceServicer_to_server(servicer, server),
        load=load,
        shutdown=shutdown,
    )


DEFINITION = ServiceDefinition(
    name="trainer",
    grpc_service=trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name,
    build=build,
)
