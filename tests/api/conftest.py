"""API fixtures: the real app on a real database (SQLite file, or the local PostgreSQL) with
three callers (alice, bob, and an admin), driven over HTTP with FastAPI's TestClient (httpx).

The dispatcher records the messages it would send (a unit-test double of the broker); the
Redis-backed dispatcher and a real worker are exercised in tests/worker and tests/api/test_server.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.contracts import JobKind
from app.dispatch import BrokerUnavailable
from app.main import create_app
from app.settings import ApiKey, Settings

ALICE_KEY = "alice-key-0123456789abcdef"
BOB_KEY = "bob-key-0123456789abcdef00"
ADMIN_KEY = "admin-key-0123456789abcdef"
ALICE = {"Authorization": f"Bearer {ALICE_KEY}"}
BOB = {"X-API-Key": BOB_KEY}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
KEYS = [
    ApiKey(owner="alice", key=ALICE_KEY),  # type: ignore[arg-type]
    ApiKey(owner="bob", key=BOB_KEY),  # type: ignore[arg-type]
    ApiKey(owner="ops", key=ADMIN_KEY, admin=True),  # type: ignore[arg-type]
]


@dataclass
class RecordingDispatcher:
    """Records sent jobs; ``down = True`` makes it refuse like an unreachable broker."""

    sent: list[tuple[str, JobKind]] = field(default_factory=list)
    down: bool = False

    def send_job(self, job_id: str, kind: JobKind) -> None:
        if self.down:
            raise BrokerUnavailable("the job queue is unavailable (ConnectionRefusedError)")
        self.sent.append((job_id, kind))

    def ping(self) -> tuple[bool, str]:
        return (False, "unreachable (test)") if self.down else (True, "reachable (test)")


MakeSettings = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path) -> MakeSettings:
    def factory(**values: object) -> Settings:
        base: dict[str, object] = {"data_dir": tmp_path / "data", "api_keys": KEYS}
        return Settings(**{**base, **values})  # type: ignore[arg-type]

    return factory


@pytest.fixture
def dispatcher() -> RecordingDispatcher:
    return RecordingDispatcher()


@pytest.fixture
def settings(make_settings: MakeSettings) -> Settings:
    return make_settings()


@pytest.fixture
def client(settings: Settings, dispatcher: RecordingDispatcher) -> Iterator[TestClient]:
    with TestClient(create_app(settings, dispatcher=dispatcher)) as test_client:
        yield test_client


def postgres_admin_url() -> str:
    return os.environ.get(
        "AAM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
