"""Datasets: the list with the upload form (stored through the API's own upload code, so
validation and its messages are the API's), a dataset's summary with its depth histogram, and
delete."""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from aam_core.errors import UserError
from app.api.deps import Caller, ServicesDep, SessionDep, dataset_or_404
from app.api.errors import ApiError
from app.api.ingest import DATASET_FILES
from app.api.schemas import DatasetOut, DepthHistogram
from app.api.threads import run_blocking
from app.api.uploads import Upload, read_multipart
from app.services import datasets as dataset_service
from app.session_cookie import CSRF_FIELD
from app.store import Dataset, list_datasets
from app.ui.context import FormDep, UiCallerDep, base_paths, check_token, problem_of, render

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
            request,
            temp_dir=settings.uploads_dir,
            limit=settings.upload_limit_bytes,
            files=set(DATASET_FILES),
        )
    except ApiError as exc:
        return _list(request, services, session, caller, exc.status, exc.detail)
    try:
        check_token(request, services, form.fields.pop(CSRF_FIELD, None))
        _without_empty_files(form)
        if not form.fields.get("name", "").strip():
            form.fields.pop("name", None)
        try:
            dataset = await run_blocking(dataset_service.create_from_upload, services, caller, form)
        except (ApiError, UserError) as exc:
            message, _field = problem_of(exc)
            status = exc.status if isinstance(exc, ApiError) else 422
            return _list(request, services, session, caller, status, message)
    finally:
        form.cleanup()
    root, _api = base_paths(request)
    return RedirectResponse(f"{root}/datasets/{dataset.id}", status_code=303)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    low: float
    high: float
    count: int


@dataclass(frozen=True)
class HistogramSvg:
    """Geometry of the depth histogram, an inline SVG (log depth across, samples up)."""

    width: int
    height: int
    bottom: float
    bars: list[Bar]
    ticks: list[tuple[float, str]]  # x, label
    max_count: int
    mark: float | None  # x of the default rarefaction depth, clamped to the axis


WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 640, 220, 36, 16, 18, 30


def histogram_svg(histogram: DepthHistogram | None, depth: int | None) -> HistogramSvg | None:
    if histogram is None or not histogram.counts:
        return None
    low, high = histogram.edges[0], histogram.edges[-1]
    if high <= low:  # one depth: a bar an octave either side of it
        low, high = low / 2, high * 2
    span = math.log10(high) - math.log10(low)
    inner = WIDTH - LEFT - RIGHT

    def x(value: float) -> float:
        clamped = min(max(value, low), high)
        return LEFT + (math.log10(clamped) - math.log10(low)) / span * inner

    bottom = HEIGHT - BOTTOM
    tallest = max(histogram.counts)
    scale = (bottom - TOP) / tallest
    edges = [low, high] if histogram.edges[0] == histogram.edges[-1] else histogram.edges
    bars = [
        Bar(x(a), bottom - c * scale, max(x(b) - x(a) - 1, 1), c * scale, a, b, c)
        for (a, b), c in zip(pairwise(edges), histogram.counts, strict=True)
    ]
    decades = range(math.ceil(math.log10(low)), math.floor(math.log10(high)) + 1)
    ticks = [(x(10**k), f"{10**k:,}") for k in decades]
    return HistogramSvg(
        WIDTH, HEIGHT, bottom, bars, ticks, tallest, None if depth is None else x(depth)
    )


def _page(
    request: Request,
    services: ServicesDep,
    dataset: Dataset,
    status: int = 200,
    message: str | None = None,
) -> Response:
    out = DatasetOut.from_row(dataset)
    default = out.default_rarefaction
    svg = histogram_svg(out.depth_histogram, default.depth if default else None)
    return render(
        request, services, "dataset.html", status, dataset=out, histogram=svg, message=message
    )


@router.get("/datasets/{dataset_id}", response_class=HTMLResponse)
def dataset_page(
    dataset_id: str,
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    caller: UiCallerDep,
) -> Response:
    return _page(request, services, dataset_or_404(dataset_id, session, caller))


@router.post("/datasets/{dataset_id}/delete", response_class=HTMLResponse)
def delete(
    dataset_id: str,
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    caller: UiCallerDep,
    _: FormDep,
) -> Response:
    dataset = dataset_or_404(dataset_id, session, caller)
    try:
        dataset_service.remove(dataset, session, services)
    except ApiError as exc:
        session.rollback()
        return _page(
            request, services, dataset_or_404(dataset_id, session, caller), exc.status, exc.detail
        )
    root, _api = base_paths(request)
    return RedirectResponse(f"{root}/datasets", status_code=303)
