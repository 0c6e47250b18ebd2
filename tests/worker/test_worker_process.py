"""A real worker process (``python -m worker``) on the embedded broker and SQLite: a job that
fails with a readable error leaves the worker up; a cancelled running job ends ``cancelled``
within seconds with its checkpoint kept, and the next job runs; a clean shutdown removes the
worker from the workers table."""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from pathlib import Path

from aam_core.checkpoint import load_checkpoint
from app.contracts import JobState
from app.store import live_workers, request_cancel
from tests.worker.helpers import AGE, FAST, PRETRAIN_FAST, Store, descendants, running, wait_for


def test_failure_cancel_and_next_job_on_one_worker(
    store: Store, study_files: dict[str, Path], tmp_path: Path
) -> None:
    dataset = store.add_dataset(study_files)
    with running("worker", store.env(), tmp_path / "worker.log") as worker:
        # A target of the wrong type that slipped past submission (the API checks it there).
        bad = store.add_job("train", dataset, target={"column": "site", "task": "regression"},
                            config=FAST)  # fmt: skip
        failed = store.wait(bad, JobState.failed, timeout=90)
        assert failed.error == {
            "type": "TargetError",
            "detail": "'site' is categorical; regression needs a numeric column (use task "
            "'classification' for labels)",
            "field": "target.column",
        }
        assert failed.attempts == 1 and failed.model_id is None
        assert worker.popen.poll() is None  # the worker is still up

        with store.sessions() as session:
            (seen,) = live_workers(session, within=timedelta(minutes=1))
            assert (seen.device, seen.queues) == ("cpu", "gpu")

        long = store.add_job("pretrain", dataset, config={**PRETRAIN_FAST, "epochs": 500})
        store.wait(long, JobState.running, timeout=60)
        wait_for("training steps", lambda: (store.job(long).progress.get("step") or 0) >= 8, 60)
        children = descendants(worker.pid)
        assert len(children) == 1  # the job's process
        step_at_cancel = store.job(long).progress["step"]
        asked = time.monotonic()
        with store.sessions() as session:
            assert request_cancel(session, long) == JobState.cancelling
        cancelled = store.wait(long, JobState.cancelled, timeout=30)
        assert time.monotonic() - asked < 15
        assert cancelled.error is None and cancelled.model_id is None
        # The checkpoint saved at the stop is kept: as an output and in the run directory.
        kept = store.storage.path(cancelled.outputs["checkpoint"])
        resume = load_checkpoint(kept).resume
        assert resume is not None
        assert step_at_cancel <= resume["step"] < 500 * 5
        assert (store.settings.data_dir / "runs" / long / "checkpoints" / "last.pt").is_file()
        assert store.logs(long)[-1].startswith(f"cancelled at step {resume['step']}")
        wait_for("the job's process to end", lambda: not descendants(worker.pid), 10)

        nxt = store.add_job("train", dataset, target=AGE, config={**FAST, "epochs": 1})
        done = store.wait(nxt, JobState.succeeded, timeout=90)
        assert done.model_id is not None and done.attempts == 1

        assert worker.stop(signal.SIGTERM, timeout=60) == 0
    with store.sessions() as session:
        assert live_workers(session, within=timedelta(minutes=1)) == []
