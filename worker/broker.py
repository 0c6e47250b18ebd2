"""The broker as the worker sees it: Redis (``AAM_BROKER_URL=redis://...``) or the embedded
broker, kombu's SQLAlchemy transport on a SQLite file in the data directory
(``sqla+sqlite:///DATA/broker.db``, what the API publishes to when no broker is set).

Three things about kombu's SQLAlchemy transport, handled here for the consuming side:

- It polls; its default interval (1 s) alone would be the whole queue-latency budget.
  :class:`EmbeddedTransport` polls every ``EMBEDDED_POLL_SECONDS``.
- It hands every transport option to ``create_engine()`` (so ``polling_interval`` cannot go
  there), with SQLite's default 5 s lock timeout; the engine here waits up to 30 s and uses WAL,
  so publishers (the API) and the polling worker do not block each other's reads.
- It has no visibility timeout: a delivered message is marked invisible and never comes back,
  even when the worker that took it is killed. Nothing is lost for that: the job row is the
  record, and the reaper re-sends the message of a job left queued or running
  (:mod:`worker.reaper`).

The worker connects with ``broker_transport=EmbeddedTransport`` and the plain ``sqlite:///``
URL (kombu takes the transport from a ``sqla+`` prefix before looking at that setting).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from kombu.transport import sqlalchemy as kombu_sqla
from sqlalchemy import Engine, create_engine, event

log = logging.getLogger("aam.worker")

EMBEDDED_PREFIX = "sqla+"
EMBEDDED_POLL_SECONDS = 0.2  # about 1% of a core while idle; a p50 latency near 0.1 s
SQLITE_LOCK_TIMEOUT_S = 30.0
# Longer than any training: Redis re-delivers a message not acknowledged within this time,
# and the message of a running job is acknowledged only when the job ends (acks_late).
REDIS_VISIBILITY_TIMEOUT_S = 30 * 24 * 3600


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


class EmbeddedChannel(kombu_sqla.Channel):
    # kombu caches engines per URL on the class; a cache of its own keeps this engine apart
    # from the plain transport's (the reaper publishes with the API's dispatcher).
    _engines: dict[str, Any] = {}  # noqa: RUF012

    def _engine_from_config(self) -> Engine:
        url = self.connection.client.hostname
        engine = create_engine(url, connect_args={"timeout": SQLITE_LOCK_TIMEOUT_S})
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        return engine


class EmbeddedTransport(kombu_sqla.Transport):
    Channel = EmbeddedChannel
    polling_interval = EMBEDDED_POLL_SECONDS


def is_embedded(broker_url: str) -> bool:
    return broker_url.startswith(EMBEDDED_PREFIX)


def broker_config(broker_url: str) -> dict[str, Any]:
    """Celery settings that connect a worker to ``broker_url``."""
    if is_embedded(broker_url):
        return {
            "broker_url": broker_url.removeprefix(EMBEDDED_PREFIX),
            "broker_transport": EmbeddedTransport,
            "broker_transport_options": {},
        }
    options: dict[str, Any] = {}
    if broker_url.startswith(("redis://", "rediss://", "redis+socket://")):
        options = {"visibility_timeout": REDIS_VISIBILITY_TIMEOUT_S}
    return {"broker_url": broker_url, "broker_transport_options": options}


def declare_queues(app: Celery, queues: list[str]) -> None:
    """Create the queues (and, for the embedded broker, its tables) before anyone uses them,
    so that two processes starting together do not race to create them."""
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=3)
        channel = connection.default_channel
        for name in queues:
            app.amqp.queues[name](channel).declare()


def queue_depth(app: Celery, queue: str) -> int | None:
    """Messages waiting in ``queue`` (None when the broker cannot say, e.g. it is down)."""
    try:
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1)
            declared = app.amqp.queues[queue](connection.default_channel).queue_declare()
            return int(declared.message_count)
    except Exception as exc:  # kombu/redis/sqlalchemy raise many types for "unreachable"
        log.warning("cannot count the messages in queue %s: %s", queue, exc)
        return None
