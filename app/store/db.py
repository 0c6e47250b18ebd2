"""Engines, sessions and schema migration for SQLite (one host, WAL mode) and PostgreSQL.

Nothing connects at import time: the process edge builds an engine from settings and passes it
down. On SQLite SQLAlchemy, not the ``sqlite3`` driver, emits BEGIN (the driver's legacy mode
breaks SAVEPOINT and transactional DDL), and a transaction opened by :func:`begin_write` starts
with ``BEGIN IMMEDIATE``: it waits for the write lock up front (busy timeout) instead of failing
with "database is locked" when a transaction that has already read tries to write. In WAL mode
readers never wait for the writer. That is all ``make serve`` (an API process and a worker on
one file) needs; hosts where several processes write at once use PostgreSQL (docs/deploy.md).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.util import identity_key

from aam_core.io.files import is_disk_full

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30.0
POSTGRES_CONNECT_TIMEOUT_S = 10
# Any constant will do; it names "the schema migration" among this database's advisory locks.
MIGRATION_LOCK_KEY = 0x41414D_0001
# Connection execution option read by the SQLite "begin" hook.
WRITE_TRANSACTION = "aam_write_transaction"


def normalize_url(url: str | URL) -> URL:
    """Parse a database URL; plain ``postgresql://`` (or ``postgres://``) uses psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Hand transaction control to SQLAlchemy (see the module docstring).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    finally:
        cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    """BEGIN, or BEGIN IMMEDIATE for a write transaction (:func:`begin_write`)."""
    immediate = connection.get_execution_options().get(WRITE_TRANSACTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str | URL) -> Engine:
    """An engine for ``sqlite:///path`` or ``postgresql[+psycopg]://...``."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = _sqlite_file(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
        )
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.get_backend_name() == "postgresql":
        # A bounded connect: /ready and a starting worker report an unreachable server
        # instead of hanging (a URL's own ?connect_timeout= wins).
        connect_args = (
            {}
            if "connect_timeout" in parsed.query
            else {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}
        )
        return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    raise ValueError(
        f"unsupported database URL scheme {parsed.drivername!r}: expected sqlite:/// or "
        "postgresql://"
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: a route returns the rows it just committed without reloading.
    return sessionmaker(bind=engine, expire_on_commit=False)


def begin_write(session: Session) -> None:
    """Open the session's transaction as a write transaction, if none is open yet.

    Call it before a transaction that reads and then writes. On SQLite it emits
    ``BEGIN IMMEDIATE`` so the write lock is taken (waiting up to the busy timeout) before the
    first read; PostgreSQL needs nothing (row locks) and gets a plain BEGIN.
    """
    if not session.in_transaction():
        session.connection(execution_options={WRITE_TRANSACTION: True})


@contextmanager
def committed(session: Session) -> Iterator[None]:
    """A write transaction (see :func:`begin_write`) that commits when the block ends and
    rolls back when it raises."""
    begin_write(session)
    try:
        yield
    except BaseException:
        session.rollback()
        raise
    session.commit()


def refresh_cached(session: Session, mapped: type[Any], ident: Any) -> None:
    """After an UPDATE statement, reload the row's object if the session holds one, so the
    caller does not go on with the values from before (one SELECT, only in that case)."""
    cached = session.identity_map.get(identity_key(mapped, ident))
    if cached is not None:
        session.refresh(cached)


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


@functools.cache
def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the latest revision (alembic ``upgrade head``).

    Safe when several processes start together: on PostgreSQL the upgrade runs in one
    transaction holding an advisory lock; on SQLite in one ``BEGIN IMMEDIATE`` transaction
    (the database file's write lock). The second process waits, then finds the schema at head.
    """
    config = _alembic_config()
    with engine.connect() as connection:
        connection = connection.execution_options(**{WRITE_TRANSACTION: True})
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            config.attributes["connection"] = connection
            command.upgrade(config, "head")


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


SQLITE_FULL = 13  # sqlite3's result code for "database or disk is full"
POSTGRES_DISK_FULL = "53100"  # SQLSTATE disk_full


def storage_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a write refused for lack of space: by the filesystem, by SQLite
    (whose file shares it) or by PostgreSQL."""
    if is_disk_full(exc):
        return True
    if isinstance(exc, OperationalError) and exc.orig is not None:
        orig = exc.orig
        return (
            getattr(orig, "sqlite_errorcode", None) == SQLITE_FULL
            or getattr(orig, "sqlstate", None) == POSTGRES_DISK_FULL
            or is_disk_full(orig)
        )
    return False


def ping(engine: Engine) -> tuple[bool, str]:
    """For /ready: can we reach the database, and is its schema at the latest revision?"""
    try:
        revision = current_revision(engine)
    except Exception as exc:  # any driver error means "not ready"; say which
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return False, f"{engine.dialect.name}: {type(exc).__name__}: {first_line}"[:300]
    head = head_revision()
    if revision != head:
        return False, (
            f"{engine.dialect.name}: schema at revision {revision or 'none'}, expected {head} "
            "(run the migration: the service and workers migrate on start)"
        )
    return True, f"{engine.dialect.name}: schema at revision {revision}"
