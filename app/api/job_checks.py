"""A job spec checked before it is queued: the API looks up what the spec names (the dataset,
the base model or the model to apply, each the caller's own) and hands them to aam_core's run
planner, which refuses whatever would make the job fail in a worker. Every refusal is a
:class:`~aam_core.errors.UserError` naming the body field: a 422.

A dataset or model that does not exist, or is another owner's, is a 422 naming the body field
(``dataset_id``, ``base_model_id``, ``model_id``): the request URL exists, its body points
nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from aam_core.errors import UserError
from aam_core.io import read_metadata
from aam_core.io.metadata import describe
from aam_core.plan import DatasetFacts, Kind, ModelFacts, check_request, plan_run
from aam_core.plan.crossval import CrossValidation, plan_cross_validation
from app.api.errors import ApiError
from app.contracts import JobKind, JobSpec, given_config
from app.store import ArtifactStore, Dataset, Model, get_dataset, get_model


@dataclass(frozen=True, eq=False)
class CheckedJob:
    spec: JobSpec
    dataset: Dataset
    model: Model | None = None  # predict: the model applied


def check_job(
    session: Session, storage: ArtifactStore, owner: str | None, spec: JobSpec
) -> CheckedJob:
    """Everything the worker would find wrong with ``spec``, as a 422 now. ``owner`` is the
    caller's scope (None: an admin, who may use anyone's datasets and models); the caller checks
    that the dataset still exists when it inserts the job."""
    check_request(
        spec.kind.value,
        target=spec.target,
        model_id=spec.model_id,
        base_model_id=spec.base_model_id,
        freeze_base=spec.freeze_base,
        cross_validation=spec.cv is not None or bool(spec.refit),
    )
    dataset = get_dataset(session, spec.dataset_id, owner)
    if dataset is None:  # another owner's dataset reads exactly like a missing one
        raise UserError(f"dataset {spec.dataset_id!r} does not exist", field="dataset_id")
    facts = DatasetFacts(
        f"dataset {dataset.id!r}",
        _complete_summary(storage, dataset),
        has_distance_matrix="distance_matrix" in dataset.files,
    )
    config = given_config(spec.config)
    if spec.kind == JobKind.predict:
        assert spec.model_id is not None  # check_request
        model = _usable_model(session, storage, spec.model_id, owner, "model_id")
        plan_run("predict", config, facts, base=_base(model, "model_id"), model_kind=spec.model)
        return CheckedJob(spec=spec, dataset=dataset, model=model)
    target = spec.target
    if spec.kind == JobKind.cross_validate:
        assert target is not None  # check_request
        cv = CrossValidation.from_mapping(None if spec.cv is None else spec.cv.model_dump())
        plan_cross_validation(config, facts, cv, target=target, model_kind=spec.model)
        return CheckedJob(spec=spec, dataset=dataset)
    base = None
    if spec.base_model_id is not None:
        found = _usable_model(session, storage, spec.base_model_id, owner, "base_model_id")
        base = _base(found, "base_model_id")
    kind: Kind = "pretrain" if spec.kind == JobKind.pretrain else "train"
    plan_run(
        kind,
        config,
        facts,
        target=target,
        base=base,
        freeze_base=spec.freeze_base,
        model_kind=spec.model,
    )
    return CheckedJob(spec=spec, dataset=dataset)


def check_still_there(session: Session, spec: JobSpec) -> None:
    """Inside the insert's write transaction: the dataset and models the checks read still
    exist (a concurrent DELETE may have removed one since). One indexed lookup each."""
    if not session.scalar(select(exists().where(Dataset.id == spec.dataset_id))):
        raise UserError(f"dataset {spec.dataset_id!r} does not exist", field="dataset_id")
    for field, model_id in (("base_model_id", spec.base_model_id), ("model_id", spec.model_id)):
        if model_id is not None and not session.scalar(
            select(exists().where(Model.id == model_id))
        ):
            raise UserError(f"model {model_id!r} does not exist", field=field)


def _usable_model(
    session: Session, storage: ArtifactStore, model_id: str, owner: str | None, field: str
) -> Model:
    model = get_model(session, model_id, owner)
    if model is None:
        raise UserError(f"model {model_id!r} does not exist", field=field)
    if not storage.exists(model.checkpoint_sha256):
        raise UserError(
            f"the checkpoint file of model {model_id!r} ({model.checkpoint_sha256[:12]}...) is "
            "missing from artifact storage; import the model again",
            field=field,
        )
    return model


def _base(model: Model, field: str) -> ModelFacts:
    config = model.config or {}
    return ModelFacts(
        where=f"model {model.id!r}",
        kind=model.kind,
        model=config.get("model") or {},
        preprocessing=config.get("preprocessing") or {},
        field=field,
    )


def _complete_summary(storage: ArtifactStore, dataset: Dataset) -> dict[str, Any]:
    """The dataset's summary, with the distinct values of numeric metadata columns (which the
    target rule reads) filled in from its metadata file for a dataset uploaded before the
    summary held them."""
    summary = dict(dataset.summary)
    columns = summary.get("metadata_columns") or []
    if all("n_distinct" in c for c in columns if c.get("kind") == "numeric"):
        return summary
    entry = dataset.files["metadata"]
    try:
        path = storage.path(entry["sha256"])
    except KeyError:
        raise ApiError(
            409,
            f"the metadata file of dataset {dataset.id!r} is missing from artifact storage; "
            "upload the dataset again",
        ) from None
    metadata = read_metadata(path, name=entry.get("name"))
    described = {c.name: describe(c.name, c.kind, metadata.frame[c.name]) for c in metadata.columns}
    summary["metadata_columns"] = [
        {
            **c,
            "n_distinct": described[c["name"]].n_distinct,
            "integer": described[c["name"]].integer,
        }
        if c.get("kind") == "numeric" and c["name"] in described
        else c
        for c in columns
    ]
    return summary
