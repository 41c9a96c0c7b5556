"""Scripted fake Trainer and Caption servicers for the SDK tests, served through the real server stack
(`ServiceServer`: error interceptor, health) so statuses and details are what the real services send."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Iterator

from services.common import errors
from services.common.server import ServiceServer
from services.common.settings import ServerSettings
from tistudio.caption.v1 import caption_pb2 as cap
from tistudio.caption.v1 import caption_pb2_grpc
from tistudio.trainer.v1 import trainer_pb2 as tr
from tistudio.trainer.v1 import trainer_pb2_grpc

EMBEDDING_BYTES = b"fake safetensors bytes"


def progress(sequence: int) -> tr.WatchJobResponse:
    return tr.WatchJobResponse(sequence=sequence, progress=tr.StepProgress(step=sequence))


def finished(sequence: int) -> tr.WatchJobResponse:
    change = tr.StateChanged(previous=tr.JOB_STATE_RUNNING, current=tr.JOB_STATE_SUCCEEDED)
    return tr.WatchJobResponse(sequence=sequence, state_changed=change)


class FakeTrainer(trainer_pb2_grpc.TrainerServiceServicer):
    """Counts calls per method. `unavailable[method]` = failures with UNAVAILABLE before a call succeeds;
    `connections` scripts WatchJob: one list of (events, then_unavailable) per connection."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.unavailable: Counter[str] = Counter()
        self.watch_requests: list[int] = []
        self.connections: list[tuple[list[tr.WatchJobResponse], bool]] = []
        self.job = tr.Job(job_id="j-1", state=tr.JOB_STATE_RUNNING)
        self._lock = threading.Lock()

    def _enter(self, method: str) -> None:
        with self._lock:
            self.calls[method] += 1
            if self.unavailable[method] > 0:
                self.unavailable[method] -= 1
                raise errors.Unavailable(f"{method}: the trainer is restarting")

    def GetJob(self, request, context):
        self._enter("GetJob")
        if request.job_id == "missing":
            raise errors.NotFound("no job 'missing'", reason="JOB_NOT_FOUND", field="job_id", metadata={"j": "x"})
        if request.job_id == "slow":
            time.sleep(1.0)
        return tr.GetJobResponse(job=self.job)

    def CreateEmbedding(self, request, context):
        self._enter("CreateEmbedding")
        return tr.CreateEmbeddingResponse(embedding=tr.Embedding(name=request.name))

    def StartTraining(self, request, context):
        self._enter("StartTraining")
        return tr.StartTrainingResponse(job=tr.Job(job_id="j-1", request_id=request.request_id), created=True)

    def WatchJob(self, request, context) -> Iterator[tr.WatchJobResponse]:
        self._enter("WatchJob")
        with self._lock:
            self.watch_requests.append(request.after_sequence)
            if request.job_id == "missing":
                raise errors.NotFound("no job 'missing'", reason="JOB_NOT_FOUND", field="job_id")
            events, then_unavailable = self.connections.pop(0) if self.connections else ([], False)
        yield from events
        if then_unavailable:
            raise errors.Unavailable("the trainer is shutting down")

    def ExportEmbedding(self, request, context):
        self._enter("ExportEmbedding")
        ext = {tr.EMBEDDING_FORMAT_A1111_PT: "pt"}.get(request.format, "safetensors")
        file = tr.ExportedFile(
            file={"key": f"jobs/{request.job_id}/anna.{ext}"},
            sha256=hashlib.sha256(EMBEDDING_BYTES).hexdigest(),
            data=EMBEDDING_BYTES if request.include_data else b"",
        )
        return tr.ExportEmbeddingResponse(embedding=tr.Embedding(name="anna"), files=[file])


class FakeCaption(caption_pb2_grpc.CaptionServiceServicer):
    def __init__(self) -> None:
        self.requests: list[object] = []

    def Preprocess(self, request, context):
        self.requests.append(request)
        yield cap.PreprocessResponse(image=cap.ImageOutcome(source_key=request.source.key + "a.png", status=1))
        yield cap.PreprocessResponse(summary=cap.PreprocessSummary(dataset=request.destination, kept=1))

    def CaptionDataset(self, request, context):
        self.requests.append(request)
        yield cap.CaptionDatasetResponse(summary=cap.CaptionDatasetSummary(skipped=1))

    def LintDataset(self, request, context):
        self.requests.append(request)
        return cap.LintDatasetResponse(stats=cap.LintStats(images=1, captioned=1), report_text="ok")


def serve(trainer: FakeTrainer, caption: FakeCaption) -> ServiceServer:
    """One started server (port 0) holding both fakes, health SERVING."""
    server = ServiceServer("fake", ServerSettings(drain_seconds=0.05, grace_seconds=2.0))
    server.add_service(
        "tistudio.trainer.v1.TrainerService",
        lambda s: trainer_pb2_grpc.add_TrainerServiceServicer_to_server(trainer, s),
    )
    server.add_service(
        "tistudio.caption.v1.CaptionService",
        lambda s: caption_pb2_grpc.add_CaptionServiceServicer_to_server(caption, s),
    )
    server.start()
    server.set_serving(True)
    return server


__all__ = ["FakeTrainer", "FakeCaption", "serve", "progress", "finished", "EMBEDDING_BYTES"]
