"""The trainer's Prometheus metrics in a fresh registry: step and sample counters and the step-time histogram from
StepReports, per-job gauges that leave with the job, and the scrape-time jobs-by-state, queue and memory gauges."""

from __future__ import annotations

import pytest
import torch
from prometheus_client import CollectorRegistry, generate_latest

from services.trainer.engine import RoundReport, StepReport
from services.trainer.jobs import JobRecord, JobState
from services.trainer.metrics import STEP_BUCKETS_SECONDS, TrainerMetrics


def _report(losses=(0.4, 0.3, 0.2, 0.1), *, samples_per_s=16.0, step=10, lr=0.005, norm=0.42) -> StepReport:
    return StepReport(
        step=step,
        epoch=0,
        epoch_step=step - 1,
        loss=losses[-1] if losses else 0.5,
        lr=lr,
        samples_per_s=samples_per_s,
        losses=tuple(losses),
        prompt="a photo of subj3ct",
        embedding_norm=norm,
    )


def _record(job_id: str, state: JobState) -> JobRecord:
    return JobRecord(
        job_id=job_id,
        request_id="",
        spec={},
        spec_fingerprint="",
        state=state,
        max_steps=10,
        output_prefix=f"jobs/{job_id}/",
        create_time=0.0,
        update_time=0.0,
    )


@pytest.fixture
def registry():
    return CollectorRegistry()


def test_each_shared_device_batch_is_counted_by_jobs_samples_and_occupancy(registry):
    metrics = TrainerMetrics(registry)
    metrics.observe_round(RoundReport(runs=3, samples=12, capacity=16, waiting=2))
    metrics.observe_round(RoundReport(runs=1, samples=4, capacity=None, waiting=0))  # no budget: no occupancy
    value = registry.get_sample_value
    assert value("tistudio_trainer_batch_jobs_count") == 2 and value("tistudio_trainer_batch_jobs_sum") == 4
    assert value("tistudio_trainer_batch_jobs_bucket", {"le": "2.0"}) == 1
    assert value("tistudio_trainer_batch_samples_sum") == 16
    assert value("tistudio_trainer_batch_occupancy_ratio_count") == 1
    assert value("tistudio_trainer_batch_occupancy_ratio_sum") == pytest.approx(0.75)
    assert value("tistudio_trainer_batch_waiting_jobs") == 0


def test_observe_steps_counts_steps_and_samples_and_times_each_step(registry):
    metrics = TrainerMetrics(registry)
    metrics.observe_steps("a", _report(samples_per_s=16.0), samples_per_step=8)  # 4 steps at 0.5 s each
    value = registry.get_sample_value
    assert value("tistudio_trainer_steps_total") == 4
    assert value("tistudio_trainer_samples_total") == 32
    assert value("tistudio_trainer_step_duration_seconds_count") == 4
    assert value("tistudio_trainer_step_duration_seconds_sum") == pytest.approx(4 * 0.5)
    assert value("tistudio_trainer_step_duration_seconds_bucket", {"le": "0.25"}) == 0
    assert value("tistudio_trainer_step_duration_seconds_bucket", {"le": "0.5"}) == 4
    assert 0.5 in STEP_BUCKETS_SECONDS and 0.005 in STEP_BUCKETS_SECONDS  # the bounds the checks below use

    metrics.observe_steps("b", _report((0.3,), samples_per_s=400.0), samples_per_step=2)  # 1 step of 5 ms
    assert value("tistudio_trainer_steps_total") == 5  # counters add up over jobs
    assert value("tistudio_trainer_samples_total") == 34
    assert value("tistudio_trainer_step_duration_seconds_count") == 5
    assert value("tistudio_trainer_step_duration_seconds_bucket", {"le": "0.005"}) == 1


def test_a_report_without_a_rate_counts_its_steps_but_times_none(registry):
    metrics = TrainerMetrics(registry)
    metrics.observe_steps("a", _report((0.2, 0.1), samples_per_s=0.0), samples_per_step=4)
    assert registry.get_sample_value("tistudio_trainer_steps_total") == 2
    assert registry.get_sample_value("tistudio_trainer_samples_total") == 8
    assert registry.get_sample_value("tistudio_trainer_step_duration_seconds_count") == 0


def test_job_gauges_carry_the_job_label_and_leave_with_the_job(registry):
    metrics = TrainerMetrics(registry)
    metrics.observe_steps("a", _report(lr=0.005, norm=0.42, samples_per_s=16.0), samples_per_step=8)
    metrics.observe_steps("b", _report((0.7,), lr=0.0025, norm=0.9, samples_per_s=3.0), samples_per_step=1)
    metrics.observe_steps("a", _report((0.15,), lr=0.004, norm=0.5, samples_per_s=20.0), samples_per_step=8)

    def job(name: str, job_id: str):
        return registry.get_sample_value(f"tistudio_trainer_{name}", {"job_id": job_id})

    assert (job("loss", "a"), job("learning_rate", "a")) == (0.15, 0.004)  # the latest report wins
    assert (job("samples_per_second", "a"), job("embedding_norm", "a")) == (20.0, 0.5)
    assert (job("loss", "b"), job("learning_rate", "b"), job("embedding_norm", "b")) == (0.7, 0.0025, 0.9)

    metrics.job_ended("a")
    for name in ("loss", "learning_rate", "samples_per_second", "embedding_norm"):
        assert job(name, "a") is None
        assert job(name, "b") is not None  # the other job keeps its gauges
    assert 'job_id="a"' not in generate_latest(registry).decode()
    metrics.job_ended("a")  # twice: nothing left to remove, no error
    metrics.job_ended("never-reported")  # a job that stopped before its first report
    assert registry.get_sample_value("tistudio_trainer_steps_total") == 4 + 1 + 1  # counters are not per job


def test_jobs_by_state_counts_every_state_at_scrape_time(registry):
    records = [
        _record("q1", JobState.QUEUED),
        _record("q2", JobState.QUEUED),
        _record("r", JobState.RUNNING),
        _record("f", JobState.FAILED),
    ]
    queue = [2]
    TrainerMetrics(registry, jobs=lambda: list(records), queue_length=lambda: queue[0])

    def jobs(state: str):
        return registry.get_sample_value("tistudio_trainer_jobs", {"state": state})

    expected = {state.name.lower(): 0 for state in JobState} | {"queued": 2, "running": 1, "failed": 1}
    assert {state: jobs(state) for state in expected} == expected  # zeros included
    assert registry.get_sample_value("tistudio_trainer_queue_length") == 2

    records.append(_record("s", JobState.SUCCEEDED))
    records[2] = _record("r", JobState.SUCCEEDED)
    queue[0] = 0
    assert (jobs("running"), jobs("succeeded")) == (0, 2)  # read again on each scrape
    assert registry.get_sample_value("tistudio_trainer_queue_length") == 0


def test_defaults_report_no_jobs_and_an_empty_queue(registry):
    TrainerMetrics(registry)
    assert all(
        registry.get_sample_value("tistudio_trainer_jobs", {"state": state.name.lower()}) == 0 for state in JobState
    )
    assert registry.get_sample_value("tistudio_trainer_queue_length") == 0


def test_cpu_memory_is_the_process_resident_size_and_its_peak(registry):
    TrainerMetrics(registry, device="cpu")
    ballast = bytearray(64 * 2**20)  # 64 MiB touched now, so in use is at least that much above nothing
    ballast[::4096] = b"\x01" * len(ballast[::4096])

    def memory(kind: str):
        return registry.get_sample_value("tistudio_trainer_device_memory_bytes", {"device": "cpu", "kind": kind})

    in_use, peak = memory("in_use"), memory("peak")
    assert in_use > 64 * 2**20  # bytes, not KiB or pages
    assert in_use < 1 << 40  # and not absurdly scaled either
    assert peak >= in_use * 0.99
    del ballast


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_memory_follows_the_allocator(registry):
    TrainerMetrics(registry, device="cuda")
    block = torch.empty(32 * 2**20, dtype=torch.uint8, device="cuda")

    def memory(kind: str):
        return registry.get_sample_value("tistudio_trainer_device_memory_bytes", {"device": "cuda", "kind": kind})

    assert memory("in_use") >= block.numel() and memory("peak") >= memory("in_use")
    del block
