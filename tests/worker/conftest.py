"""Worker fixtures: a generated study, a store (database + artifact storage) the test shares
with real worker processes, and helpers to start, stop and kill those processes.

Redis: the server at 127.0.0.1:6379, database 13 (never flushed: a message left there by an
earlier run names a job no database holds, and a worker drops it). PostgreSQL: a scratch
database on 127.0.0.1:5432, dropped at the end. An unreachable service skips the tests that
need it, except under CI=true, where they fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from aam_core.data.synthetic import SyntheticSpec, generate, write_study
from tests.services import scratch_postgres, unavailable
from tests.worker.helpers import Store

REDIS_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture(scope="session")
def study_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """48 samples, 60 ASVs: a tiny-preset epoch takes a fraction of a second."""
    study = generate(SyntheticSpec(n_samples=48, n_asvs=60, asvs_per_sample=12, seed=3))
    return write_study(study, tmp_path_factory.mktemp("worker_study"))


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at {REDIS_URL} is unreachable: {exc}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with scratch_postgres() as url:
        yield url


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """SQLite and the embedded broker in a fresh data directory."""
    with Store.open(tmp_path / "data") as opened:
        yield opened
