"""``python -m app.migrate``: bring the database schema to the latest revision, then exit.

docker-compose.yml runs this once, as the one-shot ``migrate`` service that the API and the
workers wait for (``service_completed_successfully``), so an upgrade's migration runs before any
new code touches the database. The API and workers also migrate when they start; that is safe
because :func:`app.store.db.migrate` holds a database lock, and with the schema already at head
it does nothing.
"""

from __future__ import annotations

import argparse
import sys

from app.settings import Settings
from app.store.db import current_revision, make_engine, migrate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.migrate", description=__doc__)
    parser.parse_args(argv)
    try:
        settings = Settings()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    engine = make_engine(settings.resolved_database_url)
    try:
        before = current_revision(engine)
        migrate(engine)
        after = current_revision(engine)
    except Exception as exc:  # any driver error: say which database and why, exit non-zero
        url = engine.url.render_as_string(hide_password=True)
        print(f"error: migrating {url} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    if before == after:
        print(f"migrate: schema already at revision {after}")
    else:
        print(f"migrate: schema upgraded from {before or 'empty'} to revision {after}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
