"""Requests and threads (app/api/threads.py).

A lookup that ends in a 404 leaves its session inside a read transaction, and closing it (a
rollback) must not queue behind requests that hold thread-pool tokens while they wait for a
database connection, or both wait on each other until the connection pool's timeout. Blocking
work (uploads, readiness) and requests' database work use separate pools; predictions run at
most their slots at once."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

from aam_core.data.synthetic import SyntheticSpec, generate
from aam_core.predict import Predictor
from app.api.deps import Services
from app.api.threads import BLOCKING_THREADS, blocking_limiter, prediction_slots, run_blocking
from app.main import create_app
from app.settings import Settings
from tests.api.conftest import ALICE, MakeSettings, RecordingDispatcher
from tests.api.models import register_tiny

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


def test_predictions_run_at_most_their_slots_at_once(
    make_settings: MakeSettings,
    dispatcher: RecordingDispatcher,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = create_app(make_settings(predict_concurrency=2), dispatcher=dispatcher)
    services: Services = app.state.services
    assert services.predictions.size == 2
    model = register_tiny(services, "regressor", "alice", tmp_path)
    table = generate(SyntheticSpec(n_samples=2, n_asvs=20, asvs_per_sample=10, seed=5)).table
    body = {"model_id": model.id, "samples": [{"id": "s1", "counts": table.row_counts(0)}]}
    running, most = 0, 0
    lock = threading.Lock()
    predict = Predictor.predict

    def slow_predict(self: Predictor, *args: Any, **kwargs: Any) -> Any:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.2)  # long enough for the other requests to arrive meanwhile
        try:
            return predict(self, *args, **kwargs)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(Predictor, "predict", slow_predict)

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            with anyio.fail_after(30):
                return await asyncio.gather(
                    *(client.post("/predict", json=body, headers=ALICE) for _ in range(6))
                )

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * 6
    assert most == 2
    assert len({r.json()["predictions"][0]["prediction"] for r in responses}) == 1


def test_prediction_slots_default_to_the_processs_cores() -> None:
    assert prediction_slots(0).size == len(os.sched_getaffinity(0))
    assert prediction_slots(3).size == 3
