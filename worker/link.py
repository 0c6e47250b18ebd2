"""The line between the worker and its child process: JSON messages over a Unix socket.

The worker listens on a socket in a private (0700) temporary directory and passes its path in
the environment; the child (or rank 0 of a torchrun launch, whose ranks the worker did not
spawn itself) connects. Messages are length-prefixed by ``multiprocessing.connection`` and hold
JSON, never pickles. The child sends ``step``, ``epoch`` and ``log`` events, then ``done`` or
``error``; the worker sends ``stop``. When either side dies the kernel closes the socket, so
the other learns it at its next read: an orphaned child stops at its next step.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import tempfile
from multiprocessing.connection import Client, Connection
from pathlib import Path
from typing import Any

SOCKET_ENV = "AAM_RUNNER_SOCKET"


def send(connection: Connection, message: dict[str, Any]) -> None:
    connection.send_bytes(json.dumps(message, allow_nan=False).encode("utf-8"))


def receive(connection: Connection) -> dict[str, Any]:
    message = json.loads(connection.recv_bytes().decode("utf-8"))
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ValueError(f"unexpected message from the job's process: {str(message)[:200]}")
    return message


class Listener:
    """The worker's end: one child connects, once."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="aam-job-"))  # mode 0700
        self.path = str(self.directory / "runner.sock")
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.socket.bind(self.path)
        self.socket.listen(1)

    def accept(self, timeout: float) -> Connection | None:
        """The child's connection, or None when it has not connected within ``timeout``."""
        ready, _, _ = select.select([self.socket], [], [], timeout)
        if not ready:
            return None
        accepted, _ = self.socket.accept()
        accepted.setblocking(True)
        return Connection(accepted.detach())

    def close(self) -> None:
        self.socket.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class ParentLink:
    """The child's end: events out, stop requests in."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.broken = False
        self.stop_requested = False

    @classmethod
    def connect(cls, path: str | None = None) -> ParentLink:
        address = path or os.environ[SOCKET_ENV]
        return cls(Client(address, family="AF_UNIX"))

    def send(self, message: dict[str, Any]) -> None:
        if self.broken:
            return
        try:
            send(self.connection, message)
        except OSError:  # the worker is gone: stop cleanly at the next step
            self.broken = True

    def should_stop(self) -> bool:
        """Whether the worker asked for a stop, or is gone (polls without blocking)."""
        while not (self.broken or self.stop_requested):
            try:
                if not self.connection.poll(0):
                    break
                if receive(self.connection)["type"] == "stop":
                    self.stop_requested = True
            except (EOFError, OSError):
                self.broken = True
        return self.broken or self.stop_requested

    def close(self) -> None:
        self.connection.close()
