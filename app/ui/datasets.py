"""Datasets: the list with the upload form (stored through the API's own upload code, so
validation and its messages are the API's), a dataset's summary, and delete."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from aam_core.errors import UserError
from app.api.deps import Caller, ServicesDep, SessionDep
from app.api.errors import ApiError, not_found
from app.api.ingest import DATASET_FILES
from app.api.routes import datasets as api_datasets
from app.api.schemas import DatasetOut
from app.api.threads import run_blocking
from app.api.uploads import Upload, read_multipart
from app.store import Dataset, get_dataset, list_datasets
from app.ui.context import FormDep, UiCallerDep, base_paths, check_token, problem_of, render
from app.ui.session import CSRF_FIELD

router = APIRouter()
PAGE = 100


def _list(
    request: Request, services: ServicesDep, session: SessionDep, caller: Caller,
    status: int = 200, message: str | None = None,
) -> Response:  # fmt: skip
    rows, _next = list_datasets(session, caller.scope, limit=PAGE)
    datasets = [DatasetOut.from_row(row) for row in rows]
    return render(request, services, "datasets.html", status, datasets=datasets, message=message)


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(
    request: Request, services: ServicesDep, session: SessionDep, caller: UiCallerDep
) -> Response:
    return _list(request, services, session, caller)


def _without_empty_files(upload: Upload) -> None:
    """A browser sends an empty part for each file input left blank: drop those."""
    for role, file in list(upload.files.items()):
        if file.size == 0:
            file.path.unlink(missing_ok=True)
            del upload.files[role]


@router.post("/datasets", response_class=HTMLResponse)
async def upload(
    request: Request, services: ServicesDep, session: SessionDep, caller: UiCallerDep
) -> Response:
    settings = services.settings
    try:
        form = await read_multipart(
            request, temp_dir=settings.uploads_dir, limit=settings.upload_limit_bytes,
            files=set(DATASET_FILES),
        )  # fmt: skip
    except ApiError as exc:
        return _list(request, services, session, caller, exc.status, exc.detail)
    try:
        check_token(request, services, form.fields.pop(CSRF_FIELD, None))
        _without_empty_files(form)
        if not form.fields.get("name", "").strip():
            form.fields.pop("name", None)
        try:
            dataset = await run_blocking(api_datasets.create_from_upload, services, caller, form)
        except (ApiError, UserError) as exc:
            message, _field = problem_of(exc)
            status = exc.status if isinstance(exc, ApiError) else 422
            return _list(request, services, session, caller, status, message)
    finally:
        form.cleanup()
    root, _api = base_paths(request)
    return RedirectResponse(f"{root}/datasets/{dataset.id}", status_code=303)


def _dataset(session: SessionDep, caller: Caller, dataset_id: str) -> Dataset:
    dataset = get_dataset(session, dataset_id, caller.scope)
    if dataset is None:
        raise not_found("dataset", dataset_id)
    return dataset


def _page(
    request: Request, services: ServicesDep, dataset: Dataset, status: int = 200,
    message: str | None = None,
) -> Response:  # fmt: skip
    return render(request, services, "dataset.html", status, dataset=DatasetOut.from_row(dataset),
                  message=message)  # fmt: skip


@router.get("/datasets/{dataset_id}", response_class=HTMLResponse)
def dataset_page(
    dataset_id: str, request: Request, services: ServicesDep, session: SessionDep,
    caller: UiCallerDep,
) -> Response:  # fmt: skip
    return _page(request, services, _dataset(session, caller, dataset_id))


@router.post("/datasets/{dataset_id}/delete", response_class=HTMLResponse)
def delete(
    dataset_id: str, request: Request, services: ServicesDep, session: SessionDep,
    caller: UiCallerDep, _: FormDep,
) -> Response:  # fmt: skip
    dataset = _dataset(session, caller, dataset_id)
    try:
        api_datasets.remove_dataset(dataset, session, services)
    except ApiError as exc:
        session.rollback()
        return _page(request, services, _dataset(session, caller, dataset_id), exc.status,
                     exc.detail)  # fmt: skip
    root, _api = base_paths(request)
    return RedirectResponse(f"{root}/datasets", status_code=303)
