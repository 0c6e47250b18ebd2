"""A job spec checked against what it names, before it is queued: the dataset, the base model or
the model to apply, and the run configuration aam_core will build from it. A job that cannot
run is refused at submission (422) instead of failing later in a worker.

Rules beyond aam_core's own (stated here because the API promises them):

- a dataset or model that does not exist, or is another owner's, is a 422 naming the body
  field (``dataset_id``, ``base_model_id``, ``model_id``): the request URL exists, its body
  points nowhere;
- classification takes a categorical column, or a numeric column of integer codes with at most
  ``MAX_NUMERIC_CLASSES`` distinct values (the rule of aam_core's ``target_values``);
- several GPUs need a full batch each per step: ``gpus x batch_size`` may not exceed the
  dataset's training samples;
- a predict job takes only ``passes`` and ``seed`` (the rest comes from the model);
  ``passes`` is for predict jobs only, ``target_loss``/``class_weights`` for train jobs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from aam_core.io import preview, read_metadata
from aam_core.model.config import AAMConfig, ConfigError, TargetConfig
from aam_core.train.callbacks import CallbackList
from aam_core.train.config import RunConfig, Stage
from aam_core.train.prepare import MAX_NUMERIC_CLASSES
from aam_core.train.stages import adopt_encoder_preprocessing
from app.api.errors import ApiError
from app.contracts import JobKind, JobSpec, TargetSpec
from app.store import ArtifactStore, Dataset, Model, get_dataset, get_model

PREDICT_KEYS = ("passes", "seed")  # what the worker passes to Predictor.predict
TRAIN_ONLY_KEYS = ("target_loss", "class_weights")


@dataclass(frozen=True, eq=False)
class CheckedJob:
    spec: JobSpec
    dataset: Dataset
    model: Model | None = None  # predict: the model applied


def invalid(field: str, message: str, *, kind: str = "invalid-job") -> ApiError:
    """A 422 whose detail starts with the offending body field."""
    loc = ["body", *field.split(".")]
    return ApiError(422, f"{field}: {message}", kind=kind, errors=[{"loc": loc, "msg": message}])


def check_job(
    session: Session,
    storage: ArtifactStore,
    owner: str | None,
    spec: JobSpec,
) -> CheckedJob:
    """Everything the worker would find wrong with ``spec``, as a 422 now. ``owner`` is the
    caller's scope (None: an admin, who may use anyone's datasets and models); the caller checks
    that the dataset still exists when it inserts the job."""
    dataset = get_dataset(session, spec.dataset_id, owner)
    if dataset is None:  # another owner's dataset reads exactly like a missing one
        raise invalid("dataset_id", f"dataset {spec.dataset_id!r} does not exist")
    _check_config_keys(spec)
    if spec.kind == JobKind.predict:
        assert spec.model_id is not None  # JobSpec's validator
        model = _usable_model(session, storage, spec.model_id, owner, "model_id")
        if model.kind == "encoder":
            raise invalid(
                "model_id",
                f"model {model.id!r} is an encoder (from pretraining) and predicts no target; a "
                "predict job applies a regressor or classifier (train one with a train job and "
                "base_model_id, or ask POST /predict for output 'embedding')",
            )
        preprocessing = model.config.get("preprocessing") or {}
        if not preprocessing.get("truncate", False):
            _check_lengths(dataset, int(preprocessing.get("max_bp", 150)), "model_id", model)
        return CheckedJob(spec=spec, dataset=dataset, model=model)

    base = None
    if spec.base_model_id is not None:
        base = _usable_model(session, storage, spec.base_model_id, owner, "base_model_id")
    run = _run_config(spec, base)
    if spec.target is not None:
        _check_target(storage, dataset, spec.target)
    _check_group(dataset, run)
    _check_phylogeny(dataset, run, "pretrain" if spec.kind == JobKind.pretrain else "train")
    depth_from_base = base is not None and spec.config.rarefaction_depth is None
    _check_depth_and_lengths(dataset, run, base, depth_from_base=depth_from_base)
    _check_gpus(dataset, run)
    return CheckedJob(spec=spec, dataset=dataset)


def check_still_there(session: Session, spec: JobSpec) -> None:
    """Inside the insert's write transaction: the dataset and models the checks read still
    exist (a concurrent DELETE may have removed one since). One indexed lookup each."""
    if not session.scalar(select(exists().where(Dataset.id == spec.dataset_id))):
        raise invalid("dataset_id", f"dataset {spec.dataset_id!r} does not exist")
    for field, model_id in (("base_model_id", spec.base_model_id), ("model_id", spec.model_id)):
        if model_id is not None and not session.scalar(
            select(exists().where(Model.id == model_id))
        ):
            raise invalid(field, f"model {model_id!r} does not exist")


# -- what the spec names ----------------------------------------------------------------------


def _usable_model(
    session: Session, storage: ArtifactStore, model_id: str, owner: str | None, field: str
) -> Model:
    model = get_model(session, model_id, owner)
    if model is None:
        raise invalid(field, f"model {model_id!r} does not exist")
    if not storage.exists(model.checkpoint_sha256):
        raise invalid(
            field,
            f"the checkpoint file of model {model_id!r} ({model.checkpoint_sha256[:12]}...) is "
            "missing from artifact storage; import the model again",
        )
    return model


def _architecture(model: Model) -> AAMConfig:
    """The stored architecture of a base model; a 422 when it no longer rebuilds."""
    try:
        return AAMConfig.from_dict(model.config["model"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise invalid(
            "base_model_id",
            f"model {model.id!r} ({model.kind}) has no loadable encoder architecture "
            f"({exc}); import its checkpoint again",
        ) from None


def _check_config_keys(spec: JobSpec) -> None:
    given = sorted(spec.config.model_dump(exclude_none=True))
    if spec.kind == JobKind.predict:
        extra = [key for key in given if key not in PREDICT_KEYS]
        if extra:
            raise invalid(
                f"config.{extra[0]}",
                "does not apply to a predict job; it takes only passes and seed (everything "
                "else comes from the model)",
            )
        return
    if "passes" in given:
        raise invalid("config.passes", "is for predict jobs (rarefaction passes per sample)")
    if spec.kind == JobKind.pretrain:
        for key in TRAIN_ONLY_KEYS:
            if key in given:
                raise invalid(f"config.{key}", "is for train jobs; a pretrain job has no target")


# -- the run configuration --------------------------------------------------------------------


def _run_config(spec: JobSpec, base: Model | None) -> RunConfig:
    """The RunConfig the worker builds, with a base model's preprocessing adopted as aam_core's
    ``run_train`` does; its ConfigError (and the model config's) as a 422 naming ``config``."""
    values = spec.config.run_config_values()
    try:
        run = RunConfig.from_mapping(values)
        if base is not None:
            encoder = _architecture(base)
            have = {"max_bp": encoder.nucleotide.max_bp, "token_limit": encoder.sample.token_limit}
            clash = [f"{k}={values[k]} (model has {v})" for k, v in have.items()
                     if k in values and values[k] != v]  # fmt: skip
            if clash:
                raise ConfigError(
                    f"preprocessing differs from base model {base.id!r}: {', '.join(clash)}; a "
                    "fine-tuned model reads ASVs as its base was trained to (leave these unset)"
                )
            preprocessing = dict(base.config.get("preprocessing") or {})
            run = adopt_encoder_preprocessing(run, encoder, preprocessing, CallbackList())
            head = _head(spec.target, run, encoder.dim)
            AAMConfig(
                nucleotide=encoder.nucleotide,
                sample=encoder.sample,
                target=head,
                loss_weights=run.weights("train"),
            )
        elif spec.kind == JobKind.pretrain:
            run.model_config("pretrain")
        else:
            run.model_config("train", _head(spec.target, run, run.dim))
    except ConfigError as exc:
        raise invalid("config", str(exc), kind="invalid-config") from None
    return run


def _head(target: TargetSpec | None, run: RunConfig, hidden: int) -> TargetConfig:
    assert target is not None  # JobSpec's validator: a train job has a target
    classes = 2 if target.task == "classification" else 1  # the real count comes from the data
    return TargetConfig(task=target.task, out_dim=classes, hidden=hidden, loss=run.target_loss)


# -- the dataset ------------------------------------------------------------------------------


def _columns(dataset: Dataset) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in dataset.summary.get("metadata_columns", [])}


def _missing_column(dataset: Dataset, column: str, what: str) -> str:
    names = list(_columns(dataset))
    if not names:
        return f"dataset {dataset.id!r} has no metadata; {what} {column!r} needs a metadata file"
    return (
        f"{column!r} is not a metadata column of dataset {dataset.id!r} "
        f"(columns: {preview(names, 8)})"
    )


def _numeric_values(storage: ArtifactStore, dataset: Dataset, column: str) -> np.ndarray:
    """The distinct values of a numeric column, read from the dataset's metadata file (the
    summary keeps only counts). Values of every metadata row: a file may describe more samples
    than the table."""
    entry = dataset.files["metadata"]
    try:
        path = storage.path(entry["sha256"])
    except KeyError:
        raise ApiError(
            409,
            f"the metadata file of dataset {dataset.id!r} is missing from artifact storage; "
            "upload the dataset again",
        ) from None
    series = read_metadata(path, name=entry.get("name")).frame[column]
    values = series.to_numpy(dtype=np.float64)
    return np.unique(values[np.isfinite(values)])


def _check_target(storage: ArtifactStore, dataset: Dataset, target: TargetSpec) -> None:
    column = _columns(dataset).get(target.column)
    if column is None:
        raise invalid("target.column", _missing_column(dataset, target.column, "target column"))
    n_samples = int(dataset.summary.get("n_samples", 0))
    if int(column.get("n_missing", 0)) >= n_samples:
        raise invalid(
            "target.column", f"{target.column!r} has no value for any of the {n_samples} samples"
        )
    name = repr(target.column)
    if target.task == "regression":
        if column["kind"] != "numeric":
            raise invalid(
                "target.column",
                f"{name} is categorical; regression needs a numeric column (use task "
                "'classification' for labels)",
            )
        distinct = _numeric_values(storage, dataset, target.column)
        if distinct.size < 2:
            raise invalid("target.column", f"{name} has fewer than 2 distinct values")
        return
    if column["kind"] == "numeric":
        distinct = _numeric_values(storage, dataset, target.column)
        if (distinct != np.round(distinct)).any() or distinct.size > MAX_NUMERIC_CLASSES:
            raise invalid(
                "target.column",
                f"{name} is numeric with {distinct.size} distinct values; classification needs "
                f"labels: a categorical column, or integer codes with at most "
                f"{MAX_NUMERIC_CLASSES} distinct values (use task 'regression' for a measurement)",
            )
        n_classes = int(distinct.size)
    else:
        n_classes = int(column.get("n_classes") or 0)
    if n_classes < 2:
        message = f"{name} has {n_classes} class(es); classification needs at least 2"
        raise invalid("target.column", message)


def _check_group(dataset: Dataset, run: RunConfig) -> None:
    if run.group_column is not None and run.group_column not in _columns(dataset):
        raise invalid(
            "config.group_column", _missing_column(dataset, run.group_column, "group_column")
        )


def _check_phylogeny(dataset: Dataset, run: RunConfig, stage: Stage) -> None:
    weights = run.weights(stage)
    has_tree = bool(dataset.summary.get("has_tree", "tree" in dataset.files))
    if weights.faith_pd > 0 and not has_tree:
        raise invalid(
            "dataset_id",
            f"dataset {dataset.id!r} has no phylogenetic tree; the Faith PD loss "
            f"(loss_weights.faith_pd = {weights.faith_pd:g}) needs one: upload the dataset with "
            "a tree, or set config.loss_weights.faith_pd to 0",
        )
    if weights.unifrac > 0 and not has_tree and "distance_matrix" not in dataset.files:
        raise invalid(
            "dataset_id",
            f"dataset {dataset.id!r} has no phylogenetic tree or UniFrac distance matrix; the "
            f"UniFrac loss (loss_weights.unifrac = {weights.unifrac:g}) needs one: upload the "
            "dataset with a tree (or a distance matrix), or set config.loss_weights.unifrac to 0",
        )


def _check_lengths(dataset: Dataset, max_bp: int, field: str, model: Model | None) -> None:
    """Sequences longer than max_bp fail tokenisation unless truncation is on."""
    longest = int((dataset.summary.get("sequence_length") or {}).get("max", 0))
    if longest <= max_bp:
        return
    start = f"dataset {dataset.id!r} has sequences of up to {longest} bp"
    if model is None:
        raise invalid(
            field,
            f"{start}, longer than max_bp={max_bp}: set max_bp to at least {longest}, or "
            "truncate: true",
        )
    raise invalid(
        field,
        f"{start}, longer than the {max_bp} bp model {model.id!r} was trained to read "
        "(without truncation)",
    )


def _check_depth_and_lengths(
    dataset: Dataset, run: RunConfig, base: Model | None, *, depth_from_base: bool
) -> None:
    deepest = (dataset.summary.get("sample_depth") or {}).get("max")
    depth = run.rarefaction_depth
    if depth is not None and deepest is not None and depth > deepest:
        beyond = f"deeper than every sample of dataset {dataset.id!r} (the deepest has {deepest})"
        if base is not None and depth_from_base:
            raise invalid(
                "base_model_id",
                f"model {base.id!r} was trained at {depth} reads, {beyond}: rarefaction would "
                "drop them all; set config.rarefaction_depth",
            )
        raise invalid(
            "config.rarefaction_depth",
            f"{depth} reads is {beyond}: rarefaction would drop them all",
        )
    if not run.truncate:
        _check_lengths(dataset, run.max_bp, "base_model_id" if base else "config.max_bp", base)


def _check_gpus(dataset: Dataset, run: RunConfig) -> None:
    if run.gpus == 1:
        return
    n_samples = int(dataset.summary.get("n_samples", 0))
    n_train = n_samples - math.ceil(n_samples * run.validation_fraction)
    if run.gpus * run.batch_size > n_train:
        raise invalid(
            "config.gpus",
            f"{run.gpus} GPUs x batch_size {run.batch_size} = {run.gpus * run.batch_size} "
            f"samples per step, but dataset {dataset.id!r} has at most {n_train} training "
            f"samples ({n_samples} samples, validation_fraction {run.validation_fraction:g}); "
            "every GPU needs a full batch: ask for fewer GPUs",
        )
