"""Launch a job's child process and watch it: relay its events, pass on a stop request, and
end it by force when it does not stop.

The child runs in a session of its own, so a Ctrl-C meant for ``make serve`` reaches the worker
(which stops the child cleanly, with a checkpoint) rather than killing the child mid-write;
under ``torchrun`` the group holds every rank, so signals go to the whole group. Stopping:
ask (``stop``: the training loop saves a checkpoint at its next step); after ``grace``
seconds SIGTERM; after another ``grace`` SIGKILL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from worker import link

log = logging.getLogger("aam.worker")

TAIL_BYTES = 4000


@dataclass(frozen=True)
class ChildOutcome:
    final: dict[str, Any] | None  # the child's "done" or "error" message; None: it died first
    returncode: int | None
    stop_reason: str | None  # why the worker asked it to stop, if it did
    output_tail: str  # the end of its stdout/stderr


def command(plan_path: Path, nproc: int) -> list[str]:
    runner = ["-m", "worker.runner", str(plan_path)]
    if nproc <= 1:
        return [sys.executable, *runner]
    return [
        sys.executable,
        *("-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"),
        *runner,
    ]


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(path.stat().st_size - TAIL_BYTES, 0))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


class Supervisor:
    def __init__(
        self,
        plan_path: Path,
        *,
        nproc: int,
        output: Path,
        grace: float,
        poll: float = 0.2,
        argv: list[str] | None = None,
    ) -> None:
        self.plan_path = plan_path
        self.nproc = nproc
        self.argv = argv or command(plan_path, nproc)  # argv: another child (tests)
        self.output = output
        self.grace = grace
        self.poll = poll

    def run(
        self,
        on_message: Callable[[dict[str, Any]], None],
        tick: Callable[[], str | None],
    ) -> ChildOutcome:
        """Run the child to its end. ``on_message`` gets each event; ``tick`` is called every
        ``poll`` seconds and returns a reason to stop the child, or None."""
        listener = link.Listener()
        env = {**os.environ, link.SOCKET_ENV: listener.path}
        with self.output.open("ab") as sink:
            process = subprocess.Popen(
                self.argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            final, reason = self._watch(process, listener, on_message, tick)
        finally:
            listener.close()
            if process.poll() is None:  # the worker itself is going down: take the child along
                _signal_group(process, signal.SIGTERM)
                try:
                    process.wait(timeout=self.grace)
                except subprocess.TimeoutExpired:
                    _signal_group(process, signal.SIGKILL)
                    process.wait()
            _signal_group(process, signal.SIGKILL)  # any rank left behind by torchrun
        return ChildOutcome(final, process.returncode, reason, _tail(self.output))

    def _watch(
        self,
        process: subprocess.Popen[bytes],
        listener: link.Listener,
        on_message: Callable[[dict[str, Any]], None],
        tick: Callable[[], str | None],
    ) -> tuple[dict[str, Any] | None, str | None]:
        connection: Connection | None = None
        closed = False  # the child's end of the socket is closed (it exited)
        final: dict[str, Any] | None = None
        reason: str | None = None
        stop_sent = False
        stopped_at = terminated_at = killed_at = None
        while True:
            if connection is None and not closed:
                connection = listener.accept(self.poll)
            elif connection is not None and not closed:
                try:
                    if connection.poll(self.poll):
                        message = link.receive(connection)
                        if message["type"] in ("done", "error"):
                            final = message
                        else:
                            on_message(message)
                except (EOFError, OSError):
                    closed = True
                    connection.close()
            else:
                time.sleep(self.poll)
            exited = process.poll() is not None
            if exited and (closed or connection is None):
                return final, reason
            if exited and connection is not None and not connection.poll(0):
                closed = True  # nothing more to read from a process that has ended
                continue
            wanted = tick()  # heartbeats go on while the child winds down
            if reason is None and wanted is not None:
                reason, stopped_at = wanted, time.monotonic()
                log.info("asking the job's process to stop (%s)", reason)
            if reason is not None and connection is not None and not closed and not stop_sent:
                with contextlib.suppress(OSError):
                    link.send(connection, {"type": "stop"})
                stop_sent = True
            now = time.monotonic()
            if stopped_at is not None and terminated_at is None and now - stopped_at > self.grace:
                log.warning("the job's process did not stop within %.0f s: SIGTERM", self.grace)
                _signal_group(process, signal.SIGTERM)
                terminated_at = now
            if terminated_at is not None and killed_at is None and now - terminated_at > self.grace:
                log.warning("the job's process ignored SIGTERM for %.0f s: SIGKILL", self.grace)
                _signal_group(process, signal.SIGKILL)
                killed_at = now
