"""Engines, migrations and readiness on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import StatementError

from app.store.db import (
    begin_write,
    current_revision,
    head_revision,
    make_engine,
    make_session_factory,
    migrate,
    normalize_url,
    ping,
)
from app.store.tables import Base, Dataset, new_id
from tests.store.conftest import PostgresDatabases
from tests.store.factories import make_dataset


def test_sqlite_engine_creates_the_directory_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "aam.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            pragma = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
            }
        assert path.parent.is_dir()
        # synchronous: 1 is NORMAL; busy_timeout in milliseconds.
        assert pragma == {
            "journal_mode": "wal",
            "foreign_keys": 1,
            "synchronous": 1,
            "busy_timeout": 30000,
        }
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u@db:5432/aam", "postgresql+psycopg"),
        ("postgres://u@db/aam", "postgresql+psycopg"),
        ("postgresql+psycopg://u@db/aam", "postgresql+psycopg"),
        ("sqlite:////tmp/x.db", "sqlite"),
    ],
)
def test_normalize_url(url: str, driver: str) -> None:
    assert normalize_url(url).drivername == driver


def test_postgres_engine_uses_psycopg() -> None:
    engine = make_engine("postgresql://postgres@127.0.0.1:5432/unused")  # does not connect
    assert engine.url.drivername == "postgresql+psycopg"
    engine.dispose()


def test_a_pooled_connection_the_server_closed_is_replaced(postgres: PostgresDatabases) -> None:
    """A database restart (or an idle timeout) ends the pool's connections; the next checkout
    finds out and opens a new one (pre-ping) instead of failing the request."""
    engine = make_engine(postgres.create())
    try:
        with engine.connect() as connection:
            first = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with postgres.admin.connect() as admin:  # the server ends the pooled connection
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        with engine.connect() as connection:
            again = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert again != first
    finally:
        engine.dispose()


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database URL scheme 'mysql'"):
        make_engine("mysql://u@db/aam")


def test_migrations_match_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
    tables = set(inspect(engine).get_table_names())
    assert tables == {
        "alembic_version",
        "datasets",
        "jobs",
        "job_metrics",
        "job_logs",
        "models",
        "workers",
    }
    assert current_revision(engine) == head_revision() == "0002"


def test_migrate_again_is_a_no_op_and_ping_reports_head(engine: Engine) -> None:
    with make_session_factory(engine)() as session:
        make_dataset(session)
    migrate(engine)
    ok, detail = ping(engine)
    assert ok, detail
    assert detail == f"{engine.dialect.name}: schema at revision 0002"
    with make_session_factory(engine)() as session:
        assert session.scalar(select(Dataset.name)) == "gut study"


def _migrate_concurrently(engine: Engine, n: int = 4) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def run() -> None:
        try:
            barrier.wait()
            migrate(engine)
        except BaseException as exc:  # collected and asserted on by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_concurrent_first_migrations_on_sqlite(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        assert ping(engine) == (
            False,
            "sqlite: schema at revision none, expected 0002 (run the migration: the service "
            "and workers migrate on start)",
        )
        assert _migrate_concurrently(engine) == []
        assert ping(engine)[0]
    finally:
        engine.dispose()


def test_concurrent_first_migrations_on_postgresql(postgres: PostgresDatabases) -> None:
    engine = make_engine(postgres.create())
    try:
        assert ping(engine)[0] is False
        assert _migrate_concurrently(engine) == []
        assert ping(engine) == (True, "postgresql: schema at revision 0002")
    finally:
        engine.dispose()


def test_ping_reports_an_unreachable_database(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/missing-dir-is-a-file.db")
    (tmp_path / "missing-dir-is-a-file.db").mkdir()  # a directory where the file should be
    try:
        ok, detail = ping(engine)
    finally:
        engine.dispose()
    assert ok is False
    assert detail.startswith("sqlite: OperationalError: ")


def test_timestamps_come_back_aware_and_in_utc(engine: Engine) -> None:
    plus_two = timezone(timedelta(hours=2))
    created = datetime(2026, 3, 1, 14, 30, 0, 250000, tzinfo=plus_two)
    with make_session_factory(engine)() as session:
        dataset = make_dataset(session, created_at=created)
    with make_session_factory(engine)() as session:
        stored = session.get(Dataset, dataset.id)
        assert stored is not None
        assert stored.created_at == datetime(2026, 3, 1, 12, 30, 0, 250000, tzinfo=UTC)
        assert stored.created_at.utcoffset() == timedelta(0)
        raw = session.execute(text("SELECT created_at FROM datasets")).scalar_one()
        if engine.dialect.name == "sqlite":  # the UTC wall clock, as text
            assert raw == "2026-03-01 12:30:00.250000"
        else:  # a timestamptz (psycopg answers in the session's time zone)
            assert raw == datetime(2026, 3, 1, 12, 30, 0, 250000, tzinfo=UTC)


def test_naive_datetimes_are_refused(engine: Engine) -> None:
    with make_session_factory(engine)() as session, pytest.raises(StatementError, match="naive"):
        make_dataset(session, created_at=datetime(2026, 3, 1, 12, 0))


def test_new_id_format() -> None:
    ids = {new_id("job") for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("job_") and len(i) == 20 for i in ids)
    assert all(int(i[4:], 16) >= 0 for i in ids)


def sqlite_with_table(path: Path) -> Engine:
    """A SQLite engine on ``path`` whose database has one table, ``t (x INTEGER)``."""
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
    return engine


def test_sqlite_write_transactions_wait_for_each_other_instead_of_failing(
    tmp_path: Path,
) -> None:
    """A write transaction (begin_write) takes SQLite's write lock at BEGIN: a second one that
    reads, then writes, waits at its BEGIN until the first commits, then reads the first's
    row. Opened with a plain BEGIN it would read first and fail with "database is locked" at
    its write, its snapshot being older than the first's commit."""
    engine = sqlite_with_table(tmp_path / "w.db")
    sessions = make_session_factory(engine)
    events: list[str] = []

    def second_writer() -> None:
        with sessions() as session:
            begin_write(session)
            seen = session.execute(text("SELECT count(*) FROM t")).scalar_one()
            events.append(f"second saw {seen}")
            session.execute(text("INSERT INTO t VALUES (2)"))
            session.commit()

    with sessions() as first:
        begin_write(first)
        first.execute(text("INSERT INTO t VALUES (1)"))
        thread = threading.Thread(target=second_writer)
        thread.start()
        time.sleep(0.3)
        assert events == []  # waiting at its BEGIN
        with sessions() as reader:  # readers are not held up by the writer (WAL)
            assert reader.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
        events.append("first commits")
        first.commit()
        thread.join(timeout=10)
    assert events == ["first commits", "second saw 1"]
    with engine.connect() as connection:
        assert sorted(connection.execute(text("SELECT x FROM t")).scalars()) == [1, 2]
    engine.dispose()
