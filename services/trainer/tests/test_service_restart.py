"""A rolling restart, for real: `python -m services.trainer` gets SIGTERM in the middle of a job, saves, exits; the
next process resumes the job from that savepoint and ends bit-for-bit where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.embeddings import read_embedding
from services.common.storage import LocalStore
from services.trainer.engine import list_savepoints
from services.trainer.engine.testing import write_dataset
from tistudio.common.v1 import common_pb2
from tistudio.trainer.v1 import trainer_pb2 as pb
from tistudio.trainer.v1 import trainer_pb2_grpc

REPO = Path(__file__).resolve().parents[3]
S = pb.JobState


class Trainer:
    """One trainer process on the shared store, serving once its model is loaded."""

    def __init__(self, root: Path, model: Path) -> None:
        ready = root / f"ready-{uuid.uuid4().hex}.json"
        env = {
            **os.environ,
            "TISTUDIO_STORE_URL": (root / "store").as_uri(),
            "TISTUDIO_CACHE_DIR": str(root / "cache"),
            "TISTUDIO_READY_FILE": str(ready),
            "TISTUDIO_TRAINER_PORT": "0",
            "TISTUDIO_TRAINER_METRICS_PORT": "off",
            "TISTUDIO_DRAIN_SECONDS": "0",
            "TISTUDIO_SD_MODEL": str(model),
            "TISTUDIO_DEVICE": "cpu",
        }
        self.process = subprocess.Popen([sys.executable, "-m", "services.trainer"], cwd=REPO, env=env)
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert self.process.poll() is None, "the trainer exited during start-up"
            assert time.monotonic() < deadline, "the trainer did not start"
            time.sleep(0.1)
        self.channel = grpc.insecure_channel(json.loads(ready.read_text())["address"])
        health = health_pb2_grpc.HealthStub(self.channel)
        while health.Check(health_pb2.HealthCheckRequest()).status != health_pb2.HealthCheckResponse.SERVING:
            assert time.monotonic() < deadline, "the trainer never turned SERVING"
            time.sleep(0.1)
        self.stub = trainer_pb2_grpc.TrainerServiceStub(self.channel)

    def terminate(self) -> int:
        self.channel.close()
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


def test_sigterm_mid_job_loses_no_steps_and_the_next_trainer_finishes_it_exactly(tmp_path, tiny_models):
    store = LocalStore(tmp_path / "store")
    write_dataset(store, "ds/", 4)
    spec = pb.TrainingSpec(
        embedding=common_pb2.StorageRef(key="embeddings/subj3ct.safetensors"),
        dataset=common_pb2.StorageRef(key="ds/"),
        learning_rate="0.005",
        max_steps=150,
        width=32,
        height=32,
        template="subject",
        save_every_steps=0,  # only the shutdown's savepoint can carry the job across
        preview_every_steps=0,
        log_every_steps=1,
    )
    first = Trainer(tmp_path, tiny_models["sd"])
    try:
        first.stub.CreateEmbedding(pb.CreateEmbeddingRequest(name="subj3ct", init_text="woman", vectors_per_token=2))
        job = first.stub.StartTraining(pb.StartTrainingRequest(request_id="interrupted", spec=spec)).job
        seen_step, seen_sequence = 0, 0
        for event in first.stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=120):
            seen_sequence = event.sequence
            if event.HasField("progress"):
                seen_step = event.progress.step
                if seen_step >= 5:
                    break
    finally:
        assert first.terminate() == 0

    record = json.loads(store.get(f"jobs/{job.job_id}/job.json"))
    (saved,) = list_savepoints(store, f"jobs/{job.job_id}/")
    assert record["state"] == "RUNNING"  # for the next process to pick up
    assert seen_step <= saved.step < 150 and record["latest_savepoint"]["step"] == saved.step

    second = Trainer(tmp_path, tiny_models["sd"])
    try:
        events = list(
            second.stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id, after_sequence=seen_sequence), timeout=300)
        )
        assert events[0].sequence == seen_sequence + 1
        assert [e.sequence for e in events] == list(range(seen_sequence + 1, seen_sequence + 1 + len(events)))
        recovered = [e.state_changed for e in events if e.HasField("state_changed")]
        assert any(c.reason.code == "RESUMED_AFTER_RESTART" for c in recovered)
        assert recovered[-1].current == S.JOB_STATE_SUCCEEDED
        resumed_steps = [e.progress.step for e in events if e.HasField("progress")]
        assert resumed_steps == list(range(seen_step + 1, 151))  # every step once: none lost, none repeated

        straight = second.stub.StartTraining(pb.StartTrainingRequest(request_id="straight", spec=spec)).job
        for _ in second.stub.WatchJob(pb.WatchJobRequest(job_id=straight.job_id), timeout=120):
            pass
        a = second.stub.GetJob(pb.GetJobRequest(job_id=job.job_id)).job
        b = second.stub.GetJob(pb.GetJobRequest(job_id=straight.job_id)).job
    finally:
        assert second.terminate() == 0
    assert (a.state, b.state) == (S.JOB_STATE_SUCCEEDED, S.JOB_STATE_SUCCEEDED)
    keys = [j.latest_savepoint.embedding.key for j in (a, b)]
    vectors = [read_embedding(store.get(key), filename=Path(key).name)[0].vectors[0] for key in keys]
    assert torch.equal(vectors[0], vectors[1])
