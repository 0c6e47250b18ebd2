"""Models (the list: the monitored metric beside the random forest's; a model's page: its
card's metrics beside the baselines, plots, lineage and card; download, delete) and
prediction: a table uploaded for a model, its predictions shown and offered as TSV."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from aam_core.errors import UserError
from aam_core.io import read_table
from aam_core.io.predictions import samples_frame
from aam_core.model_card import card_markdown
from app.api.deps import Caller, ServicesDep, SessionDep, model_or_404
from app.api.errors import ApiError
from app.api.schemas import ModelOut, SamplePredictionOut
from app.api.threads import run_blocking
from app.api.uploads import read_multipart
from app.services import models as model_service
from app.services.predict import predict_table
from app.session_cookie import CSRF_FIELD
from app.store import list_models
from app.ui.context import FormDep, UiCallerDep, base_paths, check_token, problem_of, render
from app.ui.model_view import card_html, depth_warning, headline, lineage, metric_rows

router = APIRouter()
PAGE = 100


def _list(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    caller: Caller,
    status: int = 200,
    message: str | None = None,
) -> Response:
    rows, _next = list_models(session, caller.scope, limit=PAGE)
    models = [ModelOut.from_row(row) for row in rows]
    headlines = {m.id: headline(m.metrics) for m in models}
    return render(
        request,
        services,
        "models.html",
        status,
        models=models,
        headlines=headlines,
        message=message,
    )


@router.get("/models", response_class=HTMLResponse)
def models_page(
    request: Request, services: ServicesDep, session: SessionDep, caller: UiCallerDep
) -> Response:
    return _list(request, services, session, caller)


@router.get("/models/{model_id}", response_class=HTMLResponse)
def model_page(
    model_id: str,
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    caller: UiCallerDep,
) -> Response:
    model = model_or_404(model_id, session, caller)
    message = None
    card: dict[str, Any] = {}
    try:  # the API's card, cached by checkpoint digest (a thread: this route is sync)
        path = model_service.stored_blob(
            services, model.checkpoint_sha256, f"the checkpoint of {model.id}"
        )
        card = model_service.checkpoint_card(model.checkpoint_sha256, path, f"{model.id}.pt")
    except (ApiError, UserError) as exc:
        message, _field = problem_of(exc)
    return render(
        request,
        services,
        "model.html",
        model=ModelOut.from_row(model),
        card=card,
        card_html=card_html(card_markdown(card)) if card else None,
        rows=metric_rows(card),
        depth_warning=depth_warning(model.metrics),
        lineage=lineage(session, model, caller.scope, card),
        message=message,
    )


@router.post("/models/{model_id}/delete", response_class=HTMLResponse)
def delete(
    model_id: str,
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    caller: UiCallerDep,
    _: FormDep,
) -> Response:
    model = model_or_404(model_id, session, caller)
    try:
        model_service.remove(model, session, services)
    except ApiError as exc:
        session.rollback()
        return _list(request, services, session, caller, exc.status, exc.detail)
    root, _api = base_paths(request)
    return RedirectResponse(f"{root}/models", status_code=303)


def _predict_page(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    caller: Caller,
    status: int = 200,
    **context: Any,
) -> Response:
    rows, _next = list_models(session, caller.scope, limit=PAGE)
    models = [m for m in rows if m.kind != "encoder"]
    return render(request, services, "predict.html", status, models=models, **context)


@router.get("/predict", response_class=HTMLResponse)
def predict_page(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    caller: UiCallerDep,
    model: str = "",
) -> Response:
    return _predict_page(request, services, session, caller, selected=model)


def as_tsv(predictions: list[SamplePredictionOut]) -> str:
    """The predictions in the one prediction table layout (sample_id, prediction,
    prob_<class>; aam_core.io.predictions), then the reads each sample used."""
    frame = samples_frame(predictions)
    frame["n_features_used"] = [p.n_features_used for p in predictions]
    frame["fraction_reads_used"] = [p.fraction_reads_used for p in predictions]
    frame["warnings"] = ["; ".join(p.warnings) for p in predictions]
    return frame.to_csv(sep="\t", index=False, lineterminator="\n")


@router.post("/predict", response_class=HTMLResponse)
async def predict(
    request: Request, services: ServicesDep, session: SessionDep, caller: UiCallerDep
) -> Response:
    settings = services.settings
    model_id = ""
    try:
        upload = await read_multipart(
            request,
            temp_dir=settings.uploads_dir,
            limit=settings.upload_limit_bytes,
            files={"table"},
        )
        try:
            check_token(request, services, upload.fields.get(CSRF_FIELD))
            model_id = upload.fields.get("model_id", "").strip()
            table_file = upload.files.get("table")
            if not model_id or table_file is None or table_file.size == 0:
                raise ApiError(422, "choose a model and a table (BIOM or .qza) to predict")
            table = await run_blocking(read_table, table_file.path, name=table_file.filename)
        finally:
            upload.cleanup()
        if table.n_samples > settings.sync_predict_limit:
            limit = settings.sync_predict_limit
            message = f"{table.n_samples} samples is more than this page predicts ({limit})"
            raise ApiError(413, f"{message}: submit a predict job")
        predictions = await services.predictions.run(
            predict_table, services, caller.scope, model_id, table, None, "prediction"
        )
    except (ApiError, UserError) as exc:
        message, _field = problem_of(exc)
        status = exc.status if isinstance(exc, ApiError) else 422
        return _predict_page(
            request, services, session, caller, status, selected=model_id, message=message
        )
    tsv = as_tsv(predictions)
    return _predict_page(
        request,
        services,
        session,
        caller,
        selected=model_id,
        predictions=predictions,
        tsv_href="data:text/tab-separated-values;charset=utf-8," + quote(tsv),
        rows=[line.split("\t") for line in tsv.splitlines()],
    )
