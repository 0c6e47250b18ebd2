"""What the integration tests share about local services: free ports, the CI rule for a
missing service, and scratch PostgreSQL databases that a test creates and drops itself."""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from app.store.db import normalize_url

POSTGRES_ADMIN_URL = os.environ.get(
    "AAM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def unavailable(message: str) -> None:
    """Skip for lack of a service, except under CI=true, where that is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: these tests must run)")
    pytest.skip(message)


@contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A size-limited filesystem (tmpfs of ``size``, e.g. ``"2m"``) mounted at ``path`` for the
    block; needs root (or CAP_SYS_ADMIN), as CI has."""
    path.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mount.returncode != 0:
        unavailable(
            f"cannot mount a {size} tmpfs at {path} for the full-disk tests "
            f"({mount.stderr.strip() or 'mount failed'}); run them as root"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def fill(directory: Path, leave: int = 0) -> Path:
    """Fill the filesystem of ``directory`` with one file, up to ``leave`` free bytes (or
    until it refuses: other writers may be filling it at the same time)."""
    filler = directory / "filler"
    with filler.open("ab", buffering=0) as handle:
        while (room := shutil.disk_usage(directory).free - leave) > 0:
            try:
                handle.write(b"\0" * min(room, 1024**2))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return filler


def wait_healthy(base: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Wait until the server process at ``base`` answers ``/health`` with 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the server did not answer /health within {timeout} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def postgres_admin() -> Engine:
    """An AUTOCOMMIT engine on the test server's ``test`` database (skips or fails when the
    server is unreachable; see :func:`unavailable`)."""
    admin = create_engine(
        normalize_url(POSTGRES_ADMIN_URL),
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 3},
    )
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        admin.dispose()
        unavailable(f"PostgreSQL at {POSTGRES_ADMIN_URL!r} is unreachable: {exc}")
    return admin


def create_database(admin: Engine) -> str:
    """A new, empty ``aam_test_<random>`` database; its name."""
    name = f"aam_test_{secrets.token_hex(6)}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    return name


def drop_database(admin: Engine, name: str) -> None:
    with admin.connect() as connection:
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))


@contextmanager
def scratch_postgres() -> Iterator[str]:
    """The URL of a database of its own on the local server, dropped on exit."""
    admin = postgres_admin()
    name = create_database(admin)
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        drop_database(admin, name)
        admin.dispose()
