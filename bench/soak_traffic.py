"""The request mix of bench/soak.py: what each kind of request sends, what it must answer, and
the tally of latencies, expected 4xx and errors (see soak.py's docstring for the mix)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from _server import SMALL_JOB, summary

BATCH = 50  # samples of a batch prediction
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
# How often each kind is chosen: mostly what a lab's frontend does all day (predictions, job
# reads), some writes, and a steady trickle of mistakes.
WEIGHTS: dict[str, float] = {
    "predict_1": 30, "predict_50": 5, "read_job": 15, "list_jobs": 6, "submit_job": 6,
    "events": 5, "upload_dataset": 3, "delete_dataset": 2, "bad_predict_body": 2, "bad_json": 1,
    "bad_dataset_id": 1, "bad_job_config": 1, "bad_job_events": 1,
}  # fmt: skip
MAX_ERROR_EXAMPLES = 20
# Uploads: a file's form field, file name and content.
Upload = list[tuple[str, str, bytes]]


@dataclass
class Tally:
    latencies: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    counts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    expected_4xx: int = 0
    dropped_streams: int = 0  # event streams hung up on before they ended
    error_examples: list[str] = field(default_factory=list)

    def error(self, kind: str, what: str) -> None:
        self.errors[kind] += 1
        if len(self.error_examples) < MAX_ERROR_EXAMPLES:
            self.error_examples.append(f"{kind}: {what}")

    def report(self) -> dict[str, dict[str, Any]]:
        out = {}
        for kind in sorted(self.counts):
            values = self.latencies[kind]
            timing = summary(values) if values else {"p50_ms": None, "p99_ms": None}
            out[kind] = {"count": self.counts[kind], **timing, "errors": self.errors[kind]}
        return out


def is_problem(response: aiohttp.ClientResponse, body: bytes, status: int) -> bool:
    """Whether an error answer is RFC 9457 problem details with its own status (docs/api.md,
    Errors)."""
    if response.content_type != "application/problem+json":
        return False
    try:
        document = json.loads(body)
    except ValueError:
        return False
    return isinstance(document, dict) and document.get("status") == status and "detail" in document


class Traffic:
    """The soak's clients on one aiohttp session, and what they know of the service: the jobs
    they submitted (last state seen) and the datasets they uploaded and have not deleted."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        model_id: str,
        dataset_id: str,
        samples: list[dict[str, Any]],
        uploads: list[Upload],
        max_active_jobs: int,
        weights: dict[str, float] = WEIGHTS,
    ) -> None:
        self.http, self.model_id, self.dataset_id = http, model_id, dataset_id
        self.samples, self.uploads, self.max_active_jobs = samples, uploads, max_active_jobs
        self.weights = {kind: weight for kind, weight in weights.items() if weight > 0}
        self.tally = Tally()
        self.jobs: dict[str, str] = {}
        self.uploaded: list[str] = []
        self.submitting = 0  # submissions sent and not yet answered
        self.operations: dict[str, Callable[[random.Random], Awaitable[None]]] = {
            "predict_1": lambda rng: self.predict(rng, 1),
            "predict_50": lambda rng: self.predict(rng, BATCH),
            "read_job": self.read_job,
            "list_jobs": self.list_jobs,
            "submit_job": self.submit_job,
            "events": self.events,
            "upload_dataset": self.upload,
            "delete_dataset": self.delete,
        }
        # method, path, the status it must answer, request arguments
        bad: dict[str, tuple[str, str, int, dict[str, Any]]] = {
            "bad_predict_body": ("POST", "/predict", 422, {"json": {
                "model_id": model_id, "samples": [{"id": "s1", "counts": "not a mapping"}]}}),
            "bad_json": ("POST", "/predict", 422, {
                "data": b'{"model_id": ', "headers": {"Content-Type": "application/json"}}),
            "bad_dataset_id": ("GET", "/datasets/ds_0000000000000000", 404, {}),
            "bad_job_config": ("POST", "/jobs", 422, {"json": {"kind": "pretrain",
                "dataset_id": dataset_id, "config": {**SMALL_JOB, "epochs": 0}}}),
            "bad_job_events": ("GET", "/jobs/job_0000000000000000/events", 404, {}),
        }  # fmt: skip
        for kind, (method, path, status, extra) in bad.items():
            self.operations[kind] = self._bad(kind, method, path, status, extra)

    @property
    def active_jobs(self) -> list[str]:
        return [job for job, state in self.jobs.items() if state not in TERMINAL]

    async def client(self, rng: random.Random, deadline: float) -> None:
        """One client: the next request as soon as the last one has answered."""
        kinds, weights = list(self.weights), list(self.weights.values())
        while time.monotonic() < deadline:
            await self.operations[rng.choices(kinds, weights)[0]](rng)

    async def request(self, kind: str, method: str, path: str, expect: int, **extra: Any) -> Any:
        """One request of ``kind``: its JSON answer when that is the expected success, else None
        (recorded as an expected 4xx, or as an error)."""
        self.tally.counts[kind] += 1
        start = time.perf_counter()
        try:
            async with self.http.request(method, path, **extra) as response:
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.tally.error(kind, f"{method} {path}: {type(exc).__name__}: {exc}")
            return None
        self.tally.latencies[kind].append((time.perf_counter() - start) * 1000)
        if response.status != expect:
            self.tally.error(kind, f"{method} {path}: {response.status} (expected {expect}) "
                                   f"{body[:300].decode(errors='replace')}")  # fmt: skip
            return None
        if expect >= 400:
            if is_problem(response, body, expect):
                self.tally.expected_4xx += 1
            else:
                self.tally.error(kind, f"{method} {path}: {expect} without problem details "
                                       f"({response.content_type})")  # fmt: skip
            return None
        return json.loads(body) if body else {}

    def _bad(
        self, kind: str, method: str, path: str, status: int, extra: dict[str, Any]
    ) -> Callable[[random.Random], Awaitable[None]]:
        async def send(_: random.Random) -> None:
            await self.request(kind, method, path, status, **extra)

        return send

    async def predict(self, rng: random.Random, n: int) -> None:
        kind = f"predict_{n}"
        body = {"model_id": self.model_id, "samples": rng.sample(self.samples, n)}
        answer = await self.request(kind, "POST", "/predict", 200, json=body)
        if answer is not None and len(answer["predictions"]) != n:
            self.tally.error(kind, f"{len(answer['predictions'])} predictions for {n} samples")

    async def upload(self, rng: random.Random) -> None:
        k = rng.randrange(len(self.uploads))
        form = aiohttp.FormData()
        for role, name, content in self.uploads[k]:
            form.add_field(role, content, filename=name)
        form.add_field("name", f"soak upload {k}")
        answer = await self.request("upload_dataset", "POST", "/datasets", 201, data=form)
        if answer is not None:
            self.uploaded.append(answer["id"])

    async def delete(self, rng: random.Random) -> None:
        """Delete one of the uploads (never the jobs' dataset: a job in use would answer 409)."""
        if not self.uploaded:
            await self.upload(rng)
            return
        dataset_id = self.uploaded.pop(rng.randrange(len(self.uploaded)))
        await self.request("delete_dataset", "DELETE", f"/datasets/{dataset_id}", 204)

    async def submit_job(self, rng: random.Random) -> None:
        """A tiny pretrain or train job, unless ``max_active_jobs`` are unfinished: the worker
        must keep up, or the queue and the soak's bookkeeping grow without bound."""
        if len(self.active_jobs) + self.submitting >= self.max_active_jobs:
            await self.read_job(rng)
            return
        body: dict[str, Any] = {"kind": "pretrain", "dataset_id": self.dataset_id,
                                "config": SMALL_JOB}  # fmt: skip
        if rng.random() < 0.5:
            target = {"column": "age", "task": "regression"}
            body.update(kind="train", target=target, config={**SMALL_JOB, "baseline": False})
        self.submitting += 1
        try:
            answer = await self.request("submit_job", "POST", "/jobs", 202, json=body)
        finally:
            self.submitting -= 1
        if answer is not None:
            self.jobs[answer["id"]] = answer["state"]

    def pick_job(self, rng: random.Random) -> str | None:
        """Mostly an unfinished job (its state is the news), sometimes any."""
        active = self.active_jobs
        if active and rng.random() < 0.75:
            return rng.choice(active)
        return rng.choice(list(self.jobs)) if self.jobs else None

    async def read_job(self, rng: random.Random) -> None:
        job_id = self.pick_job(rng)
        if job_id is None:  # none known yet (the first submissions unanswered)
            await self.list_jobs(rng)
            return
        answer = await self.request("read_job", "GET", f"/jobs/{job_id}", 200)
        if answer is not None:
            self.jobs[job_id] = answer["state"]

    async def list_jobs(self, rng: random.Random) -> None:
        params: dict[str, str] = rng.choice([{}, {"state": "succeeded"}, {"kind": "train"}])
        params = {**params, "limit": "20"}
        answer = await self.request("list_jobs", "GET", "/jobs", 200, params=params)
        for item in answer["items"] if answer is not None else []:
            if item["id"] in self.jobs:
                self.jobs[item["id"]] = item["state"]

    async def events(self, rng: random.Random) -> None:
        """Open a job's event stream, read its first event (the latency) and up to a second
        more, then drop the connection mid-stream, as a closed browser tab does."""
        job_id = self.pick_job(rng)
        if job_id is None:  # none known yet (the first submissions unanswered)
            await self.list_jobs(rng)
            return
        kind, path = "events", f"/jobs/{job_id}/events"
        self.tally.counts[kind] += 1
        start = time.perf_counter()
        try:
            async with self.http.get(path) as response:
                if response.status != 200 or response.content_type != "text/event-stream":
                    body = (await response.read())[:300].decode(errors="replace")
                    self.tally.error(kind, f"GET {path}: {response.status} "
                                           f"{response.content_type} {body}")  # fmt: skip
                    return
                first = await _next_event(response)
                self.tally.latencies[kind].append((time.perf_counter() - start) * 1000)
                if first != "state":
                    self.tally.error(kind, f"GET {path}: first event {first!r}, not state")
                    return
                try:
                    await asyncio.wait_for(_read_to_end(response), rng.uniform(0.2, 1.0))
                except TimeoutError:  # still streaming: hang up on it
                    self.tally.dropped_streams += 1
                response.close()  # drops the connection, not back to the pool
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.tally.error(kind, f"GET {path}: {type(exc).__name__}: {exc}")


async def _next_event(response: aiohttp.ClientResponse) -> str | None:
    """The name of the stream's next event (``: ping`` comments skipped), None at its end."""
    name = None
    while line := await response.content.readline():
        text = line.decode().rstrip("\r\n")
        if text.startswith("event:"):
            name = text.removeprefix("event:").strip()
        elif not text and name is not None:
            return name
    return None


async def _read_to_end(response: aiohttp.ClientResponse) -> None:
    while await _next_event(response) is not None:
        pass
