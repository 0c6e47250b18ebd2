"""Helpers of the worker tests: the store a test shares with worker processes, and those
processes (``python -m worker``, ``python -m app``, ``python -m aam_service``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aam_core.plan.config import run_settings
from app.contracts import JobKind, JobSpec, JobState
from app.dispatch import CeleryDispatcher
from app.settings import Settings
from app.store import (
    Job,
    create_dataset,
    create_job,
    get_job,
    make_engine,
    make_session_factory,
    migrate,
)
from app.store.storage import open_store
from app.store.tables import JobLog

T = TypeVar("T")

# Small enough that a tiny-preset job takes seconds on two CPU cores.
FAST = {
    "preset": "tiny",
    "batch_size": 8,
    "lr": 3e-3,
    "rarefaction_depth": 1000,
    "token_limit": 32,
    "patience": 0,
    "baseline": False,
}
# A pretrain job takes only the settings that apply to pretraining (no baseline: no target).
PRETRAIN_FAST = {k: v for k, v in FAST.items() if k in run_settings("pretrain")}
AGE = {"column": "age", "task": "regression"}


def wait_for(what: str, check: Callable[[], T | None], timeout: float, every: float = 0.1) -> T:
    """Poll ``check`` until it returns something other than None (or False)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie waiting for its parent to reap it does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


@dataclass
class Store:
    """The database, artifact storage and broker a test shares with its worker processes."""

    settings: Settings

    @classmethod
    @contextmanager
    def open(
        cls,
        data_dir: Path,
        *,
        database_url: str | None = None,
        broker_url: str | None = None,
        storage_url: str | None = None,
        s3_endpoint_url: str | None = None,
    ) -> Iterator[Store]:
        settings = Settings(
            data_dir=data_dir,
            database_url=database_url,
            broker_url=broker_url,
            storage_url=storage_url,
            s3_endpoint_url=s3_endpoint_url,
        )
        data_dir.mkdir(parents=True, exist_ok=True)
        store = cls(settings)
        migrate(store.engine)
        try:
            yield store
        finally:
            store.engine.dispose()

    def __post_init__(self) -> None:
        self.engine = make_engine(self.settings.resolved_database_url)
        self.sessions = make_session_factory(self.engine)
        self.storage = open_store(self.settings)
        self.dispatcher = CeleryDispatcher(self.settings.resolved_broker_url)

    def env(self, **extra: object) -> dict[str, str]:
        """The environment of a worker or API process on this store (fast timings)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AAM_")}
        env.update(
            AAM_DATA_DIR=str(self.settings.data_dir),
            AAM_DEVICE="cpu",
            AAM_HEARTBEAT_TIMEOUT_SECONDS="4",  # beats every 1/3 s
            AAM_CANCEL_GRACE_SECONDS="10",
            AAM_LOG_LEVEL="INFO",
            OMP_NUM_THREADS="1",
        )
        if self.settings.database_url:
            env["AAM_DATABASE_URL"] = self.settings.database_url
        if self.settings.broker_url:
            env["AAM_BROKER_URL"] = self.settings.broker_url
        if self.settings.storage_url:
            env["AAM_STORAGE_URL"] = self.settings.storage_url
        if self.settings.s3_endpoint_url:
            env["AAM_S3_ENDPOINT_URL"] = self.settings.s3_endpoint_url
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def add_dataset(self, files: dict[str, Path], owner: str = "alice") -> str:
        entries = {}
        for role, path in files.items():
            sha256, size = self.storage.put_file(path)
            entries[role] = {"sha256": sha256, "name": path.name, "size": size}
        with self.sessions() as session:
            dataset = create_dataset(session, owner=owner, name="study", files=entries, summary={})
            session.commit()
            return dataset.id

    def add_job(self, kind: str, dataset_id: str, *, send: bool = True, **fields: Any) -> str:
        """A queued job (as POST /jobs stores it) and, unless ``send=False``, its message."""
        spec = JobSpec.model_validate({"kind": kind, "dataset_id": dataset_id, **fields})
        with self.sessions() as session:
            job, _ = create_job(
                session,
                owner="alice",
                kind=spec.kind,
                name=spec.name or f"{kind} test",
                spec=spec.model_dump(mode="json", exclude_none=True),
                dataset_id=dataset_id,
                base_model_id=spec.base_model_id,
                model_id=spec.model_id,
                max_attempts=self.settings.max_attempts,
            )
            session.commit()
            job_id = job.id
        if send:
            self.dispatcher.send_job(job_id, JobKind(kind))
        return job_id

    def job(self, job_id: str) -> Job:
        with self.sessions() as session:
            job = get_job(session, job_id, None)
            assert job is not None, f"job {job_id} does not exist"
            return job

    def logs(self, job_id: str) -> list[str]:
        with self.sessions() as session:
            rows = session.query(JobLog).filter_by(job_id=job_id).order_by(JobLog.line).all()
            return [row.message for row in rows]

    def wait(self, job_id: str, *states: JobState, timeout: float = 120.0) -> Job:
        wanted = {s.value for s in states}

        def check() -> Job | None:
            job = self.job(job_id)
            return job if job.state in wanted else None

        try:
            return wait_for(f"job {job_id} to be {'/'.join(wanted)}", check, timeout, 0.1)
        except AssertionError as exc:
            job = self.job(job_id)
            raise AssertionError(
                f"{exc}: it is {job.state} (error {job.error}); log: {self.logs(job_id)[-5:]}"
            ) from None


class Process:
    """A service process (``python -m MODULE``) with its output in a file."""

    def __init__(self, module: str, env: dict[str, str], log: Path, *args: str) -> None:
        self.module = module
        self.log = log
        with log.open("ab") as sink:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Signal it and wait; its exit status (a test failure when it does not exit)."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.module} did not exit within {timeout} s of signal {sig}:\n"
                + self.output()[-3000:]
            ) from None

    def kill(self) -> list[int]:
        """kill -9 the process and everything below it; the PIDs killed."""
        pids = [self.pid, *descendants(self.pid)]
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.popen.wait(timeout=30)
        return pids


@contextmanager
def running(module: str, env: dict[str, str], log: Path, *args: str) -> Iterator[Process]:
    """A process that is stopped (SIGTERM, then SIGKILL) when the block ends."""
    process = Process(module, env, log, *args)
    try:
        yield process
    finally:
        if process.popen.poll() is None:
            with suppress(AssertionError):  # stop() killed it
                process.stop(timeout=30)
