"""``python -m app``: serve the API with uvicorn on the settings' host and port (``AAM_*``).

The same command runs in the API image (docker/api.Dockerfile) and under ``make serve``.
"""

from __future__ import annotations

import argparse
import sys

import torch
import uvicorn

from app.api.observability import configure_logging
from app.main import create_app
from app.settings import Settings


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
    torch.set_num_threads(settings.predict_threads)  # process-wide: set here, at the edge
    app = create_app(settings)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
