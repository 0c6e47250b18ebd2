"""``python -m aam_service`` (``make serve``): the whole service on one machine, in one command.

It migrates the database once, then starts the API (``python -m app``) and a worker
(``python -m worker``) as child processes with the same ``AAM_*`` settings: by default SQLite,
local files and the embedded broker under ``AAM_DATA_DIR``; Redis and PostgreSQL when
``AAM_BROKER_URL`` and ``AAM_DATABASE_URL`` are set. It prints the URL once the API answers.
A child that ends on its own is started again: the job a dead worker held is requeued once its
heartbeat is older than ``AAM_HEARTBEAT_TIMEOUT_SECONDS`` and resumes from its last checkpoint.
Ctrl-C (or SIGTERM) stops both: the worker first stops its running job at a checkpoint and
hands it back to the queue, so after a restart every job and model is where it was and an
interrupted training resumes. A second Ctrl-C stops them at once.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from types import FrameType

from app.settings import Settings
from app.store import make_engine, migrate
from worker.broker import declare_queues, is_embedded
from worker.celery_app import KNOWN_QUEUES, make_celery

READY_TIMEOUT_S = 120.0
# A child that ends this often within the window is not started again.
MAX_EXITS = 3
EXITS_WINDOW_S = 60.0


def _say(message: str) -> None:
    print(f"aam serve: {message}", flush=True)


def _prepare(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    if is_embedded(settings.resolved_broker_url):
        declare_queues(make_celery(settings), list(KNOWN_QUEUES))


def _wait_ready(url: str, children: Children, requests: list[int]) -> bool:
    """Whether the API answers ``/health`` before the timeout, a stop request, or a child
    that keeps ending."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and not requests and children.failed is None:
        children.restart_dead(time.monotonic())
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1.0) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    return False


@dataclass
class Child:
    """One service process (``python -m MODULE``) in a session of its own: a Ctrl-C reaches
    ``serve`` only, which then stops the children in order rather than all at once mid-write."""

    name: str
    module: str
    process: subprocess.Popen[bytes] | None = None
    # when it ended unexpectedly, recently (see Children.restart_dead)
    exits: deque[float] = field(default_factory=deque)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module], stdin=subprocess.DEVNULL, start_new_session=True
        )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Children:
    """The API and the worker. A child that ends on its own is started again (a worker's job
    is taken up again through its heartbeat, :mod:`worker.reaper`), unless it keeps ending:
    ``MAX_EXITS`` times within ``EXITS_WINDOW_S`` means it cannot start (bad settings, a
    missing device), and ``serve`` stops."""

    def __init__(self, modules: dict[str, str]) -> None:
        self.children = [Child(name, module) for name, module in modules.items()]
        self.failed: str | None = None  # the child that kept ending

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [c.process for c in self.children if c.process is not None]

    def start(self) -> None:
        for child in self.children:
            child.start()

    def restart_dead(self, now: float) -> None:
        """Start again each child that has ended, unless it keeps ending (then ``failed``)."""
        for child in self.children:
            if self.failed is not None or child.process is None or child.running():
                continue
            code = child.process.returncode
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            child.exits.append(now)
            while child.exits and child.exits[0] < now - EXITS_WINDOW_S:
                child.exits.popleft()
            if len(child.exits) >= MAX_EXITS:
                times = f"{len(child.exits)} times within {EXITS_WINDOW_S:.0f} s"
                _say(f"the {child.name} process ended {times} ({how}); stopping")
                self.failed = child.name
                return
            _say(f"the {child.name} process ended unexpectedly ({how}); starting a new one")
            child.start()

    def kill(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()

    def stop(self, sig: int, timeout: float) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(sig)
        deadline = time.monotonic() + timeout
        for process in self.processes:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aam_service", description=__doc__)
    parser.parse_args(argv)
    try:
        settings = Settings()
        settings.check_bind()
        _prepare(settings)
    except Exception as exc:  # bad settings, unreachable database or broker: one line
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    requests: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        requests.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    children = Children({"api": "app", "worker": "worker"})
    children.start()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = f"http://{host}:{settings.port}"
    if _wait_ready(url, children, requests):
        _say(f"AAM service at {url}  (API docs: {url}/docs)")
        _say(f"data in {settings.data_dir.resolve()}; press Ctrl-C to stop")
    while not requests and children.failed is None:
        children.restart_dead(time.monotonic())
        time.sleep(0.2)
    _say("stopping (a running job is saved and resumes after a restart)")
    # A second Ctrl-C while waiting: stop at once.
    signal.signal(signal.SIGINT, lambda *_: children.kill())
    children.stop(signal.SIGTERM, settings.cancel_grace_seconds * 2 + 30)
    _say("stopped")
    return 0 if children.failed is None else 1


if __name__ == "__main__":
    raise SystemExit(main())
