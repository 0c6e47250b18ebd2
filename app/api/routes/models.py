"""Models (docs/api.md, Models): list, read, download, import and delete trained models, and their
plots and cards. A succeeded job registers its model (worker); ``POST /models`` imports a
checkpoint made with the command-line tool, loaded with ``weights_only=True`` before anything
is stored. A model's card is built from its checkpoint alone (aam_core.model_card)."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from aam_core.model_card import card_markdown
from app.api.blobs import send_blob
from app.api.card_schemas import ModelCard
from app.api.deps import Caller, CallerDep, ModelDep, Services, ServicesDep, SessionDep
from app.api.errors import ApiError
from app.api.ingest import check_form, form_name, lock_blobs, release_blobs
from app.api.negotiation import prefers_json
from app.api.schemas import ModelOut, ModelPageQuery, Page, problem_responses
from app.api.threads import run_blocking
from app.api.uploads import Upload, read_multipart
from app.registration import register_checkpoint
from app.services import models
from app.store import list_models

log = logging.getLogger("aam.api")
router = APIRouter(tags=["models"])
MARKDOWN = "text/markdown"

_IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["checkpoint"],
                    "properties": {
                        "checkpoint": {
                            "type": "string",
                            "format": "binary",
                            "description": "a checkpoint written by the aam command-line tool",
                        },
                        "name": {"type": "string", "maxLength": 200},
                    },
                }
            }
        },
    }
}


def _file_answer(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    schema = {"type": "string", "format": "binary"}
    return {200: {"description": description, "content": {media_type: {"schema": schema}}}}


def _import(services: Services, caller: Caller, upload: Upload) -> ModelOut:
    """Validate and register one checkpoint (thread pool: torch loading is CPU work)."""
    checkpoint = check_form(upload, required="checkpoint", files=("checkpoint",), fields=("name",))
    name = form_name(upload, checkpoint.filename)
    with services.sessions() as session:
        # The lock also covers validation, so the checkpoint is loaded once: register_checkpoint
        # validates and then stores. A refused file stores nothing and only held the lock.
        lock_blobs(session)
        try:
            model = register_checkpoint(
                session,
                services.storage,
                checkpoint.path,
                owner=caller.owner,
                name=name,
                source="import",
                file_name=checkpoint.filename,
            )
            session.commit()
        except BaseException:
            session.rollback()
            release_blobs(session, services.storage, [checkpoint.sha256])
            raise
        return ModelOut.from_row(model)


@router.post(
    "/models",
    status_code=201,
    response_model=ModelOut,
    openapi_extra=_IMPORT_BODY,
    responses=problem_responses(400, 401, 413, 415, 422, 507),
)
async def import_model(
    request: Request, response: Response, services: ServicesDep, caller: CallerDep
) -> ModelOut:
    """Import a checkpoint made with the command-line tool. A file that is not a usable AAM
    checkpoint (corrupt, foreign, from a newer aam, or holding code) answers 422."""
    settings = services.settings
    upload = await read_multipart(
        request,
        temp_dir=settings.uploads_dir,
        limit=settings.upload_limit_bytes,
        files={"checkpoint"},
    )
    try:
        model = await run_blocking(_import, services, caller, upload)
    finally:
        upload.cleanup()
    response.headers["Location"] = f"/models/{model.id}"
    return model


@router.get("/models", response_model=Page[ModelOut], responses=problem_responses(401, 422))
def get_models(
    page: Annotated[ModelPageQuery, Query()], session: SessionDep, caller: CallerDep
) -> Page[ModelOut]:
    """The caller's models (an admin's: everyone's), newest first; ``kind`` filters."""
    rows, next_cursor = list_models(
        session, caller.scope, kind=page.kind, limit=page.limit, cursor=page.cursor
    )
    return Page[ModelOut](items=[ModelOut.from_row(row) for row in rows], next_cursor=next_cursor)


@router.get("/models/{model_id}", response_model=ModelOut, responses=problem_responses(401, 404))
async def get_model(model: ModelDep) -> ModelOut:  # no I/O: the row is loaded
    return ModelOut.from_row(model)


@router.get(
    "/models/{model_id}/checkpoint",
    response_class=FileResponse,
    responses={
        **_file_answer("application/octet-stream", "the checkpoint file (<model id>.pt)"),
        **problem_responses(401, 404),
    },
)
def download_checkpoint(model: ModelDep, request: Request, services: ServicesDep) -> Response:
    """The checkpoint file; its ETag is its SHA-256 (``checkpoint_sha256``)."""
    sha256 = model.checkpoint_sha256
    what = f"the checkpoint of model {model.id!r}"
    return send_blob(
        request, services.storage, sha256, what, "application/octet-stream", f"{model.id}.pt"
    )


@router.get(
    "/models/{model_id}/plots/{plot}.png",
    response_class=FileResponse,
    responses={**_file_answer("image/png", "the plot (PNG)"), **problem_responses(401, 404)},
)
def get_plot(model: ModelDep, plot: str, request: Request, services: ServicesDep) -> Response:
    """A plot of the model's training: ``loss``, and ``predicted_vs_true`` (regressor) or
    ``confusion`` (classifier) for the validation split; the model lists its ``plots``."""
    plots: dict[str, str] = model.plots or {}
    if plot not in plots:
        available = f"its plots are {', '.join(sorted(plots))}" if plots else "it has no plots"
        raise ApiError(
            404, f"model {model.id!r} has no plot {plot!r}; {available}", kind="not-found"
        )
    sha256 = plots[plot]
    what = f"plot {plot!r} of model {model.id!r}"
    return send_blob(request, services.storage, sha256, what, "image/png", f"{plot}.png")


@router.get(
    "/models/{model_id}/card",
    response_class=Response,
    responses={
        200: {
            "description": "Markdown by default; JSON with Accept: application/json or "
            "?format=json",
            "model": ModelCard,
            "content": {MARKDOWN: {"schema": {"type": "string"}}, "application/json": {}},
        },
        **problem_responses(401, 404),
    },
)
async def get_card(
    model: ModelDep,
    request: Request,
    services: ServicesDep,
    fmt: Annotated[
        Literal["markdown", "json"] | None,
        Query(alias="format", description="overrides the Accept header"),
    ] = None,
) -> Response:
    """The model card, from the model's checkpoint alone: data digests, split and seed, run
    settings, validation metrics beside the random-forest, constant and depth-only baselines
    (with a warning when sequencing depth alone predicts the target), library versions,
    intended use and limits. A checkpoint downloaded here and imported elsewhere
    has the same card there."""
    sha256 = model.checkpoint_sha256
    path = models.stored_blob(services, sha256, f"the checkpoint of model {model.id!r}")
    card = await run_blocking(models.checkpoint_card, sha256, path, f"{model.id}.pt")
    accept = request.headers.get("accept")
    as_json = fmt == "json" if fmt is not None else prefers_json(accept, MARKDOWN)
    headers = {"Vary": "Accept"}
    if as_json:
        headers["Content-Disposition"] = f'inline; filename="{model.id}_card.json"'
        return JSONResponse(card, headers=headers)
    headers["Content-Disposition"] = f'inline; filename="{model.id}_card.md"'
    return Response(card_markdown(card), media_type=f"{MARKDOWN}; charset=utf-8", headers=headers)


@router.delete(
    "/models/{model_id}",
    status_code=204,
    response_class=Response,
    responses=problem_responses(401, 404, 409, 507),
)
def remove_model(model: ModelDep, session: SessionDep, services: ServicesDep) -> Response:
    """Delete the model, drop it from the prediction cache, and remove its checkpoint and plots
    unless another row uses the same file; 409 while an active job uses the model."""
    models.remove(model, session, services)
    return Response(status_code=204)
