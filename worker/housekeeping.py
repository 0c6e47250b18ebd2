"""A worker's background thread: its presence row (``/ready`` counts live workers) every
heartbeat, the reaper every ``reap_every`` seconds (at start too, so a restarted worker
picks up at once what a dead one left), and every hour a sweep of artifact storage's
leftovers older than a day (temporary files of crashed writes; on s3:// storage, the parts of
multipart uploads that failed mid-way)."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from app.store import worker_gone, worker_seen
from worker.reaper import reap
from worker.runtime import WorkerRuntime

log = logging.getLogger("aam.worker")

SWEEP_EVERY = 3600.0  # seconds
LEFTOVER_AGE = timedelta(days=1)  # older than any upload or checkpoint write in progress


class Housekeeper(threading.Thread):
    def __init__(self, runtime: WorkerRuntime, *, reap_every: float | None = None) -> None:
        super().__init__(name="aam-housekeeper", daemon=True)
        settings = runtime.settings
        self.runtime = runtime
        self.interval = settings.heartbeat_seconds
        # Often enough that a dead worker's job waits little longer than the timeout.
        self.reap_every = reap_every or max(
            settings.heartbeat_seconds, settings.heartbeat_timeout_seconds / 4
        )
        self.halt = threading.Event()
        self.last_reap = -float("inf")
        self.last_sweep = -float("inf")

    def beat(self) -> None:
        runtime = self.runtime
        with runtime.sessions() as session:
            worker_seen(
                session,
                runtime.name,
                device=runtime.device.name,
                queues=runtime.queues,
                job_id=runtime.current_job,
            )
        if runtime.stopping.is_set() or time.monotonic() - self.last_reap < self.reap_every:
            return
        self.last_reap = time.monotonic()
        report = reap(runtime)
        if any(report.as_dict().values()):
            log.info("reaper: %s", report.as_dict())
        if time.monotonic() - self.last_sweep >= SWEEP_EVERY:
            self.last_sweep = time.monotonic()
            if removed := runtime.storage.sweep_temp(LEFTOVER_AGE):
                log.info("removed %d leftovers of unfinished writes from artifact storage", removed)

    def run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception:  # a database or broker outage must not end the thread
                log.exception("worker housekeeping failed; trying again")
            if self.halt.wait(self.interval):
                return

    def stop(self) -> None:
        """Stop the thread and remove this worker's presence row (a clean shutdown)."""
        self.halt.set()
        if self.is_alive():
            self.join(timeout=30)
        try:
            with self.runtime.sessions() as session:
                worker_gone(session, self.runtime.name)
        except Exception:
            log.exception("could not remove worker %s from the workers table", self.runtime.name)
