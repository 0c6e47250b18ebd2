"""A real S3 server for the tests: moto's server mode as a process on a free loopback port,
and a TCP relay in front of it that a test can cut mid-request (the store "stops" while moto
keeps what it held, so a test can look for leftovers) and open again on the same port."""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx

from tests.services import free_port, unavailable

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "aam-test",
    "AWS_SECRET_ACCESS_KEY": "aam-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
BUCKET = "aam-test"


def moto_command() -> list[str]:
    script = Path(sys.executable).parent / "moto_server"
    if script.exists():
        return [str(script)]
    found = shutil.which("moto_server")
    if found is None:
        unavailable("moto_server (pip install 'moto[server]') is not installed")
    return [str(found)]


class MotoServer:
    """``moto_server`` on loopback; :meth:`stop` and :meth:`start` (same port, empty state)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, **CREDENTIALS}
        self.process = subprocess.Popen(
            [*moto_command(), "-H", "127.0.0.1", "-p", str(self.port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"moto_server exited with {self.process.returncode}")
            try:
                httpx.get(f"{self.endpoint}/moto-api/", timeout=1.0)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("moto_server did not answer within 30 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def client(self) -> Any:
        import boto3

        return boto3.session.Session(
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        ).client("s3", endpoint_url=self.endpoint)

    def make_bucket(self, name: str = BUCKET) -> None:
        self.client().create_bucket(Bucket=name)


@contextmanager
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def bucket_server() -> Iterator[MotoServer]:
    """A server holding the bucket :data:`BUCKET`, with the test credentials in this process's
    environment (boto3's usual chain) for the block."""
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    try:
        with moto_server() as running:
            running.make_bucket()
            yield running
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def object_keys(server: MotoServer, bucket: str = BUCKET) -> list[str]:
    answer = server.client().list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in answer.get("Contents", []))


def open_uploads(server: MotoServer, bucket: str = BUCKET) -> list[str]:
    """Keys of multipart uploads started and neither completed nor aborted."""
    answer = server.client().list_multipart_uploads(Bucket=bucket)
    return sorted(item["Key"] for item in answer.get("Uploads", []))


class Relay:
    """A TCP relay from a free loopback port to ``target``. :meth:`cut_during_put` closes every
    connection and the listening socket once ``after`` bytes of a PUT request have passed (the
    store "stops" mid-upload); :meth:`open` listens again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._cut_after: int | None = None
        self._put_bytes = 0
        self._in_put = False
        self.cut = threading.Event()

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        self.cut.clear()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut_during_put(self, after: int) -> None:
        with self._lock:
            self._cut_after, self._put_bytes, self._in_put = after, 0, False

    def close(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
            listener, self._listener = self._listener, None
            self._cut_after = None
        for sock in [*sockets, *([listener] if listener else [])]:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.cut.set()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        pair = {client: upstream, upstream: client}
        try:
            while True:
                ready, _, _ = select.select(list(pair), [], [], 1.0)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client and self._count(data):
                        self.close()
                        return
                    pair[sock].sendall(data)
        except (OSError, ValueError):  # closed by close() meanwhile
            return
        finally:
            for sock in (client, upstream):
                with suppress(OSError):
                    sock.close()

    def _count(self, data: bytes) -> bool:
        """Whether this chunk from the client reaches the cut point."""
        with self._lock:
            if self._cut_after is None:
                return False
            if not self._in_put and b"PUT " in data:
                self._in_put = True
                data = data[data.index(b"PUT ") :]
            if self._in_put:
                self._put_bytes += len(data)
            return self._in_put and self._put_bytes >= self._cut_after
