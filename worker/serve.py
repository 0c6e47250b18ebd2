"""``python -m worker.serve`` (``make serve``): the whole service on one machine, in one command.

It migrates the database once, then starts the API (``python -m app``) and a worker
(``python -m worker``) as child processes with the same ``AAM_*`` settings: by default SQLite,
local files and the embedded broker under ``AAM_DATA_DIR``; Redis and PostgreSQL when
``AAM_BROKER_URL`` and ``AAM_DATABASE_URL`` are set. It prints the URL once the API answers.
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
from types import FrameType

from app.settings import Settings
from app.store import make_engine, migrate
from worker.broker import declare_queues, is_embedded
from worker.celery_app import KNOWN_QUEUES, make_celery

READY_TIMEOUT_S = 120.0


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


def _wait_ready(url: str, processes: list[subprocess.Popen[bytes]]) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            return False
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1.0) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    return False


class Children:
    """The API and the worker, each in a session of its own: a Ctrl-C reaches this process
    only, which then stops them in order rather than both at once mid-write."""

    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, module: str) -> None:
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", module], stdin=subprocess.DEVNULL, start_new_session=True
        )

    def exited(self) -> str | None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                return name
        return None

    def kill(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()

    def stop(self, sig: int, timeout: float) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(sig)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.serve", description=__doc__)
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
    children = Children()
    children.start("api", "app")
    children.start("worker", "worker")
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = f"http://{host}:{settings.port}"
    if _wait_ready(url, list(children.processes.values())):
        _say(f"AAM service at {url}  (API docs: {url}/docs)")
        _say(f"data in {settings.data_dir.resolve()}; press Ctrl-C to stop")
    code = 0
    while not requests:
        gone = children.exited()
        if gone is not None:
            _say(f"the {gone} process ended unexpectedly; stopping")
            code = 1
            break
        time.sleep(0.2)
    _say("stopping (a running job is saved and resumes after a restart)")
    # A second Ctrl-C while waiting: stop at once.
    signal.signal(signal.SIGINT, lambda *_: children.kill())
    children.stop(signal.SIGTERM, settings.cancel_grace_seconds * 2 + 30)
    _say("stopped")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
