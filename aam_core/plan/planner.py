"""The run planner: from a job's kind, its config mapping, the dataset's summary and the base
model's checkpoint information to the resolved run, or a :class:`~aam_core.errors.UserError`
naming the field to fix.

It is torch-free and reads no files: the API calls it at submission (so that a job that cannot
run is refused with a 422, not failed later), the command-line tool and the worker's child
before they train (``aam_core.train.local_plan.plan_local`` gathers the same facts from files).
Every rule about which settings, targets and base models go together lives here once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aam_core.errors import ConfigError, UserError
from aam_core.io.types import ROLES
from aam_core.model.config import AAMConfig, TargetConfig
from aam_core.plan.config import RunConfig, Stage, field_names, run_settings, setting_runs
from aam_core.plan.targets import TargetSpec, check_target, missing_column

Kind = Literal["pretrain", "train", "predict"]  # a run
JobKind = Literal["pretrain", "train", "predict", "cross_validate"]  # a job runs one or several
ModelKind = Literal["aam", "ensemble", "auto"]  # what a train run registers (see below)
MODEL_KINDS: tuple[ModelKind, ...] = ("aam", "ensemble", "auto")
DEFAULT_MODEL_KIND: ModelKind = "aam"
# The dataset files each kind of run reads (of aam_core.io.ROLES).
KIND_ROLES: dict[str, tuple[str, ...]] = {
    "pretrain": ROLES,  # metadata for group_column, where the dataset has it
    "train": ROLES,
    "predict": ("table", "sequences"),
    "cross_validate": ROLES,  # trains in every fold (and pretrains, with a tree)
}


@dataclass(frozen=True)
class DatasetFacts:
    """What the planner reads of a dataset: its summary (``aam_core.io.summarize``; the API
    stores it with the dataset) and which optional files it has."""

    where: str  # how messages name it: "dataset 'ds_1'", "the dataset"
    summary: Mapping[str, Any]
    has_distance_matrix: bool = False

    @property
    def columns(self) -> list[Mapping[str, Any]]:
        return list(self.summary.get("metadata_columns") or [])

    @property
    def n_samples(self) -> int:
        return int(self.summary.get("n_samples", 0))

    def n_train(self, validation_fraction: float) -> int:
        """The samples a random split leaves for training."""
        return self.n_samples - math.ceil(self.n_samples * validation_fraction)


@dataclass(frozen=True)
class ModelFacts:
    """A checkpoint a run starts from (train) or applies (predict), as its stored config."""

    where: str  # "model 'mdl_1'", "encoder 'runs/enc/best.pt'"
    kind: str  # encoder | regressor | classifier
    model: Mapping[str, Any]  # AAMConfig.to_dict()
    preprocessing: Mapping[str, Any]  # max_bp, token_limit, truncate, rarefaction_depth
    field: str = "base_model_id"  # the request field (or option) that named it
    path: str | None = None  # the checkpoint file, where the caller has one


@dataclass(frozen=True)
class ResolvedRun:
    kind: Kind
    config: RunConfig  # with a base model's preprocessing adopted
    model: AAMConfig | None  # what pretrain/train builds (classes counted from the summary)
    target: TargetSpec | None = None
    base: ModelFacts | None = None
    freeze_base: bool = False
    notes: tuple[str, ...] = ()  # what the planner decided for the user, for the run's log
    # train: AAM alone, AAM blended with a random forest, or the better of AAM, the forest and
    # their blend on the validation split (aam_core.train.ensemble)
    model_kind: ModelKind = "aam"


def plan_run(
    kind: Kind,
    config: Mapping[str, Any],
    dataset: DatasetFacts,
    *,
    target: TargetSpec | None = None,
    base: ModelFacts | None = None,
    freeze_base: bool = False,
    model_kind: ModelKind | None = None,
    device: str | None = None,
) -> ResolvedRun:
    """Resolve a run, or raise the first :class:`UserError` it would meet. ``model_kind``
    is for train runs (None: the default, :data:`DEFAULT_MODEL_KIND`). ``device`` ("cpu",
    "cuda", "cuda:1"; None: not known yet, as at submission) resolves ``preset="auto"``."""
    _check_keys(kind, config)
    if model_kind is not None and kind != "train":
        raise UserError(f"model is for train jobs; a {kind} job takes none", field="model")
    if model_kind is not None and model_kind not in MODEL_KINDS:
        raise UserError(
            f"model must be one of {', '.join(repr(k) for k in MODEL_KINDS)}, got {model_kind!r}",
            field="model",
        )
    run = RunConfig.from_mapping(config)
    if kind == "predict":
        assert base is not None, "a prediction applies a model"
        return _plan_predict(run, dataset, base)
    assert kind == "pretrain" or target is not None, "check_request: a train run has a target"
    if freeze_base and base is None:
        message = "freeze_base needs a pretrained encoder to start from"
        raise ConfigError(message, field="freeze_base")
    notes: tuple[str, ...] = ()
    n_classes = None
    if target is not None:
        n_classes = check_target(target, dataset.columns, dataset.n_samples, dataset.where)
    if base is not None:
        run, notes = _adopt_base(run, config, base)
    elif device is not None and run.preset == "auto":
        run = run.for_device(device.split(":")[0])
        notes = (f"preset auto: {run.preset} (a run on {device})",)
    if run.batch_size is None:  # decided now, from the train split the dataset's size gives
        n_train = dataset.n_train(run.validation_fraction)
        run = run.replace(batch_size=run.resolved("train", n_train).batch_size)
        notes += (f"batch_size {run.batch_size} (an eighth of the train split, 16 to 64)",)
    stage: Stage = "pretrain" if kind == "pretrain" else "train"
    model = _model_config(run, stage, target, n_classes, base)
    _check_group(run, dataset)
    _check_phylogeny(run, stage, dataset)
    _check_depth(run, dataset, base, explicit="rarefaction_depth" in config)
    _check_lengths(run.max_bp, run.truncate, dataset, base)
    _check_gpus(run, dataset)
    chosen: ModelKind = (model_kind or DEFAULT_MODEL_KIND) if kind == "train" else "aam"
    if run.refit != "none" and chosen != "aam":
        raise ConfigError(
            f"refit is for model 'aam': a {chosen!r} model blends in a forest chosen on the "
            "validation split, which a refit would train on",
            field="config.refit",
        )
    return ResolvedRun(kind, run, model, target, base, freeze_base, notes, chosen)


def check_request(
    kind: JobKind,
    *,
    target: TargetSpec | None,
    model_id: str | None,
    base_model_id: str | None,
    freeze_base: bool,
    cross_validation: bool,
) -> None:
    """Which of a job request's parts go with its kind (the REST body's fields; the command
    line's commands take them as their own arguments): a target for train and cross_validate
    jobs alone, the model to apply for predict jobs, a base model (frozen or not) for train
    jobs, ``cv`` and ``refit`` for cross_validate jobs. :func:`plan_run` then checks the
    settings, the model kind and that ``freeze_base`` has a base."""
    targeted = kind in ("train", "cross_validate")
    if targeted and target is None:
        raise UserError(
            f"a {kind} job needs a target: {{'column': ..., 'task': ...}}", field="target"
        )
    if not targeted and target is not None:
        raise UserError(f"a {kind} job takes no target", field="target")
    if kind != "cross_validate" and cross_validation:
        raise UserError("cv and refit are for cross_validate jobs", field="cv")
    if kind == "predict" and model_id is None:
        raise UserError("a predict job needs model_id (the model to apply)", field="model_id")
    if kind != "predict" and model_id is not None:
        raise UserError(
            f"model_id is for predict jobs; a {kind} job registers one", field="model_id"
        )
    for name, given in (("base_model_id", base_model_id is not None), ("freeze_base", freeze_base)):
        if given and kind != "train":
            raise UserError(f"{name} is for train jobs (fine-tuning)", field=name)


def _differing(given: Mapping[str, Any], has: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The settings ``given`` that differ from the base model's (``has``): (name, its value)."""
    return [(k, v) for k, v in has.items() if given.get(k) is not None and given[k] != v]


def _check_keys(kind: Kind, config: Mapping[str, Any]) -> None:
    """Refuse a setting that does not apply to ``kind`` (the settings' ``runs``), and the
    precisions of the other kind of run."""
    given = sorted(k for k, v in config.items() if v is not None)
    outside = [key for key in given if key in field_names() and key not in run_settings(kind)]
    if kind == "predict":
        if outside:
            takes = run_settings("predict")
            raise ConfigError(
                f"does not apply to a predict job; it takes only {', '.join(takes[:-1])} and "
                f"{takes[-1]} (everything else comes from the model)",
                field=f"config.{outside[0]}",
            )
        if config.get("precision") == "bf16":
            raise ConfigError(
                "bf16 is a training precision; prediction runs in fp32 (within 1e-5 relative) "
                "or fp64 (exact)",
                field="config.precision",
            )
        return
    if config.get("precision") == "fp64":
        raise ConfigError(
            "fp64 is prediction's exact mode; training runs in auto, fp32 or bf16",
            field="config.precision",
        )
    for key in outside:
        if "predict" in setting_runs(key):
            message = "is for predict jobs (rarefaction passes per sample)"
        else:  # a pretrain job given what only a train job takes
            message = "is for train jobs; a pretrain job has no target"
        raise ConfigError(message, field=f"config.{key}")


def _plan_predict(run: RunConfig, dataset: DatasetFacts, model: ModelFacts) -> ResolvedRun:
    if model.kind == "encoder":
        raise UserError(
            f"{model.where} is an encoder (from pretraining) and predicts no target; a "
            "predict job applies a regressor or classifier (train one with a train job and "
            "base_model_id, or ask POST /predict for output 'embedding')",
            field=model.field,
        )
    preprocessing = model.preprocessing
    max_bp = int(preprocessing.get("max_bp", 150))
    _check_lengths(max_bp, bool(preprocessing.get("truncate", False)), dataset, model)
    if run.precision == "auto":
        run = dataclasses.replace(run, precision="fp32")
    return ResolvedRun("predict", run, None, base=model)


def architecture(base: ModelFacts) -> AAMConfig:
    """The stored architecture of a base model; a UserError when it no longer rebuilds."""
    try:
        return AAMConfig.from_dict(dict(base.model))
    except (KeyError, TypeError, ConfigError) as exc:
        raise UserError(
            f"{base.where} ({base.kind}) has no loadable encoder architecture ({exc}); import "
            "its checkpoint again",
            field=base.field,
        ) from None


def _adopt_base(
    run: RunConfig, given: Mapping[str, Any], base: ModelFacts
) -> tuple[RunConfig, tuple[str, ...]]:
    """A fine-tuned model reads ASVs as its encoder was trained to (its max_bp, token limit,
    truncation, and rarefaction depth unless the run sets one); settings given that differ
    from the encoder's architecture or preprocessing are an error."""
    encoder = architecture(base)
    has = {
        "embedding_dim": encoder.dim,
        "layers": encoder.sample.layers,
        "nucleotide_layers": encoder.nucleotide.layers,
        "heads": encoder.sample.heads,
        "dropout": encoder.sample.dropout,
    }
    clash = [f"{k}={given[k]} (encoder has {v})" for k, v in _differing(given, has)]
    if clash:
        raise ConfigError(
            f"architecture settings differ from the pretrained encoder: {', '.join(clash)}",
            field=f"config.{next(k for k in has if given.get(k) not in (None, has[k]))}",
        )
    reads = {"max_bp": encoder.nucleotide.max_bp, "token_limit": encoder.sample.token_limit}
    clash = [f"{k}={given[k]} (model has {v})" for k, v in _differing(given, reads)]
    if clash:
        raise ConfigError(
            f"preprocessing differs from base {base.where}: {', '.join(clash)}; a fine-tuned "
            "model reads ASVs as its base was trained to (leave these unset)",
            field=f"config.{next(k for k in reads if given.get(k) not in (None, reads[k]))}",
        )
    changes: dict[str, Any] = {
        **reads,
        "truncate": bool(base.preprocessing.get("truncate", run.truncate)),
    }
    if run.rarefaction_depth is None and base.preprocessing.get("rarefaction_depth"):
        changes["rarefaction_depth"] = int(base.preprocessing["rarefaction_depth"])
    differing = {k: v for k, v in changes.items() if getattr(run, k) != v}
    notes: tuple[str, ...] = ()
    if differing:
        adopted = ", ".join(f"{k}={v}" for k, v in differing.items())
        notes = (f"using the encoder's preprocessing: {adopted}",)
    if run.preset == "auto":  # the base's size sets the learning rate's scale
        changes["preset"] = "tiny" if encoder.dim <= AAMConfig.tiny().dim else "default"
    return run.replace(**changes), notes


def _model_config(
    run: RunConfig,
    stage: Stage,
    target: TargetSpec | None,
    n_classes: int | None,
    base: ModelFacts | None,
) -> AAMConfig:
    """The model the run builds; a rule it breaks is a ConfigError on ``config``."""
    try:
        head = None
        if target is not None:
            hidden = run.dim if base is None else architecture(base).dim
            head = TargetConfig(
                task=target.task,
                out_dim=n_classes or 1,
                hidden=hidden,
                loss=run.target_loss,
                pooling=run.target_pooling,
                linear=run.linear_head,
                linear_features="presence+log",
            )
        if base is None:
            return run.model_config(stage, head)
        return dataclasses.replace(architecture(base), target=head, loss_weights=run.weights(stage))
    except ConfigError as exc:
        if exc.field is not None:
            raise
        raise ConfigError(exc.message, field="config") from None


def _check_group(run: RunConfig, dataset: DatasetFacts) -> None:
    names = [c["name"] for c in dataset.columns]
    if run.group_column is not None and run.group_column not in names:
        raise ConfigError(
            missing_column(run.group_column, names, dataset.where, "group_column"),
            field="config.group_column",
        )


def _check_phylogeny(run: RunConfig, stage: Stage, dataset: DatasetFacts) -> None:
    weights = run.weights(stage)
    has_tree = bool(dataset.summary.get("has_tree"))
    where = dataset.where
    if weights.faith_pd > 0 and not has_tree:
        raise UserError(
            f"{where} has no phylogenetic tree; the Faith PD loss (loss_weights.faith_pd = "
            f"{weights.faith_pd:g}) needs one: upload the dataset with a tree, or set "
            "config.loss_weights.faith_pd to 0",
            field="dataset_id",
        )
    if weights.unifrac > 0 and not has_tree and not dataset.has_distance_matrix:
        raise UserError(
            f"{where} has no phylogenetic tree or UniFrac distance matrix; the UniFrac loss "
            f"(loss_weights.unifrac = {weights.unifrac:g}) needs one: upload the dataset with "
            "a tree (or a distance matrix), or set config.loss_weights.unifrac to 0",
            field="dataset_id",
        )


def _check_depth(
    run: RunConfig, dataset: DatasetFacts, base: ModelFacts | None, *, explicit: bool
) -> None:
    deepest = (dataset.summary.get("sample_depth") or {}).get("max")
    depth = run.rarefaction_depth
    if depth is None or deepest is None or depth <= deepest:
        return
    beyond = f"deeper than every sample of {dataset.where} (the deepest has {deepest})"
    if base is not None and not explicit:
        raise UserError(
            f"{base.where} was trained at {depth} reads, {beyond}: rarefaction would drop them "
            "all; set config.rarefaction_depth",
            field=base.field,
        )
    raise ConfigError(
        f"{depth} reads is {beyond}: rarefaction would drop them all",
        field="config.rarefaction_depth",
    )


def _check_lengths(
    max_bp: int, truncate: bool, dataset: DatasetFacts, model: ModelFacts | None
) -> None:
    """Sequences longer than max_bp fail tokenisation unless truncation is on."""
    longest = int((dataset.summary.get("sequence_length") or {}).get("max", 0))
    if truncate or longest <= max_bp:
        return
    start = f"{dataset.where} has sequences of up to {longest} bp"
    if model is None:
        raise ConfigError(
            f"{start}, longer than max_bp={max_bp}: set max_bp to at least {longest}, or "
            "truncate: true",
            field="config.max_bp",
        )
    raise UserError(
        f"{start}, longer than the {max_bp} bp {model.where} was trained to read (without "
        "truncation)",
        field=model.field,
    )


def _check_gpus(run: RunConfig, dataset: DatasetFacts) -> None:
    if run.gpus == 1:
        return
    n_samples, n_train = dataset.n_samples, dataset.n_train(run.validation_fraction)
    if run.gpus * run.batch > n_train:
        raise ConfigError(
            f"{run.gpus} GPUs x batch_size {run.batch} = {run.gpus * run.batch} "
            f"samples per step, but {dataset.where} has at most {n_train} training samples "
            f"({n_samples} samples, validation_fraction {run.validation_fraction:g}); every "
            "GPU needs a full batch: ask for fewer GPUs",
            field="config.gpus",
        )
