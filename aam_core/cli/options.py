"""The run settings as command-line options, generated from :class:`RunConfig`'s fields: one
``--name`` per setting, with the field's help sentence, so that a flag means what the config
file key and the REST ``config`` key of that name mean (one schema, ``aam_core.plan.config``).

``@run_options(...)`` adds the options to a command and hands the ones given to it as one
mapping, ``settings``; the command passes that to the planner over a config file's values.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, TypeVar

import typer

from aam_core.errors import ConfigError, UserError
from aam_core.plan.config import Run, setting_fields, type_hint

F = TypeVar("F", bound=Callable[..., Any])
# the help's last paragraph in commands with run settings (click's plain help has no panels)
RUN_SETTINGS = "Run settings (--preset and the options after it) are also keys of a --config file."
FILE_ONLY = frozenset({"extra"})  # free-form notes: a config file's business


def option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_weights(text: str | None) -> dict[str, float] | None:
    """``unifrac=1,nucleotide=0.5`` -> a loss_weights mapping (RunConfig checks the names)."""
    if text is None:
        return None
    weights: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            weights[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(
                f"--loss-weights takes name=value pairs separated by commas (e.g. "
                f"'unifrac=1,nucleotide=0.5'), got {item!r}",
                field="config.loss_weights",
            ) from None
    return weights


def _option(name: str, help: str) -> tuple[Any, Any]:
    """The parameter annotation of one setting's option."""
    hint = type_hint(name)
    if name == "loss_weights":
        hint = str
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    (value_type,) = [o for o in options if o is not type(None)]
    flag = option_name(name)
    if value_type is bool:
        flag = f"{flag}/--no-{flag[2:]}"
    info = typer.Option(flag, help=help, show_default=False)
    return Annotated[value_type | None, info], None


def run_options(run: Run, *, exclude: Iterable[str] = ()) -> Callable[[F], F]:
    """Add an option for every RunConfig field that applies to ``run`` (less ``exclude``) to a
    command whose last parameter is ``settings: Mapping[str, Any]``; it receives the options
    that were given."""
    skipped = FILE_ONLY | set(exclude)
    fields = [f for f in setting_fields() if run in f.metadata["runs"] and f.name not in skipped]

    def decorate(command: F) -> F:
        hints = typing.get_type_hints(command, include_extras=True)
        own = [
            p.replace(annotation=hints[p.name])
            for p in inspect.signature(command).parameters.values()
            if p.name != "settings"
        ]
        added = []
        for f in fields:
            annotation, default = _option(f.name, f.metadata.get("help", ""))
            added.append(
                inspect.Parameter(
                    f.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
                )
            )

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given: dict[str, Any] = {f.name: kwargs.pop(f.name, None) for f in fields}
            if "loss_weights" in given:
                given["loss_weights"] = parse_weights(given["loss_weights"])
            kwargs["settings"] = {k: v for k, v in given.items() if v is not None}
            return command(*args, **kwargs)

        wrapper.__signature__ = inspect.Signature([*own, *added])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *added]}
        return typing.cast(F, wrapper)

    return decorate


FIELD_OPTIONS: Mapping[str, str] = {
    "target.column": "--target",
    "base_model_id": "--pretrained-encoder",
    "model_id": "--checkpoint",
    # a cross-validation's request (aam cross-validate)
    "cv.folds": "--folds",
    "cv.repeats": "--repeats",
    "cv.group_column": "--group",
    "cv.models": "--models",
    "cv.pretrain": "--pretrain",
    "cv.min_reads": "--min-reads",
}


def error_line(exc: UserError) -> str:
    """A user error as the tool prints it: the option it is about in front, unless the
    message names the setting already (``--target: 'height' is not a metadata column ...``)."""
    text = " ".join(str(exc).split())
    field = exc.field or ""
    option = FIELD_OPTIONS.get(field)
    if option is None and field.startswith("config."):
        option = option_name(field.split(".")[1])
    if option is not None and field.startswith("cv.") and field in text:
        return text.replace(field, option)  # "cv.folds must be ...": the request's REST name
    if option is None or option[2:].replace("-", "_") in text:
        return text
    return f"{option}: {text}"
