"""What a worker process holds while it runs: settings, database, storage, its device and
name, the dispatcher the reaper re-sends with, and whether it is shutting down."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.dispatch import Dispatcher
from app.settings import Settings
from app.store import ArtifactStore
from worker.devices import DeviceInfo


def worker_name(nodename: str | None = None) -> str:
    """Unique among live workers: the Celery node name and the process ID (a restarted worker
    on the same host must not pass for the one that held a job before)."""
    return f"{nodename or 'celery@' + socket.gethostname()}:{os.getpid()}"


@dataclass
class WorkerRuntime:
    settings: Settings
    name: str
    device: DeviceInfo
    queues: list[str]
    engine: Engine
    sessions: sessionmaker[Session]
    storage: ArtifactStore
    dispatcher: Dispatcher
    # the number of messages waiting in a broker queue (None: unknown), for the reaper
    queue_depth: Callable[[str], int | None] = lambda queue: None
    stopping: threading.Event = field(default_factory=threading.Event)
    current_job: str | None = None

    @property
    def runs_dir(self) -> Path:
        return self.settings.data_dir / "runs"

    def run_dir(self, job_id: str) -> Path:
        return self.runs_dir / job_id
