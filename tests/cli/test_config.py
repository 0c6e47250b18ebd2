"""Run settings: defaults < config file (TOML, YAML or JSON) < command-line flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aam_core.checkpoint import load_checkpoint
from aam_core.errors import ConfigError
from aam_core.plan.files import build_config, read_config_file
from tests.cli.conftest import Study, aam

SETTINGS = {"preset": "tiny", "epochs": 3, "batch_size": 8, "lr": 0.005, "seed": 7}


def test_toml_yaml_and_json_files_give_the_same_settings(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text(
        'preset = "tiny"\nepochs = 3\nbatch_size = 8\nlr = 0.005\nseed = 7\n'
        "[loss_weights]\ntarget = 1.0\ncount = 0.5\n"
    )
    yaml = tmp_path / "run.yml"
    yaml.write_text(
        "preset: tiny\nepochs: 3\nbatch_size: 8\nlr: 0.005\nseed: 7\n"
        "loss_weights: {target: 1.0, count: 0.5}\n"
    )
    as_json = tmp_path / "run.json"
    as_json.write_text(json.dumps({**SETTINGS, "loss_weights": {"target": 1.0, "count": 0.5}}))
    expected = {**SETTINGS, "loss_weights": {"target": 1.0, "count": 0.5}}
    for path in (toml, yaml, as_json):
        assert read_config_file(path) == expected


def test_flags_override_the_file_and_none_means_not_given(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('preset = "tiny"\nepochs = 3\nlr = 0.005\n')
    config = build_config(path, {"epochs": 1, "lr": None, "seed": 4})
    assert (config.preset, config.epochs, config.lr, config.seed) == ("tiny", 1, 0.005, 4)
    assert config.batch_size is None  # RunConfig's default, in neither: the planner's choice


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("run.ini", "epochs = 3", "run.ini: unknown config file type '.ini'; use .toml, .yaml, "
         ".yml or .json"),
        ("run.toml", "epochs = [", "run.toml: not a valid TOML file ("),
        ("run.yaml", "- 1\n- 2\n", "run.yaml: a config file must hold a mapping of settings, "
         "got list"),
        ("run.json", '{"epochs": 0}', "run.json: epochs must be >= 1, got 0"),
        ("run.yaml", "epochs: 3.5\n", "run.yaml: epochs must be an integer, got 3.5"),
    ],
)  # fmt: skip
def test_bad_config_files_name_the_file(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        build_config(path, {})
    assert str(info.value).startswith(f"{tmp_path}/{message}")


def test_command_uses_file_values_and_flags_override_them(
    small_study: Study, tmp_path: Path
) -> None:
    path = tmp_path / "run.toml"
    path.write_text(
        'preset = "tiny"\nepochs = 3\nbatch_size = 8\nlr = 0.005\nseed = 7\n'
        "token_limit = 32\nrarefaction_depth = 1000\n"
    )
    out = tmp_path / "run"
    aam("pretrain", "--table", small_study.table, "--tree", small_study.tree, "--out", out,
        "--config", path, "--epochs", 1, "--seed", 11, "--patience", 0, "--quiet")  # fmt: skip
    used = load_checkpoint(out / "checkpoints" / "last.pt").training["run_config"]
    assert {k: used[k] for k in ("epochs", "seed", "patience")} == {
        "epochs": 1,
        "seed": 11,
        "patience": 0,
    }  # flags
    assert {k: used[k] for k in ("batch_size", "lr", "token_limit", "rarefaction_depth")} == {
        "batch_size": 8,
        "lr": 0.005,
        "token_limit": 32,
        "rarefaction_depth": 1000,
    }  # file
    report = json.loads((out / "report.json").read_text())
    assert report["epochs_run"] == 1
    assert report["steps"] == -(-report["n_train"] // 8)  # one epoch of batches of 8


def test_unknown_config_key_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text("epochs = 2\nbogus = 1\nepoch = 3\n")
    # the config is read before any input file, so the table need not exist
    result = aam("pretrain", "--table", tmp_path / "t.biom", "--out", tmp_path / "o",
                 "--config", path, code=2)  # fmt: skip
    assert result.stderr == f"error: {path}: unknown config keys: bogus, epoch\n"
    assert result.stdout == ""


def test_bad_flag_value_names_the_field(tmp_path: Path) -> None:
    result = aam("pretrain", "--table", tmp_path / "t.biom", "--out", tmp_path / "o",
                 "--validation-fraction", 1.5, code=2)  # fmt: skip
    assert result.stderr == "error: validation_fraction must be in (0, 1), got 1.5\n"
