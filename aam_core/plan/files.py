"""Run settings from a config file (TOML, YAML or JSON) and command-line flags: the mapping of
the settings a user gave, which the planner resolves (defaults < file < flags)."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from aam_core.errors import ConfigError
from aam_core.plan.config import RunConfig

CONFIG_SUFFIXES = (".toml", ".yaml", ".yml", ".json")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Keys and values of a TOML, YAML or JSON file (chosen by extension)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CONFIG_SUFFIXES:
        raise ConfigError(
            f"unknown config file type {suffix or '(none)'!r}; use .toml, .yaml, .yml or .json",
            file=str(path),
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot open the config file ({exc.strerror})", file=str(path)) from None
    try:
        if suffix == ".toml":
            values: Any = tomllib.loads(text)
        elif suffix == ".json":
            values = json.loads(text)
        else:
            values = yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        reason = " ".join(str(exc).split())[:160]
        raise ConfigError(
            f"not a valid {suffix[1:].upper()} file ({reason})", file=str(path)
        ) from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(
            f"a config file must hold a mapping of settings, got {type(values).__name__}",
            file=str(path),
        )
    return values


def given_settings(config_file: str | Path | None, flags: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a user gave: the config file's, overridden by the flags that were given
    (not None). The file must be a valid configuration on its own; its errors name it."""
    values: dict[str, Any] = {}
    if config_file is not None:
        values = read_config_file(config_file)
        try:
            RunConfig.from_mapping(values)
        except ConfigError as exc:
            raise ConfigError(exc.message, field=exc.field, file=str(config_file)) from None
    values.update({k: v for k, v in flags.items() if v is not None})
    RunConfig.from_mapping(values)  # a bad flag is named before any input file is read
    return values


def build_config(config_file: str | Path | None, flags: Mapping[str, Any]) -> RunConfig:
    """:func:`given_settings` over RunConfig's defaults."""
    return RunConfig.from_mapping(given_settings(config_file, flags))
