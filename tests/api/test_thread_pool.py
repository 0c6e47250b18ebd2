"""Requests and the thread pool: a lookup that ends in a 404 leaves its session inside a read
transaction, and closing it (a rollback) must not queue behind requests that hold thread-pool
tokens while they wait for a database connection, or both wait on each other until the
connection pool's timeout."""

from __future__ import annotations

import asyncio

import anyio
import anyio.to_thread
import httpx

from app.main import create_app
from app.settings import Settings
from tests.api.conftest import ALICE, RecordingDispatcher

CONCURRENT = 40  # more than SQLAlchemy's default pool (5 + 10 overflow) and one thread


def test_many_404_lookups_on_a_one_thread_pool_all_answer(
    settings: Settings, dispatcher: RecordingDispatcher
) -> None:
    app = create_app(settings, dispatcher=dispatcher)

    async def run() -> list[httpx.Response]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = 1
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            with anyio.fail_after(20):  # a deadlock lasts the pool's 30 s timeout
                return await asyncio.gather(
                    *(client.get(f"/jobs/job_{i:016x}", headers=ALICE) for i in range(CONCURRENT))
                )

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [404] * CONCURRENT
    assert responses[7].json()["detail"] == "job 'job_0000000000000007' does not exist"
