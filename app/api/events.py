"""``GET /jobs/{id}/events``: a job's state and progress as server-sent events.

The stream polls the database every ``POLL_SECONDS`` (workers in other processes write the
row) and opens a session only for each read, so a client watching a day-long run holds no
connection from the pool. Events:

- ``state`` (the first event, then each change of state) and ``progress`` (progress, latest
  metrics or best epoch changed, state unchanged); ``data`` is the job document (JobOut),
  ``id`` counts the events of this stream;
- ``: ping`` comments while nothing changes (FastAPI's keep-alive, every 15 s), so proxies
  keep the connection open.

The stream ends after the event that reports a terminal state (succeeded, failed, cancelled),
or when the job disappears.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Path
from fastapi.concurrency import run_in_threadpool
from fastapi.sse import EventSourceResponse, ServerSentEvent

from app.api.deps import CallerDep, Services, ServicesDep
from app.api.errors import not_found
from app.api.schemas import JobOut, problem_responses
from app.contracts import TERMINAL_STATES
from app.store import get_job

POLL_SECONDS = 0.5

router = APIRouter(tags=["jobs"])


def load_document(services: Services, job_id: str, owner: str | None) -> JobOut | None:
    """The job document from a short-lived session (closed before the stream waits again)."""
    with services.sessions() as session:
        job = get_job(session, job_id, owner)
        return None if job is None else JobOut.from_row(job)


def visible_job(job_id: Annotated[str, Path()], services: ServicesDep, caller: CallerDep) -> JobOut:
    """404 before the stream starts (a dependency: a generator's error would come too late)."""
    job = load_document(services, job_id, caller.scope)
    if job is None:
        raise not_found("job", job_id)
    return job


def _progress(job: JobOut) -> dict[str, Any]:
    return job.model_dump(include={"progress", "metrics", "best"})


@router.get(
    "/jobs/{job_id}/events",
    response_class=EventSourceResponse,
    responses=problem_responses(401, 404),
)
async def job_events(
    job: Annotated[JobOut, Depends(visible_job)], services: ServicesDep, caller: CallerDep
) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events of the job's state and progress until it ends."""
    current: JobOut | None = job
    state, progress, count = None, None, 0
    while current is not None:
        changed = None
        if current.state != state:
            changed = "state"
        elif _progress(current) != progress:
            changed = "progress"
        if changed is not None:
            count += 1
            yield ServerSentEvent(event=changed, data=current, id=str(count))
        state, progress = current.state, _progress(current)
        if current.state in TERMINAL_STATES:
            return
        await anyio.sleep(POLL_SECONDS)
        current = await run_in_threadpool(load_document, services, job.id, caller.scope)
