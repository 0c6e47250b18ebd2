"""Models: a stored checkpoint's path, its card, and a model deleted with the files no other
row shares."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from aam_core.checkpoint import load_checkpoint
from aam_core.model_card import model_card
from app.api.blobs import missing_blob
from app.api.deps import Services
from app.api.errors import ApiError, not_found
from app.api.ingest import release_blobs
from app.store import Model, begin_write, delete_model, model_in_use


def stored_blob(services: Services, sha256: str, what: str) -> Path:
    try:
        return services.storage.path(sha256)
    except KeyError:
        raise missing_blob(what, sha256) from None


@functools.lru_cache(maxsize=256)
def checkpoint_card(sha256: str, path: Path, name: str) -> dict[str, Any]:
    """A checkpoint's card; cached by the file's digest, which fixes its content (the cached
    dictionary is only ever serialised, never changed)."""
    return model_card(load_checkpoint(path, name=name), checkpoint_sha256=sha256)


def remove(model: Model, session: Session, services: Services) -> None:
    """Delete the model, drop it from the prediction cache, and remove its checkpoint and plots
    unless another row uses the same file; 409 while an active job uses the model."""
    model_id, sha256 = model.id, model.checkpoint_sha256
    digests = [sha256, *(model.plots or {}).values()]
    session.commit()  # end the read; the delete runs in a write transaction of its own
    begin_write(session)
    if model_in_use(session, model_id):
        session.rollback()
        raise ApiError(
            409,
            f"model {model_id!r} is used by a queued or running job; cancel the job or wait "
            "until it ends, then delete the model",
            kind="conflict",
        )
    if not delete_model(session, model_id):  # deleted by a concurrent request meanwhile
        session.rollback()
        raise not_found("model", model_id)
    session.commit()
    services.cache.evict(sha256)  # the cache is keyed by checkpoint digest (services.predict)
    release_blobs(session, services.storage, digests)
