"""``python -m app``: serve the API with uvicorn on the settings' host and port (``AAM_*``).

The same command runs in the API image (docker/api.Dockerfile) and under ``make serve``.
With ``AAM_API_WORKERS`` > 1 it migrates the database once, then uvicorn starts that many API
processes on the one socket (each builds the app through :func:`worker_app`), sharing their
Prometheus counters through a directory of files (see ``app.api.observability.Metrics``).
"""

from __future__ import annotations

import argparse
import gc
import logging
import multiprocessing
import os
import re
import sys
import tempfile

import torch
import uvicorn
from fastapi import FastAPI

from app.api.observability import MULTIPROCESS_DIR_ENV, configure_logging
from app.api.threads import pin_to_one_core
from app.main import create_app
from app.settings import Settings
from app.store import make_engine, migrate

log = logging.getLogger("aam.api")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    parser.add_argument("--host", help="bind address (default: AAM_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: AAM_PORT or 8000)")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
        host = args.host or settings.host
        port = settings.port if args.port is None else args.port
        settings.check_bind(host)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if settings.api_workers > 1:
        _serve_workers(settings, host, port)
        return 0
    uvicorn.run(_serving_app(settings), host=host, port=port, log_config=None, access_log=False)
    return 0


def worker_app() -> FastAPI:
    """The app of one API process among several: uvicorn's worker processes call this (they
    are started fresh, not forked, and read the same ``AAM_*`` environment)."""
    settings = Settings()
    configure_logging(settings.log_level)
    return _serving_app(settings)


def _serving_app(settings: Settings) -> FastAPI:
    """The app of a process that serves: PyTorch's threads set here, at the edge (they are
    process-wide), and what start-up built (modules, PyTorch, the app) taken out of the garbage
    collector's sight, so that a full collection walks only what requests create. Measured on
    the 2-core VM under 32 clients: the one full collection of a run paused the process for
    195 ms (every request in flight waited), and 21-23 ms after the freeze. Then, with
    ``AAM_API_PIN_CORE``, the event loop's thread (this one) goes to one core (app.api.threads)."""
    torch.set_num_threads(settings.predict_threads)
    app = create_app(settings)
    gc.collect()
    gc.freeze()
    if settings.api_pin_core:
        core = pin_to_one_core(_process_index())
        if core is not None:
            log.info("API process %d: event loop and request threads on core %d", os.getpid(), core)
    return app


def _process_index() -> int | None:
    """None for a lone API process; uvicorn's worker processes are SpawnProcess-1, -2, ... (a
    restarted one gets the next number), so that several spread over the cores."""
    match = re.fullmatch(r"\w+Process-(\d+)", multiprocessing.current_process().name)
    return int(match[1]) - 1 if match else None


def _serve_workers(settings: Settings, host: str, port: int) -> None:
    engine = make_engine(settings.resolved_database_url)
    try:  # once, here, rather than in every process at the same moment
        migrate(engine)
    finally:
        engine.dispose()
    preset = os.environ.get(MULTIPROCESS_DIR_ENV)
    with tempfile.TemporaryDirectory(prefix="aam-metrics-") as fresh:
        # A fresh directory per start: counters from an earlier run must not be added in.
        os.environ[MULTIPROCESS_DIR_ENV] = preset or fresh
        uvicorn.run(
            "app.__main__:worker_app",
            factory=True,
            workers=settings.api_workers,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
        )


if __name__ == "__main__":
    raise SystemExit(main())
