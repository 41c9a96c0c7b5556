"""The multi-job benchmark's measurements, on the tiny model: two 2-step jobs, sequential and batched."""

from __future__ import annotations

import pytest

from services.common.storage import LocalStore
from services.trainer.bench_jobs import multi_job_table, run_jobs
from services.trainer.engine.testing import write_dataset


@pytest.fixture
def root(tmp_path):
    write_dataset(LocalStore(tmp_path), "ds/", 4, size=32)
    return str(tmp_path)


def _run(components, root, mode):
    return run_jobs(
        components, root, jobs=2, mode=mode, batch=1, size=32, steps=2, device="cpu", precision="fp32", vectors=2
    )


def test_sequential_and_batched_jobs_report_their_throughput_and_finish_times(components, root):
    sequential = _run(components, root, "sequential")
    batched = _run(components, root, "batched")
    for row, mode in ((sequential, "sequential"), (batched, "batched")):
        assert row["mode"] == mode and (row["jobs"], row["steps"], row["batch"], row["size"]) == (2, 2, 1, 32)
        assert row["aggregate_samples_per_s"] > 0 and row["prepare_s"] > 0
        finish = row["per_job_finish_s"]
        assert len(finish) == 2 and all(t > 0 for t in finish)
        assert row["mean_finish_s"] == pytest.approx(sum(finish) / 2) and row["max_finish_s"] == max(finish)
        assert row["aggregate_samples_per_s"] == pytest.approx(4 / row["train_s"])
        assert row["max_finish_s"] <= row["train_s"]
    assert sequential["per_job_finish_s"][0] < sequential["per_job_finish_s"][1]  # the second waits for the first
    assert "mean_runs_per_round" not in sequential
    assert batched["rounds"] == 2 and batched["mean_runs_per_round"] == 2.0  # both jobs in each device batch
    assert batched["capacity"] is None  # no memory budget, no out-of-memory split

    batched["speedup"] = batched["aggregate_samples_per_s"] / sequential["aggregate_samples_per_s"]
    table = multi_job_table([sequential, batched], "tiny, 32 px")
    lines = table.strip().splitlines()
    assert lines[0] == "tiny, 32 px" and "samples/s" in lines[1] and "jobs/batch" in lines[1]
    assert lines[2].split()[:2] == ["2", "sequential"] and lines[3].split()[:2] == ["2", "batched"]
    assert lines[3].split()[-1] == f"{batched['speedup']:.2f}x" and lines[3].split()[-2] == "2.0"


def test_an_unknown_mode_is_refused(components, root):
    with pytest.raises(ValueError, match="mode"):
        _run(components, root, "parallel")
