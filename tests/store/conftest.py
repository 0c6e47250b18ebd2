"""Database fixtures: every test of the store runs on SQLite and on PostgreSQL.

PostgreSQL: the server at 127.0.0.1:5432 (``AAM_TEST_POSTGRES_URL`` names another admin URL).
This test session creates its own databases (``aam_test_<random>``) through an AUTOCOMMIT
connection to the ``test`` database and drops them at the end; it touches no other database.
An unreachable server skips the PostgreSQL cases, except under CI=true, where it fails.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from app.store.db import make_engine, make_session_factory, migrate
from app.store.tables import Base
from tests.services import create_database, drop_database, postgres_admin

TABLES = ", ".join(table.name for table in Base.metadata.sorted_tables)


class PostgresDatabases:
    """Creates scratch databases on the test server and drops them all at the end."""

    def __init__(self, admin: Engine) -> None:
        self.admin = admin
        self.created: list[str] = []

    def create(self) -> URL:
        name = create_database(self.admin)
        self.created.append(name)
        return self.admin.url.set(database=name)

    def drop_all(self) -> None:
        for name in self.created:
            drop_database(self.admin, name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases]:
    admin = postgres_admin()
    databases = PostgresDatabases(admin)
    try:
        yield databases
    finally:
        databases.drop_all()
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_engine(postgres: PostgresDatabases) -> Iterator[Engine]:
    """One migrated database for the session; tables are emptied before each test."""
    engine = make_engine(postgres.create())
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test gets a copy (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "aam.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()  # the last connection closing checkpoints the WAL into the file
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        path = tmp_path / "db" / "aam.db"
        path.parent.mkdir()
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        engine = make_engine(f"sqlite:///{path}")
        yield engine
        engine.dispose()
    else:
        engine = request.getfixturevalue("postgres_engine")
        with engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
        yield engine


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as session:
        yield session
