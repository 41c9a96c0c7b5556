"""The TrainerService RPCs: protobuf in, a domain call, protobuf out. Training itself runs in the JobRunner's
threads; these handlers plan, queue, report and convert, and never touch a tensor beyond reading an embedding."""

from __future__ import annotations

import base64
import hashlib
import posixpath
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import grpc

from services.common.convert import own_store_key
from services.common.embeddings import Embedding, read_embedding
from services.common.errors import InvalidArgument, NotFound, ResourceExhausted
from services.common.storage import ObjectNotFound, Store
from services.trainer import convert, convert_jobs
from services.trainer.embedding_ops import create_embedding_file, export_embedding
from services.trainer.engine import Savepoint, list_savepoints
from services.trainer.job_spec import JobSpec
from services.trainer.jobs import JobRecord, JobRunner
from services.trainer.plan import TrainingPlan, plan_request, require_ok
from tistudio.trainer.v1 import trainer_pb2 as pb
from tistudio.trainer.v1 import trainer_pb2_grpc

__all__ = ["TrainerServicer"]

MAX_INLINE_BYTES = 4 << 20  # gRPC's default message cap; an embedding is a few KiB, anything larger is no embedding
WATCH_POLL_SECONDS = 10.0  # how often an idle WatchJob stream checks that its client is still there


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    def __init__(self, store: Store, models: Any, runner: JobRunner, *, default_model: str = "") -> None:
        self._store = store
        self._models = models
        self._runner = runner
        self._default_model = default_model

    def CreateEmbedding(self, request: pb.CreateEmbeddingRequest, context: grpc.ServicerContext):
        model = convert.model_reference(request.model, self._default_model, field="model")
        components = self._models.stable_diffusion(model, request.model.config_reference)
        destination = own_store_key(request.destination, self._store, field="destination") or None
        stored = create_embedding_file(
            self._store,
            components,
            name=request.name,
            init_text=request.init_text or "*",  # A1111's default init text
            vectors=request.vectors_per_token or 1,
            destination_key=destination,
            overwrite=request.overwrite,
            model_reference=model,
        )
        return pb.CreateEmbeddingResponse(embedding=convert.embedding_to_proto(stored))

    def PlanTraining(self, request: pb.PlanTrainingRequest, context: grpc.ServicerContext):
        plan, job = self._plan(request.spec)
        return convert.plan_to_proto(plan, job)

    def StartTraining(self, request: pb.StartTrainingRequest, context: grpc.ServicerContext):
        # The request as sent identifies a retry, so a retried call finds its job even if the dataset has changed
        # since; a new request is planned and refused before anything is queued when the plan has errors.
        fingerprint = hashlib.sha256(request.spec.SerializeToString(deterministic=True)).hexdigest()
        existing = self._runner.jobs.find_by_request_id(request.request_id) if request.request_id else None
        if existing is not None:
            record, created = self._runner.submit(
                request.request_id, existing.spec, max_steps=existing.max_steps, fingerprint=fingerprint
            )
        else:
            plan, job = self._plan(request.spec)
            require_ok(plan)
            record, created = self._runner.submit(
                request.request_id,
                job.to_record(),
                max_steps=plan.end_step,
                model=asdict(plan.model),
                fingerprint=fingerprint,
            )
        return pb.StartTrainingResponse(job=convert_jobs.job_to_proto(record), created=created)

    def GetJob(self, request: pb.GetJobRequest, context: grpc.ServicerContext):
        return pb.GetJobResponse(job=convert_jobs.job_to_proto(self._runner.get(request.job_id)))

    def ListJobs(self, request: pb.ListJobsRequest, context: grpc.ServicerContext):
        size = convert_jobs.page_size(request.page_size)
        records = self._runner.list(convert_jobs.job_states(request.states))  # newest first
        if request.page_token:
            after = _cursor_from_token(request.page_token)
            records = [r for r in records if (r.create_time, r.job_id) < after]
        page, more = records[:size], len(records) > size
        token = _token_for(page[-1]) if more else ""
        return pb.ListJobsResponse(jobs=[convert_jobs.job_to_proto(r) for r in page], next_page_token=token)

    def WatchJob(self, request: pb.WatchJobRequest, context: grpc.ServicerContext) -> Iterator[pb.WatchJobResponse]:
        after = request.after_sequence
        self._runner.get(request.job_id)  # NOT_FOUND before the stream starts
        while context.is_active():
            for event in self._runner.watch(request.job_id, after, timeout=WATCH_POLL_SECONDS):
                yield convert_jobs.event_to_proto(event)
                after = event.sequence
                if event.final:
                    return
            record = self._runner.get(request.job_id)
            if self._runner.events.closed or (record.state.final and after >= record.last_sequence):
                return  # shutting down (reconnect to the next trainer), or everything of a finished job was sent

    def PauseJob(self, request: pb.PauseJobRequest, context: grpc.ServicerContext):
        return pb.PauseJobResponse(job=convert_jobs.job_to_proto(self._runner.pause(request.job_id)))

    def ResumeJob(self, request: pb.ResumeJobRequest, context: grpc.ServicerContext):
        return pb.ResumeJobResponse(job=convert_jobs.job_to_proto(self._runner.resume(request.job_id)))

    def CancelJob(self, request: pb.CancelJobRequest, context: grpc.ServicerContext):
        return pb.CancelJobResponse(job=convert_jobs.job_to_proto(self._runner.cancel(request.job_id)))

    def ExportEmbedding(self, request: pb.ExportEmbeddingRequest, context: grpc.ServicerContext):
        tokenizer = None
        if request.WhichOneof("source") == "job_id":
            record = self._runner.get(request.job_id)
            source = _savepoint(self._store, record, request.step).embedding_key
            if request.name:  # a new trigger word must not be a token of the job's model
                training = JobSpec.from_record(record.spec).training
                tokenizer = self._models.stable_diffusion(training.model, training.model_config).tokenizer
        elif request.WhichOneof("source") == "embedding":
            source = own_store_key(request.embedding, self._store, field="embedding")
        else:
            raise InvalidArgument("name the source: a job_id (its savepoints) or an embedding file", field="source")
        destination = own_store_key(request.destination, self._store, field="destination") or None
        files = export_embedding(
            self._store,
            source,
            convert.embedding_format(request.format),
            destination,
            name=request.name,
            tokenizer=tokenizer,
        )
        out = [convert.exported_file(f, self._inline(f.key) if request.include_data else None) for f in files]
        return pb.ExportEmbeddingResponse(embedding=convert.embedding_to_proto(files[0]), files=out)

    # ---------------------------------------------------------------------------------------------------------------
    def _plan(self, spec: pb.TrainingSpec) -> tuple[TrainingPlan, JobSpec]:
        request = convert.training_request(spec, self._store, default_model=self._default_model)
        components = self._models.stable_diffusion(request.model, request.fields.get("model_config", ""))
        embedding = _read_embedding(self._store, request.embedding_key)
        plan = plan_request(
            request.fields, request.recipe, store=self._store, components=components, embedding=embedding
        )
        job = JobSpec(
            training=plan.spec,
            recipe=plan.recipe,
            preview_every_steps=plan.preview_every_steps,
            preview=request.preview,
            non_finite=request.non_finite,
        )
        return plan, job

    def _inline(self, key: str) -> bytes:
        size = self._store.stat(key).size
        if size > MAX_INLINE_BYTES:
            raise ResourceExhausted(
                f"'{key}' is {size} bytes, more than a message carries ({MAX_INLINE_BYTES}); download it from the "
                "store instead of include_data",
                field="include_data",
            )
        return self._store.get(key)


def _read_embedding(store: Store, key: str) -> Embedding:
    try:
        data = store.get(key)
    except ObjectNotFound:
        raise NotFound(
            f"no embedding file at '{key}': create one with CreateEmbedding, or point spec.embedding at a "
            "savepoint's .safetensors",
            reason="EMBEDDING_NOT_FOUND",
            field="spec.embedding",
        ) from None
    embedding, _ = read_embedding(data, filename=posixpath.basename(key))
    return embedding


def _savepoint(store: Store, record: JobRecord, step: int) -> Savepoint:
    savepoints = list_savepoints(store, record.output_prefix)
    if not savepoints:
        raise NotFound(
            f"job {record.job_id} has no savepoint yet: wait for its first one (every save_every_steps steps)",
            reason="SAVEPOINT_NOT_FOUND",
            field="job_id",
        )
    if not step:
        return savepoints[-1]
    for savepoint in savepoints:
        if savepoint.step == step:
            return savepoint
    steps = ", ".join(str(s.step) for s in savepoints[-10:])
    raise NotFound(
        f"job {record.job_id} has no savepoint at step {step}; its latest are at steps {steps}",
        reason="SAVEPOINT_NOT_FOUND",
        field="step",
    )


def _token_for(record: JobRecord) -> str:
    return base64.urlsafe_b64encode(f"{record.create_time!r}|{record.job_id}".encode()).decode()


def _cursor_from_token(token: str) -> tuple[float, str]:
    try:
        created, job_id = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        return float(created), job_id
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument(
            "page_token is not one ListJobs returned: pass next_page_token as it came, or leave it empty",
            field="page_token",
        ) from None
