"""Requests and the thread pools (app/api/threads.py).

A lookup that ends in a 404 leaves its session inside a read transaction, and closing it (a
rollback) must not queue behind requests that hold thread-pool tokens while they wait for a
database connection, or both wait on each other until the connection pool's timeout. Blocking
work (predictions, uploads) and requests' database work use separate pools."""

from __future__ import annotations

import asyncio

import anyio
import anyio.to_thread
import httpx
import pytest
from fastapi.testclient import TestClient

from app.api.threads import BLOCKING_THREADS, blocking_limiter, run_blocking
from app.main import create_app
from app.settings import Settings
from tests.api.conftest import ALICE, MakeSettings, RecordingDispatcher

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


def test_the_request_pool_takes_its_size_from_the_settings(
    make_settings: MakeSettings, dispatcher: RecordingDispatcher
) -> None:
    settings = make_settings(api_threads=3)

    async def tokens() -> float:
        return anyio.to_thread.current_default_thread_limiter().total_tokens

    with TestClient(create_app(settings, dispatcher=dispatcher)) as client:
        assert client.portal is not None
        assert client.portal.call(tokens) == 3


def test_blocking_work_and_requests_do_not_wait_for_each_others_threads() -> None:
    """With every request thread taken, a prediction (blocking pool) still runs; with every
    blocking thread taken, a request's database work still runs."""

    async def run() -> tuple[str, str]:
        requests = anyio.to_thread.current_default_thread_limiter()
        requests.total_tokens = 1
        with anyio.fail_after(10):
            await requests.acquire()
            try:
                blocking = await run_blocking(lambda: "blocking ran")
            finally:
                requests.release()
            held = [object() for _ in range(BLOCKING_THREADS)]
            limiter = blocking_limiter()
            for borrower in held:
                await limiter.acquire_on_behalf_of(borrower)
            try:
                with pytest.raises(anyio.WouldBlock):  # the blocking pool is full ...
                    limiter.acquire_nowait()
                request = await anyio.to_thread.run_sync(lambda: "request ran")  # ... not this
            finally:
                for borrower in held:
                    limiter.release_on_behalf_of(borrower)
        return blocking, request

    assert asyncio.run(run()) == ("blocking ran", "request ran")
