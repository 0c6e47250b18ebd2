"""A worker whose disk fills up during training: the job fails saying so, and the checkpoint
written before stays whole. The data directory is a real size-limited filesystem (tmpfs,
mounted as root); the database lives elsewhere, as on a host with PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from aam_core.checkpoint import load_checkpoint
from app.contracts import JobState
from tests.services import fill, small_disk
from tests.worker.helpers import PRETRAIN_FAST, Store, wait_for
from tests.worker.test_pipeline import Depth, RecordingDispatcher
from worker.devices import DeviceInfo
from worker.pipeline import run_job
from worker.runtime import WorkerRuntime


def test_a_full_disk_fails_the_job_by_name_and_keeps_the_last_checkpoint(
    tmp_path: Path, study_files: dict[str, Path]
) -> None:
    database = f"sqlite:///{tmp_path / 'aam.db'}"
    with (
        small_disk(tmp_path / "disk", "64m") as disk,
        Store.open(disk / "data", database_url=database) as store,
    ):
        dataset = store.add_dataset(study_files)
        job_id = store.add_job(
            "pretrain", dataset, send=False, config={**PRETRAIN_FAST, "epochs": 200}
        )
        runtime = WorkerRuntime(
            settings=store.settings, name="celery@test:1", device=DeviceInfo("cpu", 0),
            queues=["gpu"], engine=store.engine, sessions=store.sessions,
            storage=store.storage, dispatcher=RecordingDispatcher(), queue_depth=Depth(),
        )  # fmt: skip
        checkpoints = runtime.run_dir(job_id) / "checkpoints"
        with ThreadPoolExecutor(1) as pool:
            outcome = pool.submit(run_job, runtime, job_id)
            wait_for("the first checkpoint", lambda: (checkpoints / "last.pt").is_file() or None,
                     timeout=120, every=0.02)  # fmt: skip
            filler = fill(disk)
            assert outcome.result(timeout=300) == "failed"

        job = store.job(job_id)
        assert job.state == JobState.failed.value
        assert job.error["type"] == "StorageFull", job.error
        assert job.error["detail"].startswith("the worker's disk is full ([Errno 28] No space")
        assert job.error["detail"].endswith(
            "the checkpoints written before are kept: free space on the worker, then submit "
            "the job again"
        )
        # the last checkpoint is whole (the failed write was to a temporary file, now gone)
        assert sorted(p.name for p in checkpoints.iterdir()) == ["best.pt", "last.pt"]
        last = load_checkpoint(checkpoints / "last.pt")
        assert last.resume is not None and last.resume["epoch"] >= 0
        assert all(
            torch.isfinite(v).all() for v in last.state_dict.values() if v.is_floating_point()
        )
        filler.unlink()
