"""Typed clients for the three services: one method per RPC, protobuf messages in and out.

Each method takes either a request message or its fields as keywords (nested messages may be dicts):

    trainer.get_job(job_id="j-1").job
    trainer.get_job(trainer_pb2.GetJobRequest(job_id="j-1")).job
    caption.lint_dataset(dataset={"key": "datasets/anna/train/"}, class_phrase="a woman")

and `timeout=` (seconds) to replace the default deadline. Unary methods return the response message; streaming
methods return an iterator of responses. Deadlines, retries and error mapping are `calls.Caller`'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tistudio.caption.v1 import caption_pb2 as cap
from tistudio.caption.v1 import caption_pb2_grpc
from tistudio.preview.v1 import preview_pb2 as pre
from tistudio.preview.v1 import preview_pb2_grpc
from tistudio.trainer.v1 import trainer_pb2 as tr
from tistudio.trainer.v1 import trainer_pb2_grpc
from tistudio_client.calls import Caller

__all__ = ["CaptionClient", "TrainerClient", "PreviewClient"]

M = TypeVar("M")


def _request(cls: type[M], request: M | None, fields: dict[str, Any]) -> M:
    if request is None:
        return cls(**fields)
    if fields:
        raise TypeError(f"pass a {cls.__name__} or its fields as keywords, not both")
    if not isinstance(request, cls):
        raise TypeError(f"expected a {cls.__name__}, got {type(request).__name__}")
    return request


class _ServiceClient:
    service_name = ""
    stub: Any

    def __init__(self, channel: grpc.Channel, caller: Caller) -> None:
        self.channel = channel
        self.caller = caller
        self._health = health_pb2_grpc.HealthStub(channel)

    def health(self, *, timeout: float | None = 5.0) -> str:
        """The service's health status name: "SERVING", "NOT_SERVING" (loading or draining) or "UNKNOWN"."""
        request = health_pb2.HealthCheckRequest(service=self.service_name)
        reply = self.caller.unary("Check", self._health.Check, request, timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def _unary(self, method: str, cls: type[M], request: M | None, fields: dict[str, Any], timeout: float | None):
        return self.caller.unary(method, getattr(self.stub, method), _request(cls, request, fields), timeout)


class CaptionClient(_ServiceClient):
    service_name = "tistudio.caption.v1.CaptionService"

    def __init__(self, channel: grpc.Channel, caller: Caller) -> None:
        super().__init__(channel, caller)
        self.stub = caption_pb2_grpc.CaptionServiceStub(channel)

    def preprocess(
        self, request: cap.PreprocessRequest | None = None, *, timeout: float | None = None, **fields: Any
    ) -> Iterator[cap.PreprocessResponse]:
        request = _request(cap.PreprocessRequest, request, fields)
        return self.caller.stream("Preprocess", self.stub.Preprocess, request, timeout)

    def caption(
        self, request: cap.CaptionRequest | None = None, *, timeout: float | None = None, **fields: Any
    ) -> cap.CaptionResponse:
        return self._unary("Caption", cap.CaptionRequest, request, fields, timeout)

    def caption_dataset(
        self, request: cap.CaptionDatasetRequest | None = None, *, timeout: float | None = None, **fields: Any
    ) -> Iterator[cap.CaptionDatasetResponse]:
        request = _request(cap.CaptionDatasetRequest, request, fields)
        return self.caller.stream("CaptionDataset", self.stub.CaptionDataset, request, timeout)

    def lint_dataset(
        self, request: cap.LintDatasetRequest | None = None, *, timeout: float | None = None, **fields: Any
    ) -> cap.LintDatasetResponse:
        return self._unary("LintDataset", cap.LintDatasetRequest, request, fields, timeout)


class TrainerClient(_ServiceClient):
    service_name = "tistudio.trainer.v1.TrainerService"

    def __init__(self, channel: grpc.Channel, caller: Caller) -> None:
        super().__init__(channel, caller)
        self.stub = trainer_pb2_grpc.TrainerServiceStub(channel)

    def create_embedding(
        self, request: tr.CreateEmbeddingRequest | None = None, *, timeout: float | None = None, **fields: Any
    ) -> tr.CreateEmbeddingResponse:
        return self._unary("CreateEmbedding", tr.CreateEmbeddingRequest, request, fields, timeout)

    def plan_training(
        self, request: tr.PlanTrainingRequest | None = None, *, timeout: float | None = None, **fields: Any
    ) -> tr.PlanTrainingResponse:
        return self._unary("PlanTraining", tr.PlanTrainingRequest, request, fields, timeout)

    def start_training(
        self, request: tr.StartTrainingRequest | None = None, *, timeout: float | None = None, **fields: Any
    ) -> tr.StartTrainingResponse:
        """Retried on UNAVAILABLE only when `request_id` is set (`Tistudio.start` always sets one)."""
        return self._unary("StartTraining", tr.StartTrainingRequest, request, fields, timeout)

    def get_job(
        self, request: tr.GetJobRequest | None = None, *, timeout: float | None = None, **fields: Any
    ) -> tr.GetJobResponse:
        return self._unary("GetJob", tr.GetJobRequest, request, fields, timeout)

    def list_jobs(
        self, request: tr.ListJobsRequest | None = None, *, timeout: float | None = None, **fields: Any
    ) -> tr.ListJobsResponse:
        return self._unary("ListJobs", tr.ListJobsRequest, request, fields, timeout)

    def watch_job(
        self, request: tr.WatchJobRequest | None = None, *, timeout: float | None = None, **fields: Any
    ) -> Iterator[tr.WatchJobResponse]:
        """One WatchJob connection, not resumed: use `jobs.watch` for an event stream that survives outages."""
        request = _request(tr.WatchJobRequest, request, fields)
        return self.caller.stream("WatchJob", self.stub.WatchJob, request, timeout, retry=False)

    def pause_job(
        self, request: tr.PauseJobRequest | None = None, *, timeout: float | None = None, **fields: Any
    ) -> tr.PauseJobResponse:
        return self._unary("PauseJob", tr.PauseJobRequest, request, fields, timeout)

    def resume_job(
        self, request: tr.ResumeJobRequest | None = None, *, timeout: float | None = None, **fields: Any
    ) -> tr.ResumeJobResponse:
        return self._unary("ResumeJob", tr.ResumeJobRequest, request, fields, timeout)

    def cancel_job(
        self, request: tr.CancelJobRequest | None = None, *, timeout: float | None = None, **fields: Any
    ) -> tr.CancelJobResponse:
        return self._unary("CancelJob", tr.CancelJobRequest, request, fields, timeout)

    def export_embedding(
        self, request: tr.ExportEmbeddingRequest | None = None, *, timeout: float | None = None, **fields: Any
    ) -> tr.ExportEmbeddingResponse:
        return self._unary("ExportEmbedding", tr.ExportEmbeddingRequest, request, fields, timeout)


class PreviewClient(_ServiceClient):
    service_name = "tistudio.preview.v1.PreviewService"

    def __init__(self, channel: grpc.Channel, caller: Caller) -> None:
        super().__init__(channel, caller)
        self.stub = preview_pb2_grpc.PreviewServiceStub(channel)

    def generate(
        self, request: pre.GenerateRequest | None = None, *, timeout: float | None = None, **fields: Any
    ) -> pre.GenerateResponse:
        """Retried on UNAVAILABLE only when `output` is set (else each attempt writes a new folder)."""
        return self._unary("Generate", pre.GenerateRequest, request, fields, timeout)

    def render_previews(
        self, request: pre.RenderPreviewsRequest | None = None, *, timeout: float | None = None, **fields: Any
    ) -> pre.RenderPreviewsResponse:
        return self._unary("RenderPreviews", pre.RenderPreviewsRequest, request, fields, timeout)

    def contact_sheet(
        self, request: pre.ContactSheetRequest | None = None, *, timeout: float | None = None, **fields: Any
    ) -> pre.ContactSheetResponse:
        return self._unary("ContactSheet", pre.ContactSheetRequest, request, fields, timeout)

    def evaluate(
        self, request: pre.EvaluateRequest | None = None, *, timeout: float | None = None, **fields: Any
    ) -> pre.EvaluateResponse:
        return self._unary("Evaluate", pre.EvaluateRequest, request, fields, timeout)
