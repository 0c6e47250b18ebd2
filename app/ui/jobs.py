"""Jobs: the list (state and kind filters, unfinished jobs' progress live), a job's live page
(state, progress, loss and metric curves from the event stream, the log tail, cancel, its error,
a train job's baselines, a cross_validate job's fold progress and results), and the new-job and
cross-validate forms, which submit through the API's own ``POST /jobs`` code so the checks and
their messages are the API's."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from aam_core.errors import UserError
from aam_core.plan.crossval import CV_MODELS, MAX_FOLDS, MAX_REPEATS
from app.api.deps import Caller, ServicesDep, SessionDep, job_or_404
from app.api.errors import ApiError
from app.api.schemas import DatasetOut, JobOut
from app.contracts import TERMINAL_STATES, CrossValidationSpec, JobKind, JobSpec, JobState
from app.services import jobs as job_service
from app.store import (
    Job,
    get_logs,
    get_model,
    list_datasets,
    list_jobs,
    list_models,
)
from app.store.job_history import MAX_LOG_PAGE
from app.ui.context import FormDep, UiCallerDep, base_paths, problem_of, render
from app.ui.cv_view import cross_validation_view, fold_label, label
from app.ui.model_view import depth_warning

router = APIRouter()
LOG_TAIL = 40
PAGE = 100
LIVE_ROWS = 5  # streams followed at once: Chromium allows 6 HTTP/1.1 connections per host


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    caller: UiCallerDep,
    state: str = "",
    kind: str = "",
) -> Response:
    states = [s.value for s in JobState]
    kinds = [k.value for k in JobKind]
    wanted = JobState(state) if state in states else None
    of_kind = JobKind(kind) if kind in kinds else None
    rows, _next = list_jobs(session, caller.scope, state=wanted, kind=of_kind, limit=PAGE)
    jobs = [JobOut.from_row(row) for row in rows]
    live = [j.id for j in jobs if j.state not in TERMINAL_STATES][:LIVE_ROWS]
    return render(
        request,
        services,
        "jobs.html",
        jobs=jobs,
        states=states,
        state=state,
        kinds=kinds,
        kind=kind,
        live=live,
    )


def _choices(session: SessionDep, caller: Caller) -> dict[str, Any]:
    """The datasets (with their metadata columns) and models the form offers."""
    datasets, _ = list_datasets(session, caller.scope, limit=PAGE)
    models, _ = list_models(session, caller.scope, limit=PAGE)
    documents = [DatasetOut.from_row(row) for row in datasets]
    columns = {
        d.id: [{"name": c.name, "kind": c.kind} for c in d.metadata_columns] for d in documents
    }
    return {
        "datasets": documents,
        "columns_json": json.dumps(columns),
        "encoders": [m for m in models if m.kind == "encoder"],
        "predictors": [m for m in models if m.kind != "encoder"],
    }


@router.get("/jobs/new", response_class=HTMLResponse)
def new_job_page(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    caller: UiCallerDep,
    dataset: str = "",
    kind: str = "pretrain",
) -> Response:
    values = {"kind": kind, "dataset_id": dataset, "config": "{}"}
    return render(request, services, "job_new.html", values=values, **_choices(session, caller))


def _cv_form(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    caller: Caller,
    values: Mapping[str, Any],
    status: int = 200,
    **context: Any,
) -> Response:
    return render(
        request,
        services,
        "job_cross_validate.html",
        status,
        values=values,
        cv_models=[(m, label(m)) for m in CV_MODELS],
        max_folds=MAX_FOLDS,
        max_repeats=MAX_REPEATS,
        **context,
        **_choices(session, caller),
    )


@router.get("/jobs/cross-validate", response_class=HTMLResponse)
def cross_validate_page(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    caller: UiCallerDep,
    dataset: str = "",
) -> Response:
    """The form of a cross_validate job: the new-job form's dataset, target and config fields,
    and the folds, groups and models compared (the API's defaults, every model ticked)."""
    defaults = CrossValidationSpec()
    values = {
        "kind": JobKind.cross_validate.value,
        "dataset_id": dataset,
        "config": "{}",
        "folds": str(defaults.folds),
        "repeats": str(defaults.repeats),
        "min_reads": str(defaults.min_reads),
        "models": list(CV_MODELS),
    }
    return _cv_form(request, services, session, caller, values)


def _cv_design(form: Mapping[str, Any]) -> dict[str, Any]:
    """``cv`` of a cross_validate job's body: numbers as typed (the API's validation reads
    them, and names the field it refuses), blank ones left to the API's defaults."""
    cv: dict[str, Any] = {
        key: str(form.get(key, "")).strip() for key in ("folds", "repeats", "min_reads")
    }
    cv = {key: value for key, value in cv.items() if value}
    if form.get("group_column"):
        cv["group_column"] = form["group_column"]
    cv["models"] = list(form.get("models") or [])
    cv["pretrain"] = form.get("pretrain") == "on"
    return cv


def spec_body(form: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of ``POST /jobs`` from the form's fields (empty ones left out); ``models``
    (cross_validate's ticked models) is a list, every other field a string."""
    kind = form.get("kind", "")
    body: dict[str, Any] = {"kind": kind, "dataset_id": form.get("dataset_id", "")}
    if form.get("name", "").strip():
        body["name"] = form["name"].strip()
    if kind in (JobKind.train, JobKind.cross_validate):
        body["target"] = {"column": form.get("target_column", ""), "task": form.get("task", "")}
        if form.get("model"):
            body["model"] = form["model"]
    if kind == "train" and form.get("base_model_id"):
        body["base_model_id"] = form["base_model_id"]
        body["freeze_base"] = form.get("freeze_base") == "on"
    if kind == JobKind.cross_validate:
        body["cv"] = _cv_design(form)
        body["refit"] = form.get("refit") == "on"
    if kind == "predict":
        body["model_id"] = form.get("model_id", "")
    text = form.get("config", "").strip()
    if text:
        try:
            config = json.loads(text)
        except json.JSONDecodeError as exc:
            where = [{"loc": ["body", "config"], "msg": exc.msg}]
            message = f"config: not JSON ({exc.msg} at line {exc.lineno})"
            raise ApiError(422, message, errors=where) from None
        if not isinstance(config, dict):
            where = [{"loc": ["body", "config"], "msg": "not a JSON object"}]
            raise ApiError(422, 'config: must be a JSON object ({"epochs": 1, ...})', errors=where)
        body["config"] = config
    return body


def _submit(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    caller: Caller,
    values: Mapping[str, Any],
) -> Response | tuple[int, str, str | None]:
    """The job submitted as ``POST /jobs`` would (a redirect to its page), or the API's
    problem: (status, message, field)."""
    try:
        spec = JobSpec.model_validate(spec_body(values))
        job = job_service.submit(spec, session, caller, services)
    except (ApiError, UserError, ValidationError) as exc:
        session.rollback()
        message, field = problem_of(exc)
        return exc.status if isinstance(exc, ApiError) else 422, message, field
    root, _api = base_paths(request)
    return RedirectResponse(f"{root}/jobs/{job.id}", status_code=303)


@router.post("/jobs/new", response_class=HTMLResponse)
def submit(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    caller: UiCallerDep,
    form: FormDep,
) -> Response:
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    answer = _submit(request, services, session, caller, values)
    if isinstance(answer, Response):
        return answer
    status, message, field = answer
    return render(
        request,
        services,
        "job_new.html",
        status,
        values=values,
        message=message,
        field=field,
        **_choices(session, caller),
    )


@router.post("/jobs/cross-validate", response_class=HTMLResponse)
def submit_cross_validation(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    caller: UiCallerDep,
    form: FormDep,
) -> Response:
    values: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
    values["kind"] = JobKind.cross_validate.value
    values["models"] = [m for m in form.getlist("models") if isinstance(m, str)]
    answer = _submit(request, services, session, caller, values)
    if isinstance(answer, Response):
        return answer
    status, message, field = answer
    return _cv_form(
        request, services, session, caller, values, status, message=message, field=field
    )


def _job_page(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    job: Job,
    status: int = 200,
    message: str | None = None,
) -> Response:
    lines = get_logs(session, job.id, 0, MAX_LOG_PAGE)[-LOG_TAIL:]
    document = JobOut.from_row(job)
    return render(
        request,
        services,
        "job.html",
        status,
        job=document,
        logs=lines,
        message=message,
        terminal=job.state in {s.value for s in TERMINAL_STATES},
        monitor=monitor_of(document),
        fold_label=fold_label,
        **_results(session, document, job.owner),
    )


def monitor_of(job: JobOut) -> str:
    """The metric a job's early stopping follows, as far as the job says: its best epoch's,
    the report's, the config's, else the default for a regression target (``mae``); ``""``
    when it is the loss or unknown (the metric curve then shows the first metric recorded)."""
    config = job.spec.get("config") or {}
    target = job.spec.get("target") or {}
    default = "mae" if job.kind == JobKind.train and target.get("task") == "regression" else ""
    name = job.best.metric or (job.report or {}).get("monitor") or config.get("monitor") or default
    return "" if name == "loss" else str(name)


def baseline_rows(job: JobOut, model_metrics: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Validation metrics of the model beside its baselines: one row per metric a baseline
    recorded (``metric``, ``model``, ``random_forest``, ``constant``, ``depth``; ``None`` where
    unknown). The model's numbers are its best epoch's once registered, else the latest
    epoch's; the random forest's come from the job (``metrics.baseline``), the constant's from
    the model, the depth model's from the model or else the job's report."""
    model_metrics = model_metrics or {}
    baselines = model_metrics.get("baselines") or {}
    forest = job.metrics.baseline.get("metrics") or (
        (baselines.get("random_forest") or {}).get("validation") or {}
    )
    constant = (baselines.get("constant") or {}).get("validation") or {}
    depth = (baselines.get("depth") or {}).get("validation") or (
        ((job.report or {}).get("depth_baseline") or {}).get("metrics") or {}
    )
    model = (model_metrics.get("best") or {}).get("validation") or job.metrics.validation
    names = [n for n in {**forest, **constant, **depth} if not n.startswith("loss")]
    monitor = monitor_of(job)
    names.sort(key=lambda n: n != monitor)  # stable: the monitored metric first
    return [
        {
            "metric": n,
            "model": model.get(n),
            "random_forest": forest.get(n),
            "constant": constant.get(n),
            "depth": depth.get(n),
        }
        for n in names
    ]


def _results(session: SessionDep, job: JobOut, owner: str | None) -> dict[str, Any]:
    """A train job's baseline rows (``baselines``; ``None`` for other kinds: no table at all),
    a cross_validate job's results (``cv``: None until it has a report) and the job's
    depth-confound warning (``depth_warning``: a train job's model's verdict, else its
    report's; a cross_validate job's on its cross-validated figures)."""
    if job.kind == JobKind.cross_validate:
        cv = cross_validation_view(job)
        warning = None if cv is None else cv.depth_warning
        return {"baselines": None, "cv": cv, "depth_warning": warning}
    if job.kind != JobKind.train:
        return {"baselines": None, "cv": None, "depth_warning": None}
    model = get_model(session, job.model_id, owner) if job.model_id else None
    metrics = model.metrics if model is not None else None
    return {
        "baselines": baseline_rows(job, metrics),
        "cv": None,
        "depth_warning": depth_warning(metrics, job.report),
    }


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(
    job_id: str,
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    caller: UiCallerDep,
) -> Response:
    return _job_page(request, services, session, job_or_404(job_id, session, caller))


@router.get("/jobs/{job_id}/baselines", response_class=HTMLResponse)
def baselines_fragment(
    job_id: str,
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    caller: UiCallerDep,
) -> Response:
    """The job page's baseline table alone, which job.js swaps in when the job's state changes."""
    job = JobOut.from_row(job_or_404(job_id, session, caller))
    return render(request, services, "job_baselines.html", **_results(session, job, caller.scope))


@router.get("/jobs/{job_id}/cross-validation", response_class=HTMLResponse)
def cross_validation_fragment(
    job_id: str,
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    caller: UiCallerDep,
) -> Response:
    """A cross_validate job's results alone, which job.js swaps in once the job has finished."""
    job = JobOut.from_row(job_or_404(job_id, session, caller))
    return render(
        request,
        services,
        "job_cross_validation.html",
        job=job,
        **_results(session, job, caller.scope),
    )


@router.post("/jobs/{job_id}/cancel", response_class=HTMLResponse)
def cancel(
    job_id: str,
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    caller: UiCallerDep,
    _: FormDep,
) -> Response:
    job = job_or_404(job_id, session, caller)
    try:
        job_service.cancel(job, session)
    except ApiError as exc:
        session.rollback()
        job = job_or_404(job_id, session, caller)  # read again after the rollback
        return _job_page(request, services, session, job, exc.status, exc.detail)
    root, _api = base_paths(request)
    return RedirectResponse(f"{root}/jobs/{job_id}", status_code=303)
