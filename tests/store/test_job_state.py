"""Job state transitions: claim, heartbeat, progress, cancel, finish, requeue."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.contracts import JobState
from app.store.job_state import (
    JobSignal,
    claim_job,
    finish_job,
    heartbeat,
    request_cancel,
    requeue_stale,
    update_progress,
)
from app.store.jobs import get_job
from app.store.models import create_model, get_model
from app.store.tables import Job
from tests.store.factories import SHA_A, at, make_job

TIMEOUT = timedelta(seconds=120)


def _fresh(session_factory: sessionmaker[Session], job_id: str) -> Job:
    with session_factory() as session:
        job = get_job(session, job_id, None)
        assert job is not None
        return job


def test_claim_runs_a_queued_job_once(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        job = make_job(session)
        assert claim_job(session, job.id, worker="w1", device="cuda:0", now=at(10)) is True
        # The caller's object is brought up to date, not left stale.
        assert (job.state, job.worker, job.attempts) == (JobState.running, "w1", 1)
        assert claim_job(session, job.id, worker="w2", device="cpu", now=at(11)) is False
        assert claim_job(session, "job_missing", worker="w2", device="cpu") is False
    stored = _fresh(session_factory, job.id)
    assert (stored.state, stored.worker, stored.device, stored.attempts) == (
        JobState.running,
        "w1",
        "cuda:0",
        1,
    )
    assert stored.started_at == stored.heartbeat_at == stored.updated_at == at(10)


def test_eight_concurrent_claims_have_exactly_one_winner(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session:
        job_id = make_job(session).id
    barrier = threading.Barrier(8)
    wins: dict[str, bool] = {}
    errors: list[BaseException] = []

    def claim(worker: str) -> None:
        try:
            with session_factory() as session:
                barrier.wait()
                wins[worker] = claim_job(session, job_id, worker=worker, device="cpu")
        except BaseException as exc:  # asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    winners = [worker for worker, won in wins.items() if won]
    assert len(wins) == 8 and len(winners) == 1
    stored = _fresh(session_factory, job_id)
    assert (stored.worker, stored.attempts) == (winners[0], 1)


def test_heartbeat_from_the_holder_and_from_others(session: Session) -> None:
    job = make_job(session)
    assert claim_job(session, job.id, worker="w1", device="cpu", now=at(0))
    signal = heartbeat(session, job.id, worker="w1", now=at(30))
    assert signal == JobSignal(state=JobState.running, cancel_requested=False, held=True)
    assert signal.should_stop is False
    assert job.heartbeat_at == at(30)
    stranger = heartbeat(session, job.id, worker="w2", now=at(40))
    assert stranger == JobSignal(state=JobState.running, cancel_requested=False, held=False)
    assert stranger.should_stop is True
    assert job.heartbeat_at == at(30)  # a non-holder does not keep the job alive
    missing = heartbeat(session, "job_missing", worker="w1")
    assert missing == JobSignal(state=None, cancel_requested=False, held=False)


def test_heartbeat_carries_a_cancel_request(session: Session) -> None:
    job = make_job(session)
    assert claim_job(session, job.id, worker="w1", device="cpu")
    assert request_cancel(session, job.id) == JobState.cancelling
    signal = heartbeat(session, job.id, worker="w1", now=at(5))
    assert signal == JobSignal(state=JobState.cancelling, cancel_requested=True, held=True)
    assert signal.should_stop is True


def test_a_reassigned_job_tells_the_old_worker_to_stop(session: Session) -> None:
    job = make_job(session)
    assert claim_job(session, job.id, worker="old", device="cpu", now=at(0))
    assert requeue_stale(session, older_than=TIMEOUT, now=at(200)) == [(job.id, "requeued")]
    assert claim_job(session, job.id, worker="new", device="cpu", now=at(201))
    signal = heartbeat(session, job.id, worker="old", now=at(202))
    assert signal == JobSignal(state=JobState.running, cancel_requested=False, held=False)
    assert signal.should_stop is True
    assert heartbeat(session, job.id, worker="new", now=at(203)).held is True


def test_update_progress_only_while_running(session: Session) -> None:
    job = make_job(session)
    progress = {"epoch": 1, "epochs": 4, "step": 10, "steps": 40, "fraction": 0.25}
    assert update_progress(session, job.id, progress=progress) is False  # still queued
    assert claim_job(session, job.id, worker="w1", device="cpu")
    metrics = {"train": {"loss": 0.5}, "validation": {"loss": 0.625}, "baseline": {}}
    best = {"epoch": 1, "metric": "validation.loss", "value": 0.625}
    assert update_progress(
        session, job.id, progress=progress, metrics=metrics, best=best, now=at(50)
    )
    assert update_progress(session, job.id, progress={"epoch": 2}, worker="someone-else") is False
    assert (job.progress, job.metrics, job.best, job.updated_at) == (
        progress,
        metrics,
        best,
        at(50),
    )
    assert update_progress(session, job.id, progress={"epoch": 2}, worker="w1")
    assert job.metrics == metrics  # left alone when not given
    assert job.progress == {"epoch": 2}


def test_cancel_a_queued_job_at_once(session: Session) -> None:
    job = make_job(session)
    assert request_cancel(session, job.id, now=at(7)) == JobState.cancelled
    assert (job.state, job.cancel_requested, job.finished_at) == (JobState.cancelled, True, at(7))
    # Its message, delivered later, claims nothing.
    assert claim_job(session, job.id, worker="w1", device="cpu") is False


def test_cancel_a_running_job_then_finish_as_cancelled(session: Session) -> None:
    job = make_job(session)
    assert claim_job(session, job.id, worker="w1", device="cpu")
    assert request_cancel(session, job.id, now=at(8)) == JobState.cancelling
    assert (job.state, job.cancel_requested, job.finished_at) == (JobState.cancelling, True, None)
    assert request_cancel(session, job.id) == JobState.cancelling  # repeated: unchanged
    assert finish_job(session, job.id, state=JobState.cancelled, worker="w1", now=at(9))
    assert (job.state, job.finished_at) == (JobState.cancelled, at(9))


@pytest.mark.parametrize("final", [JobState.succeeded, JobState.failed, JobState.cancelled])
def test_cancel_a_finished_job_changes_nothing(session: Session, final: JobState) -> None:
    job = make_job(session)
    assert claim_job(session, job.id, worker="w1", device="cpu")
    assert finish_job(session, job.id, state=final, worker="w1", now=at(9))
    assert request_cancel(session, job.id, now=at(10)) == final
    assert (job.state, job.cancel_requested, job.finished_at) == (final, False, at(9))
    assert request_cancel(session, "job_missing") is None


def test_finish_only_from_running_and_only_by_the_holder(session: Session) -> None:
    job = make_job(session)
    assert finish_job(session, job.id, state=JobState.succeeded) is False  # queued
    assert claim_job(session, job.id, worker="w1", device="cpu")
    assert finish_job(session, job.id, state=JobState.succeeded, worker="w2") is False
    error = {"type": "InputError", "detail": "column 'age' has 3 missing values"}
    assert finish_job(
        session,
        job.id,
        state=JobState.failed,
        worker="w1",
        error=error,
        report={"dropped_samples": 2},
        now=at(60),
    )
    assert (job.state, job.error, job.report, job.finished_at) == (
        JobState.failed,
        error,
        {"dropped_samples": 2},
        at(60),
    )
    assert finish_job(session, job.id, state=JobState.succeeded, worker="w1") is False
    assert job.state == JobState.failed
    with pytest.raises(ValueError, match="finish_job needs a terminal state, got 'running'"):
        finish_job(session, job.id, state=JobState.running)


def test_finish_registers_a_model_atomically(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        job = make_job(session)
        job_id = job.id
        lost = make_job(session)
        assert claim_job(session, job.id, worker="w1", device="cpu")
        assert claim_job(session, lost.id, worker="w2", device="cpu")

        def register(job_id: str) -> str:
            model = create_model(
                session,
                owner="alice",
                name="enc",
                kind="encoder",
                config={},
                metrics={},
                n_parameters=10,
                checkpoint_sha256=SHA_A,
                source="job",
                job_id=job_id,
            )
            return model.id

        kept = register(job.id)
        assert finish_job(
            session,
            job.id,
            state=JobState.succeeded,
            worker="w1",
            model_id=kept,
            outputs={"checkpoint": SHA_A},
        )
        # w1 does not hold ``lost``: the model registered with it is rolled back.
        dropped = register(lost.id)
        finished = finish_job(
            session, lost.id, state=JobState.succeeded, worker="w1", model_id=dropped
        )
        assert finished is False
    # A rollback expires what the session held; the ids were read before it.
    with session_factory() as session:
        stored = get_job(session, job_id, None)
        assert stored is not None
        assert (stored.state, stored.model_id, stored.outputs) == (
            JobState.succeeded,
            kept,
            {"checkpoint": SHA_A},
        )
        assert get_model(session, kept, None) is not None
        assert get_model(session, dropped, None) is None


def test_requeue_stale_below_the_attempt_limit(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        stale = make_job(session, max_attempts=2)
        alive = make_job(session)
        queued = make_job(session)
        for job in (stale, alive):
            assert claim_job(session, job.id, worker="w1", device="cuda:0", now=at(0))
        assert requeue_stale(session, older_than=TIMEOUT, now=at(120)) == []  # not older yet
        assert heartbeat(session, alive.id, worker="w1", now=at(100)).held
        assert requeue_stale(session, older_than=TIMEOUT, now=at(200)) == [(stale.id, "requeued")]
        assert requeue_stale(session, older_than=TIMEOUT, now=at(200)) == []  # done once
    s, a, q = (_fresh(session_factory, j.id) for j in (stale, alive, queued))
    assert (s.state, s.attempts, s.worker, s.heartbeat_at) == (JobState.queued, 1, None, None)
    assert (s.started_at, s.finished_at, s.error) == (at(0), None, None)
    assert (a.state, a.worker, a.heartbeat_at) == (JobState.running, "w1", at(100))
    assert (q.state, q.attempts) == (JobState.queued, 0)
    # Claimed again, the attempt counter goes on from 1; started_at keeps the first start.
    with session_factory() as session:
        assert claim_job(session, stale.id, worker="w2", device="cpu", now=at(300))
    again = _fresh(session_factory, stale.id)
    assert (again.state, again.attempts, again.worker, again.started_at) == (
        JobState.running,
        2,
        "w2",
        at(0),
    )


def test_requeue_stale_at_the_attempt_limit_fails_the_job(session: Session) -> None:
    job = make_job(session, max_attempts=2)
    assert claim_job(session, job.id, worker="w1", device="cuda:0", now=at(0))
    assert requeue_stale(session, older_than=TIMEOUT, now=at(200)) == [(job.id, "requeued")]
    assert claim_job(session, job.id, worker="w2", device="cuda:0", now=at(300))
    assert requeue_stale(session, older_than=TIMEOUT, now=at(500)) == [(job.id, "failed")]
    assert (job.state, job.attempts, job.finished_at) == (JobState.failed, 2, at(500))
    assert job.error == {
        "type": "WorkerLost",
        "detail": (
            "the worker running this job stopped responding 2 times; it is not retried again "
            "(max_attempts=2). Last worker: w2, last heartbeat: 2026-01-02T03:09:05.123456+00:00."
            " A worker that dies repeatedly on one job is often out of memory: try a smaller "
            "batch_size or token_limit."
        ),
    }
    assert heartbeat(session, job.id, worker="w2").should_stop is True


def test_requeue_stale_finishes_a_cancelling_job_as_cancelled(session: Session) -> None:
    job = make_job(session)
    assert claim_job(session, job.id, worker="w1", device="cpu", now=at(0))
    assert request_cancel(session, job.id, now=at(1)) == JobState.cancelling
    assert requeue_stale(session, older_than=TIMEOUT, now=at(200)) == [(job.id, "cancelled")]
    assert (job.state, job.finished_at, job.attempts) == (JobState.cancelled, at(200), 1)


def test_release_hands_a_job_back_without_counting_the_attempt(session: Session) -> None:
    from app.store.job_state import release_job

    job = make_job(session)
    session.commit()
    assert claim_job(session, job.id, worker="w1", device="cpu")
    assert release_job(session, job.id, worker="other") is False  # only the holder releases
    assert release_job(session, job.id, worker="w1") is True
    session.refresh(job)
    assert (job.state, job.attempts, job.worker, job.heartbeat_at) == ("queued", 0, None, None)
    assert release_job(session, job.id, worker="w1") is False  # no longer running
    assert claim_job(session, job.id, worker="w2", device="cpu")
    session.refresh(job)
    assert (job.state, job.attempts, job.worker) == ("running", 1, "w2")
    # a job with a cancel request is not handed back: it ends cancelled
    request_cancel(session, job.id)
    assert release_job(session, job.id, worker="w2") is False
