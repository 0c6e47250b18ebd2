"""Engines, sessions and schema migration for SQLite (one host, WAL mode) and PostgreSQL.

Nothing connects at import time: the process edge builds an engine from settings and passes it
down. On SQLite SQLAlchemy, not the ``sqlite3`` driver, emits BEGIN (the driver's legacy mode
breaks SAVEPOINT and transactional DDL), and a transaction opened by :func:`begin_write` starts
with ``BEGIN IMMEDIATE``: it waits for the write lock up front (busy timeout) instead of failing
with "database is locked" when a transaction that has already read tries to write.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from filelock import FileLock
from filelock import Timeout as FileLockTimeout
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.util import identity_key

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
    # Hand transaction control to SQLAlchemy (see the module docstring and _sqlite_writer_hooks).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    finally:
        cursor.close()


WRITER = "aam_writer_lock"  # Connection.info key: the in-process writer lock this one holds
FILE_WRITER = "aam_writer_file_lock"  # Connection.info key: the cross-process one
WRITER_LOCK_POLL_S = 0.002  # how often a waiting process retries the cross-process lock


class _SqliteWriters:
    """The locks that queue one SQLite file's writers: a thread lock for this process and, for
    a file database, a lock file (``<database>.writer-lock``, flock via ``filelock``) for all
    the processes on the file (API workers, job workers, migrations).

    A process builds its own pair on first use: a child forked from a process whose engine
    already existed must not share the parent's thread lock (it may be held by a thread that
    does not exist in the child) nor its lock-file descriptor (flock locks belong to the open
    file, which a fork shares).
    """

    def __init__(self, database: Path | None) -> None:
        self.lock_file = (
            None if database is None else database.with_name(database.name + ".writer-lock")
        )
        self._pid: int | None = None  # the process the locks below belong to (set by locks())
        self._thread: threading.Lock
        self._file: FileLock | None

    def locks(self) -> tuple[threading.Lock, FileLock | None]:
        pid = os.getpid()
        if self._pid != pid:
            self._pid = pid
            self._thread = threading.Lock()
            self._file = (
                None
                if self.lock_file is None
                # thread_local=False: only the holder of the thread lock ever touches it
                else FileLock(self.lock_file, thread_local=False, preserve_lock_file=True)
            )
        return self._thread, self._file


def _sqlite_writer_hooks(engine: Engine, database: Path | None) -> None:
    """BEGIN (IMMEDIATE for a write transaction), with writers queued on locks of our own.

    SQLite lets one writer in at a time; the others wait in its busy handler, which sleeps in
    growing steps (up to 100 ms each), so under many concurrent writers a few wait far longer
    than the queue ahead of them. Threads of one process queue on a thread lock and start the
    moment the previous writer of the process ends; then the one waiting thread of each
    process polls the lock file every few milliseconds. A writer that cannot get a lock within
    the busy timeout goes ahead without it, and SQLite decides as before.
    """
    writers = _SqliteWriters(database)

    def begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(WRITE_TRANSACTION, False)
        if immediate:
            deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
            thread_lock, file_lock = writers.locks()
            if thread_lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_S):
                connection.info[WRITER] = thread_lock
                if file_lock is not None:
                    try:
                        file_lock.acquire(
                            timeout=max(0.0, deadline - time.monotonic()),
                            poll_interval=WRITER_LOCK_POLL_S,
                        )
                        connection.info[FILE_WRITER] = file_lock
                    except FileLockTimeout:
                        pass
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
        except BaseException:
            release(connection.info)
            raise

    def release(info: dict[Any, Any]) -> None:
        file_lock = info.pop(FILE_WRITER, None)
        if file_lock is not None:
            file_lock.release()
        held = info.pop(WRITER, None)
        if held is not None:
            held.release()

    # The locks are let go once COMMIT or ROLLBACK has run, not before: SQLAlchemy's "commit"
    # and "rollback" events fire before the statement, and a writer let in then meets the
    # database still locked (and the busy handler's sleeps), for as long as the commit takes:
    # longer when it checkpoints the WAL. The dialect's do_commit and do_rollback are where
    # the statements run; these wrap them for this engine alone. ``dbapi_connection`` is the
    # pool's proxy, whose ``info`` is the ``Connection.info`` the locks were put in.
    dialect = engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def released_after(statement: Callable[[Any], None], dbapi_connection: Any) -> None:
        try:
            statement(dbapi_connection)
        finally:
            try:
                info = dbapi_connection.info
            except (AttributeError, NotImplementedError):  # the pool's own ad hoc rollbacks
                info = {}
            release(info)

    def do_commit(dbapi_connection: Any) -> None:
        released_after(commit, dbapi_connection)

    def do_rollback(dbapi_connection: Any) -> None:
        released_after(rollback, dbapi_connection)

    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign]
    event.listen(engine, "begin", begin)


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
        _sqlite_writer_hooks(engine, path)
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
