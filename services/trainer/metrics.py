"""The trainer's Prometheus metrics, registered in the service's registry next to the RPC metrics.

    metrics = TrainerMetrics(registry, jobs=runner.list, queue_length=runner.queue_length, device="cuda")
    metrics.observe_steps(job_id, report, samples_per_step=8)     # at every logging boundary
    metrics.job_ended(job_id)                                     # drops the job's gauges
    metrics.observe_round(report)                                 # every shared device batch (the DeviceLoop's hook)

Per-job gauges carry a `job_id` label and are removed when the job stops running, so their label values are
bounded by the jobs running at once. Counters and the histogram have no job label: they add up over jobs.
Nothing here synchronises with the GPU: values come from the loop's reports, which are its only host syncs.
"""

from __future__ import annotations

import resource
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.trainer.jobs.model import JobRecord, JobState

__all__ = ["STEP_BUCKETS_SECONDS", "TrainerMetrics"]

# 5 ms (a tiny model on a GPU) to 2 min (SD at 768 px, a large batch, on a CPU), about x2.5 per bucket.
STEP_BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
JOBS_PER_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
SAMPLES_PER_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 256)
OCCUPANCY_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


class TrainerMetrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        jobs: Callable[[], Iterable[JobRecord]] = tuple,
        queue_length: Callable[[], int] = lambda: 0,
        device: str = "cpu",
    ) -> None:
        self.steps = Counter("tistudio_trainer_steps", "Optimizer steps trained, over all jobs.", registry=registry)
        self.samples = Counter(
            "tistudio_trainer_samples", "Training samples (images) processed, over all jobs.", registry=registry
        )
        self.step_duration = Histogram(
            "tistudio_trainer_step_duration_seconds",
            "Wall time per optimizer step, as the mean over each logging window (one observation per step).",
            buckets=STEP_BUCKETS_SECONDS,
            registry=registry,
        )
        self.loss = Gauge("tistudio_trainer_loss", "The latest step's loss.", ("job_id",), registry=registry)
        self.learning_rate = Gauge(
            "tistudio_trainer_learning_rate", "The latest step's learning rate.", ("job_id",), registry=registry
        )
        self.samples_per_second = Gauge(
            "tistudio_trainer_samples_per_second",
            "Training throughput over the latest logging window.",
            ("job_id",),
            registry=registry,
        )
        self.embedding_norm = Gauge(
            "tistudio_trainer_embedding_norm",
            "Mean L2 norm of the embedding's vectors (a norm that keeps growing signals a rate that is too high).",
            ("job_id",),
            registry=registry,
        )
        self.previews_skipped = Counter(
            "tistudio_trainer_previews_skipped",
            "Preview steps not rendered, by why (no preview service, unreachable, fell behind).",
            ("reason",),
            registry=registry,
        )
        self.batch_jobs = Histogram(
            "tistudio_trainer_batch_jobs",
            "Jobs whose samples shared a device batch (one observation per batch).",
            buckets=JOBS_PER_BATCH_BUCKETS,
            registry=registry,
        )
        self.batch_samples = Histogram(
            "tistudio_trainer_batch_samples",
            "Samples in a device batch, over all the jobs in it.",
            buckets=SAMPLES_PER_BATCH_BUCKETS,
            registry=registry,
        )
        self.batch_occupancy = Histogram(
            "tistudio_trainer_batch_occupancy_ratio",
            "A device batch's samples over the samples its memory budget allows (1: full).",
            buckets=OCCUPANCY_BUCKETS,
            registry=registry,
        )
        self.batch_waiting = Gauge(
            "tistudio_trainer_batch_waiting_jobs",
            "Jobs ready to train that the latest device batch had no room for (the memory budget was full).",
            registry=registry,
        )
        registry.register(_JobCollector(jobs, queue_length, device))

    def observe_steps(self, job_id: str, report: Any, *, samples_per_step: int) -> None:
        """A logging window's StepReport: `report.losses` holds one loss per step since the previous report."""
        steps = len(report.losses) or 1
        self.steps.inc(steps)
        self.samples.inc(steps * samples_per_step)
        if report.samples_per_s > 0:
            step_seconds = samples_per_step / report.samples_per_s
            for _ in range(steps):
                self.step_duration.observe(step_seconds)
        self.loss.labels(job_id).set(report.loss)
        self.learning_rate.labels(job_id).set(report.lr)
        self.samples_per_second.labels(job_id).set(report.samples_per_s)
        self.embedding_norm.labels(job_id).set(report.embedding_norm)

    def observe_round(self, report: Any) -> None:
        """One shared device batch (the engine's RoundReport)."""
        self.batch_jobs.observe(report.runs)
        self.batch_samples.observe(report.samples)
        if report.capacity:
            self.batch_occupancy.observe(min(report.samples / report.capacity, 1.0))
        self.batch_waiting.set(report.waiting)

    def job_ended(self, job_id: str) -> None:
        for gauge in (self.loss, self.learning_rate, self.samples_per_second, self.embedding_norm):
            try:
                gauge.remove(job_id)
            except KeyError:
                pass  # the job stopped before its first report


class _JobCollector(Collector):
    """Read at scrape time: jobs by state, the queue length, and the device's memory in use and at its peak."""

    def __init__(self, jobs: Callable[[], Iterable[JobRecord]], queue_length: Callable[[], int], device: str):
        self._jobs = jobs
        self._queue_length = queue_length
        self._device = device

    def collect(self) -> Iterable[GaugeMetricFamily]:
        by_state = GaugeMetricFamily("tistudio_trainer_jobs", "Jobs known to this trainer, by state.", labels=["state"])
        counts = dict.fromkeys(JobState, 0)
        for record in self._jobs():
            counts[record.state] += 1
        for state, count in counts.items():
            by_state.add_metric([state.name.lower()], count)
        yield by_state
        yield GaugeMetricFamily(
            "tistudio_trainer_queue_length", "Jobs waiting for a free training slot.", value=self._queue_length()
        )
        memory = GaugeMetricFamily(
            "tistudio_trainer_device_memory_bytes",
            "Memory of the training device: CUDA memory allocated by tensors, or the process's RAM on a CPU.",
            labels=["device", "kind"],
        )
        in_use, peak = _device_memory(self._device)
        memory.add_metric([self._device, "in_use"], in_use)
        memory.add_metric([self._device, "peak"], peak)
        yield memory


def _device_memory(device: str) -> tuple[float, float]:
    if device.startswith("cuda"):
        import torch

        return float(torch.cuda.memory_allocated(device)), float(torch.cuda.max_memory_allocated(device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0  # Linux reports KiB
    try:
        with open("/proc/self/statm") as statm:
            resident_pages = int(statm.read().split()[1])
        in_use = resident_pages * float(resource.getpagesize())
    except (OSError, ValueError, IndexError):
        in_use = peak  # not Linux: the peak is the best figure there is
    return in_use, peak
