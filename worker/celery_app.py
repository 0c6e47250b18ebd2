"""The worker's Celery application, built from settings (nothing is configured at import).

No result backend: the job row is the record. One task at a time per worker
(``worker_prefetch_multiplier=1`` with a single thread), acknowledged when it ends
(``task_acks_late``), so a message held by a worker that dies is not lost with it on Redis;
the task runs in a thread so that the worker's main thread keeps serving the broker connection
and remote control (``celery inspect ping``) while a long training runs.
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from app.contracts import QUEUE_GPU, TASK_RUN_JOB
from app.settings import Settings
from worker.broker import broker_config

KNOWN_QUEUES = (QUEUE_GPU,)


def parse_queues(text: str) -> list[str]:
    queues = [q.strip() for q in text.split(",") if q.strip()]
    unknown = sorted(set(queues) - set(KNOWN_QUEUES))
    if not queues or unknown:
        raise ValueError(f"worker queues must be some of {', '.join(KNOWN_QUEUES)}, got {text!r}")
    return list(dict.fromkeys(queues))


def make_celery(settings: Settings) -> Celery:
    app = Celery("aam-worker", set_as_current=False)
    app.conf.update(
        **broker_config(settings.resolved_broker_url),
        task_queues=[Queue(q, Exchange(q, type="direct"), routing_key=q) for q in KNOWN_QUEUES],
        task_default_queue=QUEUE_GPU,
        task_routes={TASK_RUN_JOB: {"queue": QUEUE_GPU}},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        result_backend=None,
        # A broker outage must not end the worker: it reconnects for as long as it takes, and
        # a running job goes on meanwhile (its row, not the broker, records it).
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=True,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        worker_disable_rate_limits=True,
        broker_pool_limit=2,
    )
    return app
