"""``python -m app``: serve the API with uvicorn on the settings' host and port (``AAM_*``).

The same command runs in the API image (docker/api.Dockerfile) and under ``make serve``.
With ``AAM_API_WORKERS`` > 1 it migrates the database once, then uvicorn starts that many API
processes on the one socket (each builds the app through :func:`worker_app`), sharing their
Prometheus counters through a directory of files (see ``app.api.observability.Metrics``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import torch
import uvicorn
from fastapi import FastAPI

from aam_core.memory import limit_malloc_arenas
from app.api.observability import MULTIPROCESS_DIR_ENV, configure_logging
from app.main import create_app
from app.settings import Settings
from app.store import make_engine, migrate

API_MALLOC_ARENAS = 2


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
    limit_malloc_arenas(API_MALLOC_ARENAS)
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
    limit_malloc_arenas(API_MALLOC_ARENAS)
    return _serving_app(settings)


def _serving_app(settings: Settings) -> FastAPI:
    """The app of a process that serves. One PyTorch thread per prediction, set here at the
    edge (it is process-wide): predictions run side by side, one per prediction slot, and more
    threads each would only oversubscribe the cores."""
    torch.set_num_threads(1)
    return create_app(settings)


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
