"""The lab dashboard under ``/ui``: server-rendered pages (Jinja2) over the same repositories
and owner scoping as the REST API. :mod:`app.session_cookie` holds the cookie and CSRF logic (no
FastAPI imports, so :mod:`app.api.deps` can use it); :func:`app.ui.app.create_ui` builds the
mounted application."""
