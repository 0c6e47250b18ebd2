"""The run planner and the one run configuration: every edge (REST, flags, config files)
resolves a run the same way, and every refusal is a UserError naming its field."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from typing import Any

import pytest

from aam_core.errors import ConfigError, UserError
from aam_core.io.errors import TargetError
from aam_core.model.config import AAMConfig
from aam_core.plan import DatasetFacts, ModelFacts, RunConfig, TargetSpec, plan_run
from aam_core.plan.config import Stage, run_settings, setting_fields

SUMMARY: dict[str, Any] = {
    "n_samples": 40,
    "sequence_length": {"min": 100, "max": 150},
    "sample_depth": {"min": 900, "median": 3000.0, "max": 8000},
    "has_tree": True,
    "metadata_columns": [
        {"name": "age", "kind": "numeric", "n_missing": 0, "n_distinct": 30, "integer": False},
        {"name": "visits", "kind": "numeric", "n_missing": 2, "n_distinct": 4, "integer": True},
        {"name": "site", "kind": "categorical", "n_missing": 0, "n_classes": 3},
        {"name": "subject", "kind": "categorical", "n_missing": 0, "n_classes": 10},
    ],
}
DATASET = DatasetFacts("dataset 'ds_1'", SUMMARY)
AGE = TargetSpec("age", "regression")


def encoder(**preprocessing: Any) -> ModelFacts:
    model = AAMConfig.tiny(nucleotide_mask_fraction=0.25, count_mask_fraction=0.3)
    return ModelFacts(
        where="model 'mdl_1'",
        kind="encoder",
        model=model.to_dict(),
        preprocessing={"max_bp": 150, "token_limit": 256, "truncate": False, **preprocessing},
    )


def refusal(error: type[UserError], **call: Any) -> UserError:
    kind = call.pop("kind", "train" if "target" in call else "pretrain")
    with pytest.raises(error) as info:
        plan_run(kind, call.pop("config", {}), call.pop("dataset", DATASET), **call)
    return info.value


def test_patience_zero_means_never_stop_early_everywhere() -> None:
    run = plan_run("train", {"patience": 0}, DATASET, target=AGE)
    assert run.config.patience == 0
    error = refusal(ConfigError, config={"patience": -1})
    assert (error.field, str(error)) == ("config.patience", "patience must be >= 0, got -1")


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"epochs": 0}, "config.epochs", "epochs must be >= 1, got 0"),
        ({"lr": 2}, "config.lr", "lr must be in (0, 1], got 2"),
        ({"batch_size": 1}, "config.batch_size",
         "batch_size must be >= 2 (UniFrac compares pairs), got 1"),
        ({"epochs": "3"}, "config.epochs", "epochs must be an integer, got '3'"),
        ({"truncate": 1}, "config.truncate", "truncate must be true or false, got 1"),
        ({"precision": "fp16"}, "config.precision",
         "precision must be one of 'auto', 'fp32', 'bf16', 'fp64', got 'fp16'"),
        ({"embedding_dim": 30, "heads": 4}, "config.heads",
         "embedding_dim (30) must be divisible by heads (4)"),
        ({"epoch": 3}, "config", "unknown config keys: epoch"),
        ({"loss_weights": {"unifrac": 0}}, "config", "at least one loss weight must be > 0"),
    ],
)  # fmt: skip
def test_settings_are_checked_against_their_bounds(
    config: dict[str, Any], field: str, message: str
) -> None:
    error = refusal(ConfigError, config=config)
    assert (error.field, str(error)) == (field, message)


def test_each_bound_is_declared_once_on_the_field() -> None:
    bounds = {f.name: f.metadata["bounds"] for f in setting_fields() if f.metadata["bounds"]}
    assert bounds["lr"] == {"gt": 0, "le": 1} and bounds["patience"] == {"ge": 0}
    for name, rule in bounds.items():  # the default of every bounded setting keeps its rule
        default = getattr(RunConfig(), name)
        if default is not None:
            RunConfig.from_mapping({name: default})
        assert all(key in ("ge", "gt", "le", "lt") for key in rule)


def test_keys_that_do_not_apply_to_the_kind_name_the_key() -> None:
    model = dataclasses.replace(encoder(), kind="regressor")
    error = refusal(ConfigError, kind="predict", config={"epochs": 2}, base=model)
    assert error.field == "config.epochs"
    assert str(error).startswith(
        "does not apply to a predict job; it takes only precision, seed and passes"
    )
    assert refusal(ConfigError, config={"passes": 3}).field == "config.passes"
    for kind, precision in (("train", "fp64"), ("pretrain", "fp64"), ("predict", "bf16")):
        base = model if kind == "predict" else None
        refused = refusal(ConfigError, kind=kind, config={"precision": precision}, base=base)
        assert refused.field == "config.precision"
    assert refusal(ConfigError, config={"class_weights": "balanced"}).field == (
        "config.class_weights"
    )
    run = plan_run("predict", {"passes": 5, "seed": 2}, DATASET, base=model)
    assert (run.config.passes, run.config.seed, run.model) == (5, 2, None)
    assert run.config.precision == "fp32"  # prediction's auto
    exact = plan_run("predict", {"precision": "fp64"}, DATASET, base=model)
    assert exact.config.precision == "fp64"


@pytest.mark.parametrize("kind", ["pretrain", "train", "predict"])
def test_a_run_takes_exactly_the_settings_whose_runs_name_it(kind: Any) -> None:
    """Each setting given alone, at its default: accepted where its ``runs`` name the kind,
    refused (naming it) everywhere else; the flags and the REST schema read the same list."""
    call: dict[str, Any] = {}
    if kind == "train":
        call["target"] = AGE
    if kind == "predict":
        call["base"] = dataclasses.replace(encoder(), kind="regressor")
    defaults = RunConfig().to_dict()
    takes = run_settings(kind)
    for name, default in defaults.items():
        if name not in takes:  # refused before its value is read
            refused = refusal(ConfigError, kind=kind, config={name: 1}, **call)
            assert refused.field == f"config.{name}"
        elif default not in (None, {}):
            plan_run(kind, {name: default}, DATASET, **call)
    assert "passes" in takes if kind == "predict" else "passes" not in takes
    assert ("target_loss" in takes) == (kind == "train")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (TargetSpec("height", "regression"), "'height' is not a metadata column of dataset "
         "'ds_1' (columns: 'age', 'visits', 'site', 'subject')"),
        (TargetSpec("site", "regression"), "'site' is categorical; regression needs a numeric "
         "column (use task 'classification' for labels)"),
        (TargetSpec("age", "classification"), "'age' is numeric with 30 distinct values; "
         "classification needs labels: a categorical column, or integer codes with at most 50 "
         "distinct values (use task 'regression' for a measurement)"),
    ],
)  # fmt: skip
def test_the_target_rule(target: TargetSpec, message: str) -> None:
    error = refusal(TargetError, target=target)
    assert (error.field, str(error)) == ("target.column", message)


def test_classes_are_counted_from_the_summary() -> None:
    site = plan_run("train", {}, DATASET, target=TargetSpec("site", "classification"))
    visits = plan_run("train", {}, DATASET, target=TargetSpec("visits", "classification"))
    assert site.model is not None and site.model.target is not None
    assert visits.model is not None and visits.model.target is not None
    assert (site.model.target.out_dim, visits.model.target.out_dim) == (3, 4)


def test_fine_tuning_keeps_the_encoder_s_model_and_reads_as_it_did() -> None:
    run = plan_run(
        "train", {"epochs": 3}, DATASET, target=AGE, base=encoder(rarefaction_depth=2000)
    )
    assert run.model is not None and run.model.target is not None
    # the whole stored architecture, masking fractions included (the API's copy lost them)
    assert (run.model.nucleotide_mask_fraction, run.model.count_mask_fraction) == (0.25, 0.3)
    assert run.model.nucleotide == AAMConfig.tiny().nucleotide
    assert (run.config.token_limit, run.config.rarefaction_depth) == (256, 2000)
    assert run.model.loss_weights.active() == {"target"}
    assert run.notes == (
        "using the encoder's preprocessing: token_limit=256, rarefaction_depth=2000",
        "batch_size 16 (an eighth of the train split, 16 to 64)",
    )
    explicit = plan_run("train", {"rarefaction_depth": 500}, DATASET, target=AGE, base=encoder())
    assert explicit.config.rarefaction_depth == 500


def test_a_base_model_s_clashes_name_the_setting() -> None:
    error = refusal(ConfigError, target=AGE, base=encoder(), config={"dropout": 0.3})
    assert error.field == "config.dropout"
    assert str(error) == (
        "architecture settings differ from the pretrained encoder: dropout=0.3 (encoder has 0.0)"
    )
    error = refusal(ConfigError, target=AGE, base=encoder(), config={"token_limit": 64})
    assert error.field == "config.token_limit"
    deep = encoder(rarefaction_depth=9000)
    error = refusal(UserError, target=AGE, base=deep)
    assert error.field == "base_model_id"
    assert str(error) == (
        "model 'mdl_1' was trained at 9000 reads, deeper than every sample of dataset 'ds_1' "
        "(the deepest has 8000): rarefaction would drop them all; set config.rarefaction_depth"
    )


def test_dataset_rules() -> None:
    no_tree = DatasetFacts("dataset 'ds_2'", {**SUMMARY, "has_tree": False})
    assert refusal(UserError, dataset=no_tree).field == "dataset_id"
    plan_run("pretrain", {}, dataclasses.replace(no_tree, has_distance_matrix=True))
    assert refusal(ConfigError, config={"max_bp": 120}).field == "config.max_bp"
    plan_run("pretrain", {"max_bp": 120, "truncate": True}, DATASET)
    error = refusal(ConfigError, config={"group_column": "donor"})
    assert error.field == "config.group_column"
    error = refusal(ConfigError, config={"gpus": 2, "batch_size": 32})
    assert str(error).startswith("2 GPUs x batch_size 32 = 64 samples per step, but dataset")


@pytest.mark.parametrize(
    ("n_samples", "fraction", "batch"),
    [(40, 0.2, 16), (200, 0.2, 20), (700, 0.2, 64), (1000, 0.5, 62), (100_000, 0.2, 64)],
)
def test_an_unset_batch_size_is_an_eighth_of_the_train_split(
    n_samples: int, fraction: float, batch: int
) -> None:
    facts = DatasetFacts("dataset 'ds_1'", {**SUMMARY, "n_samples": n_samples})
    run = plan_run("train", {"validation_fraction": fraction}, facts, target=AGE)
    assert run.config.batch_size == batch  # n_train // 8, from 16 to 64
    assert plan_run("train", {"batch_size": 8}, facts, target=AGE).config.batch_size == 8


def test_the_planner_imports_no_torch() -> None:
    code = (
        "import sys, json; import aam_core.plan.planner, aam_core.plan.files; "
        "print(json.dumps(sorted(m for m in sys.modules if m == 'torch' or "
        "m.startswith(('aam_core.train', 'aam_core.model.aam', 'sklearn', 'skbio')))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_preset_auto_sizes_the_model_for_the_device() -> None:
    cpu = plan_run("train", {}, DATASET, target=AGE, device="cpu")
    assert (cpu.config.preset, cpu.config.peak_lr()) == ("tiny", 1e-3)
    assert cpu.model is not None and cpu.model.dim == AAMConfig.tiny().dim
    assert cpu.config.peak_lr("pretrain") == 3e-3  # tiny pretraining learns UniFrac faster
    assert cpu.notes == (
        "preset auto: tiny (a run on cpu)",
        "batch_size 16 (an eighth of the train split, 16 to 64)",
    )
    gpu = plan_run("train", {}, DATASET, target=AGE, device="cuda:1")
    assert (gpu.config.preset, gpu.config.peak_lr()) == ("default", 1e-4)
    assert gpu.model is not None and gpu.model.dim == AAMConfig.default().dim
    # at submission the device is not known: checked as the larger model, decided later
    assert plan_run("train", {}, DATASET, target=AGE).config.preset == "auto"
    # an explicit preset or learning rate wins; a base model's size sets the preset
    assert (
        plan_run("train", {"preset": "default"}, DATASET, target=AGE, device="cpu").config.preset
        == "default"
    )
    assert (
        plan_run("train", {"lr": 5e-4}, DATASET, target=AGE, device="cpu").config.peak_lr() == 5e-4
    )
    tuned = plan_run("train", {}, DATASET, target=AGE, base=encoder(), device="cuda")
    assert (tuned.config.preset, tuned.config.peak_lr()) == ("tiny", 1e-3)


@pytest.mark.parametrize(
    ("stage", "given", "n_train", "world", "expected"),
    [
        ("pretrain", {}, 588, 1, (64, 200)),  # 10 steps an epoch: 2,000 steps need 200
        ("pretrain", {}, 40_000, 1, (64, 50)),  # 625 steps an epoch: 50 epochs are plenty
        ("pretrain", {}, 588, 2, (64, 400)),  # 5 steps an epoch on each of 2 GPUs
        ("pretrain", {"grad_accumulation": 2}, 588, 1, (64, 400)),
        ("pretrain", {"epochs": 3}, 588, 1, (64, 3)),  # a given epoch count is kept
        ("train", {}, 588, 1, (64, 50)),  # no step floor in training
        ("train", {}, 100, 1, (16, 50)),  # the batch an eighth of the train split, >= 16
    ],
)
def test_unset_epochs_and_batch_size_are_resolved_once_from_the_train_split(
    stage: Stage, given: dict[str, int], n_train: int, world: int, expected: tuple[int, int]
) -> None:
    config = RunConfig.from_mapping(given).resolved(stage, n_train, world)
    assert (config.batch_size, config.epochs) == expected
    assert config.rerarefy is (stage == "pretrain")  # a new draw every epoch in pretraining
    assert config.identity_dropout == (0.5 if stage == "pretrain" else 0.2)
    assert config.resolved(stage, n_train, world) == config  # resolving twice changes nothing
    kept = RunConfig(rerarefy=stage != "pretrain").resolved(stage, n_train, world)
    assert kept.rerarefy is (stage != "pretrain")  # a given choice is kept


def test_each_stage_stops_early_on_its_own_task_metric() -> None:
    config = RunConfig()
    assert config.monitor_metric("pretrain", None) == ("unifrac_r2", "max")
    assert config.monitor_metric("train", "classification") == ("roc_auc", "max")
    assert config.monitor_metric("train", "regression") == ("mae", "min")
    no_unifrac = RunConfig(loss_weights={"nucleotide": 1.0})
    assert no_unifrac.monitor_metric("pretrain", None) == ("loss", "min")
    assert RunConfig(monitor="loss").monitor_metric("train", "classification") == ("loss", "min")
