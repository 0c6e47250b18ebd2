"""``python -m worker``: a Celery worker for one device, as the worker image runs it.

Settings come from ``AAM_*`` variables: ``AAM_DEVICE`` (cuda:0, cuda, cpu or auto),
``AAM_DATA_DIR``, ``AAM_DATABASE_URL``, ``AAM_BROKER_URL`` (unset: the embedded broker),
``AAM_WORKER_QUEUES`` (gpu), the heartbeat and cancel timings. The worker migrates the
database (a no-op at head), consumes one job at a time, keeps its presence row for ``/ready``,
reaps jobs of dead workers, and on SIGTERM or Ctrl-C stops its running job at a checkpoint and
hands it back to the queue before it exits.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from celery import signals

from app.dispatch import CeleryDispatcher
from app.settings import Settings
from app.store import make_engine, make_session_factory, migrate
from app.store.storage import open_store
from worker.broker import queue_depth
from worker.celery_app import make_celery, parse_queues
from worker.devices import resolve_device
from worker.housekeeping import Housekeeper
from worker.runtime import WorkerRuntime, worker_name
from worker.tasks import register_tasks

log = logging.getLogger("aam.worker")


def build_runtime(settings: Settings, queues: list[str], nodename: str | None) -> WorkerRuntime:
    device = resolve_device(settings.device)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    return WorkerRuntime(
        settings=settings,
        name=worker_name(nodename),
        device=device,
        queues=queues,
        engine=engine,
        sessions=make_session_factory(engine),
        storage=open_store(settings),
        dispatcher=CeleryDispatcher(settings.resolved_broker_url),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--queues", help="comma-separated queues (default: AAM_WORKER_QUEUES)")
    parser.add_argument("--name", help="Celery node name (default: celery@HOSTNAME)")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
        queues = parse_queues(args.queues or settings.worker_queues)
        runtime = build_runtime(settings, queues, args.name)
    except Exception as exc:  # settings, device or database: one line, non-zero exit
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    app = make_celery(settings)
    register_tasks(app, runtime)
    runtime.queue_depth = lambda queue: queue_depth(app, queue)
    housekeeper = Housekeeper(runtime)

    def on_ready(**_: Any) -> None:
        log.info(
            "worker %s serving %s on queues %s",
            runtime.name,
            runtime.device.name,
            ",".join(queues),
        )
        housekeeper.start()

    def on_shutting_down(**_: Any) -> None:
        runtime.stopping.set()  # the running job stops at a checkpoint and goes back

    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_shutting_down.connect(on_shutting_down, weak=False)
    celery_args = [
        "worker",
        "--pool=threads",
        "--concurrency=1",
        f"--queues={','.join(queues)}",
        f"--loglevel={settings.log_level}",
        "--without-gossip",
        "--without-mingle",
    ]
    if args.name:
        celery_args.append(f"--hostname={args.name}")
    try:
        app.worker_main(celery_args)
    finally:
        runtime.stopping.set()
        housekeeper.stop()
        runtime.engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
