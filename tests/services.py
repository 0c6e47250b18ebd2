"""What the integration tests share about local services: free ports, the CI rule for a
missing service, and scratch PostgreSQL databases that a test creates and drops itself."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager

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
