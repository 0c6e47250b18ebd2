"""Sends job tasks to the broker by name. The API never imports the worker package: a task
is a name (app.contracts) and a job id; the job row holds everything else."""

from __future__ import annotations

import logging
from typing import Protocol

from celery import Celery

from app.contracts import QUEUE_GPU, TASK_RUN_JOB, JobKind

log = logging.getLogger("aam.dispatch")


class BrokerUnavailable(RuntimeError):
    """The broker did not accept the message (down, unreachable, misconfigured)."""


class Dispatcher(Protocol):
    def send_job(self, job_id: str, kind: JobKind) -> None: ...

    def ping(self) -> tuple[bool, str]: ...


def make_celery_client(broker_url: str) -> Celery:
    """A Celery app used only to publish (no result backend: the job row is the record)."""
    client = Celery("aam-api", broker=broker_url)
    client.conf.update(
        broker_connection_retry_on_startup=False,
        broker_connection_timeout=3,
        broker_transport_options={
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.5,
            # Redis socket options only: kombu's SQLAlchemy transport (the embedded broker)
            # hands every other option to create_engine(), which refuses these.
            **(
                {"socket_connect_timeout": 3, "socket_timeout": 5}
                if broker_url.startswith(("redis://", "rediss://"))
                else {}
            ),
        },
        task_ignore_result=True,
    )
    return client


class CeleryDispatcher:
    """Sends a job's task to its kind's queue. One quick retry, then
    :class:`BrokerUnavailable`: the caller answers 503 rather than waiting on a broker."""

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url
        self.client = make_celery_client(broker_url)

    def send_job(self, job_id: str, kind: JobKind) -> None:
        try:
            self.client.send_task(
                TASK_RUN_JOB,
                args=[job_id],
                queue=QUEUE_GPU,
                retry=True,
                retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2},
            )
        except Exception as exc:  # kombu/redis/sqlalchemy raise many types for "no broker"
            log.warning("broker refused job %s: %s", job_id, exc)
            raise BrokerUnavailable(f"the job queue is unavailable ({type(exc).__name__})") from exc

    def ping(self) -> tuple[bool, str]:
        try:
            with self.client.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=3)
            return True, "reachable"
        except Exception as exc:
            return False, f"unreachable ({type(exc).__name__})"
