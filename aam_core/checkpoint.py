"""Checkpoints: one self-describing file that ``torch.load(..., weights_only=True)`` reads.

A checkpoint holds a format name and version, the model kind, the full model config, the state
dict (train-split target and Faith PD normalisers are buffers in it), class names, the
preprocessing settings, train/validation sample counts, dataset hashes, final and best metrics
and the library version, so a model rebuilds from the file alone. A "last" checkpoint also
holds what exact resume needs (optimiser, scheduler, RNG states, epoch, step).
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from aam_core import __version__
from aam_core.errors import UserError
from aam_core.forest import ForestError, ForestPart
from aam_core.io.files import atomic_write
from aam_core.model import AAMConfig, SequenceEncoder, SequenceRegressor
from aam_core.model.config import ConfigError, SampleEncoderConfig

FORMAT = "aam-checkpoint"
FORMAT_VERSION = 1
KINDS = ("encoder", "regressor", "classifier")

Model = SequenceEncoder | SequenceRegressor


class CheckpointError(UserError):
    """A file that is not a usable AAM checkpoint; the message says why, naming the file."""

    problem = "invalid-checkpoint"


@dataclass(frozen=True, eq=False, kw_only=True)
class Checkpoint:
    kind: str  # encoder | regressor | classifier
    config: AAMConfig
    state_dict: dict[str, torch.Tensor]
    preprocessing: dict[str, Any]  # max_bp, token_limit, truncate, rarefaction_depth
    freeze_base: bool = False
    target: dict[str, Any] | None = None  # column, task, classes (classifier)
    training: dict[str, Any] = field(default_factory=dict)  # n_train, n_validation, hashes, ...
    metrics: dict[str, Any] = field(default_factory=dict)  # final, best
    library_version: str = __version__
    format_version: int = FORMAT_VERSION
    resume: dict[str, Any] | None = None
    forest: ForestPart | None = None  # an ensemble's random forest and blend weight
    vocabulary: tuple[str, ...] | None = None  # the ASVs of config.vocabulary, in order

    @property
    def classes(self) -> list[str] | None:
        return None if self.target is None else self.target.get("classes")


def checkpoint_from_model(model: Model, **fields_: Any) -> Checkpoint:
    kind = "encoder" if isinstance(model, SequenceEncoder) else model.kind
    return Checkpoint(
        kind=kind,
        config=model.config,
        state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
        freeze_base=getattr(model, "freeze_base", False),
        **fields_,
    )


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> Path:
    """Write atomically: a crash never leaves a half-written file under ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": checkpoint.format_version,
        "library_version": checkpoint.library_version,
        "kind": checkpoint.kind,
        "config": checkpoint.config.to_dict(),
        "freeze_base": checkpoint.freeze_base,
        "state_dict": checkpoint.state_dict,
        "preprocessing": checkpoint.preprocessing,
        "target": checkpoint.target,
        "training": checkpoint.training,
        "metrics": checkpoint.metrics,
        "resume": checkpoint.resume,
    }
    if checkpoint.forest is not None:
        payload["ensemble"] = checkpoint.forest.to_payload()
    if checkpoint.vocabulary is not None:
        payload["vocabulary"] = list(checkpoint.vocabulary)
    with atomic_write(path, "wb", fsync=True) as fh:  # fsync: a checkpoint is hours of work
        torch.save(payload, fh)
    return path


def load_checkpoint(path: str | Path, *, name: str | None = None) -> Checkpoint:
    """Read and validate a checkpoint. Never unpickles code: ``weights_only=True``."""
    file = name or Path(path).name
    payload = _read(path, file)
    kind, version = _header(payload, file)
    checkpoint = _parse(payload, kind, version, file)
    _check_consistent(checkpoint, file)
    return checkpoint


def _read(path: str | Path, file: str) -> Any:
    """The file's payload, read without unpickling code; a file that is no PyTorch archive,
    or would run code, is refused with the reason."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc), flags=re.IGNORECASE)
        if found:  # the safe unpickler met a callable: the file would run code if trusted
            raise CheckpointError(
                f"{file}: refused: the file holds Python objects that would run code when "
                f"loaded ({found.group(1)}); AAM checkpoints hold only tensors and plain values"
            ) from None
        raise CheckpointError(
            f"{file}: not a readable checkpoint (truncated or corrupt file: not a PyTorch archive)"
        ) from None
    except Exception as exc:
        # The legacy (non-zip) reader meets arbitrary bytes with IndexError, KeyError,
        # UnicodeDecodeError, struct.error, ...; all mean the same thing to a user.
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"{file}: not a readable checkpoint (truncated or corrupt file: {reason})"
        ) from None


def _header(payload: Any, file: str) -> tuple[str, int]:
    """The checkpoint's model kind and format version, once the payload is known to be an AAM
    checkpoint this aam can read."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{file}: not an AAM checkpoint (a PyTorch file without the '{FORMAT}' header; "
            "only checkpoints written by aam can be used)"
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{file}: invalid checkpoint format version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{file}: checkpoint format version {version} is newer than this aam supports "
            f"({FORMAT_VERSION}); it was written by aam {payload.get('library_version')}, "
            f"this is aam {__version__}: upgrade aam"
        )
    kind = payload.get("kind")
    if kind not in KINDS:
        raise CheckpointError(f"{file}: unknown model kind {kind!r}; expected one of {KINDS}")
    return kind, version


def _parse(payload: dict[str, Any], kind: str, version: int, file: str) -> Checkpoint:
    """The payload's fields as a :class:`Checkpoint`; a missing or malformed one is refused."""
    try:
        config = AAMConfig.from_dict(payload["config"])
        state = payload["state_dict"]
        if not isinstance(state, dict) or not all(
            isinstance(v, torch.Tensor) for v in state.values()
        ):
            raise CheckpointError(f"{file}: the state dict is not a mapping of tensors")
        return Checkpoint(
            kind=kind,
            config=config,
            state_dict=state,
            preprocessing=dict(payload["preprocessing"]),
            freeze_base=bool(payload.get("freeze_base", False)),
            target=payload.get("target"),
            training=dict(payload.get("training") or {}),
            metrics=dict(payload.get("metrics") or {}),
            library_version=str(payload.get("library_version")),
            format_version=version,
            resume=payload.get("resume"),
            vocabulary=(
                None
                if payload.get("vocabulary") is None
                else tuple(str(s) for s in payload["vocabulary"])
            ),
            forest=(
                None
                if payload.get("ensemble") is None
                else ForestPart.from_payload(payload["ensemble"], file=file)
            ),
        )
    except ForestError as exc:  # its message names the file
        raise CheckpointError(str(exc)) from None
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{file}: incomplete or inconsistent checkpoint ({exc})") from None


def _check_consistent(checkpoint: Checkpoint, file: str) -> None:
    """Refuse a checkpoint whose parts disagree: its kind and head, its vocabulary and model,
    its forest and target."""
    kind, config = checkpoint.kind, checkpoint.config
    if (kind == "encoder") != (config.target is None):
        raise CheckpointError(f"{file}: kind {kind!r} does not match its config's target head")
    known = 0 if checkpoint.vocabulary is None else len(checkpoint.vocabulary)
    if known != config.vocabulary:
        raise CheckpointError(
            f"{file}: its ASV vocabulary lists {known} ASVs, its model reads {config.vocabulary}"
        )
    if checkpoint.forest is not None and (
        kind == "encoder" or checkpoint.forest.task != config.target.task  # type: ignore[union-attr]
    ):
        raise CheckpointError(f"{file}: its forest does not predict what its model predicts")


def build_model(checkpoint: Checkpoint, *, name: str = "checkpoint") -> Model:
    """Rebuild the model and load its weights (every key must match)."""
    model: Model
    if checkpoint.kind == "encoder":
        model = SequenceEncoder(checkpoint.config)
    else:
        model = SequenceRegressor(checkpoint.config, freeze_base=checkpoint.freeze_base)
    try:
        model.load_state_dict(checkpoint.state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{name}: weights do not fit the stored config ({first})") from None
    return model


@dataclass(frozen=True)
class LoadReport:
    matched: list[str]
    missing: list[str]  # regressor keys left at their initial values
    skipped: list[str]  # checkpoint keys not used
    identities: int = 0  # ASVs of the regressor's vocabulary whose identity came from it


IDENTITY = "sample.identity.weight"  # [V + 1, D]: an encoder's ASV identities


def load_encoder(
    model: SequenceRegressor | SequenceEncoder,
    checkpoint: Checkpoint,
    *,
    name: str = "checkpoint",
    vocabulary: Sequence[str] | None = None,
) -> LoadReport:
    """Load a pretrained encoder (or the encoder part of a trained model) into a regressor's
    base, or into an encoder that pretraining continues on other data. Refuses a checkpoint
    whose architecture differs or where nothing matched.

    ASV identities belong to one vocabulary each: the regressor's ASVs (``vocabulary``, its
    rows 1..V) that the checkpoint's vocabulary holds take their identity from it, matched by
    sequence, and the others start at zero, as an unknown ASV is read. (A checkpoint without
    identities leaves the regressor's at their initial values, unless the encoder is frozen:
    then they are zero, since they could not learn.)"""
    if checkpoint.kind == "encoder":
        source = checkpoint.state_dict
    else:  # fine-tune a trained model's encoder: take its base.* weights
        source = {
            k[len("base.") :]: v for k, v in checkpoint.state_dict.items() if k.startswith("base.")
        }
    encoder = model.base if isinstance(model, SequenceRegressor) else model
    frozen = isinstance(model, SequenceRegressor) and model.freeze_base
    if checkpoint.config.nucleotide != model.config.nucleotide or (
        _encoder_part(checkpoint.config.sample) != _encoder_part(model.config.sample)
    ):
        raise CheckpointError(
            f"{name}: its encoder architecture (dim {checkpoint.config.dim}, "
            f"{checkpoint.config.sample.layers} sample layers, "
            f"{checkpoint.config.nucleotide.layers} nucleotide layers) differs from the model "
            f"being trained (dim {model.config.dim}, {model.config.sample.layers}, "
            f"{model.config.nucleotide.layers})"
        )
    target = encoder.state_dict()
    source = dict(source)
    identities = 0
    if IDENTITY in target and vocabulary is not None:
        identity, identities = _remapped_identities(
            target[IDENTITY], source.get(IDENTITY), checkpoint.vocabulary, vocabulary
        )
        if frozen or identities:
            source[IDENTITY] = identity
    matched = [k for k, v in source.items() if k in target and target[k].shape == v.shape]
    if not matched:
        raise CheckpointError(f"{name}: no weight matched the encoder; is it an AAM encoder?")
    result = encoder.load_state_dict({k: source[k] for k in matched}, strict=False)
    return LoadReport(
        matched=sorted(matched),
        missing=sorted(result.missing_keys),
        skipped=sorted(set(source) - set(matched)),
        identities=identities,
    )


def _remapped_identities(
    initial: torch.Tensor,
    trained: torch.Tensor | None,
    trained_vocabulary: Sequence[str] | None,
    vocabulary: Sequence[str],
) -> tuple[torch.Tensor, int]:
    """``[V + 1, D]``: row r holds ``trained``'s identity of the sequence ``vocabulary[r -
    1]`` where ``trained_vocabulary`` lists it, zero elsewhere (row 0 too); and how many rows
    were found."""
    out = torch.zeros_like(initial)  # [V + 1, D]
    if trained is None or not trained_vocabulary:
        return out, 0
    row_of = {seq.upper(): r for r, seq in enumerate(trained_vocabulary, start=1)}
    pairs = [(r, row_of[s.upper()]) for r, s in enumerate(vocabulary, 1) if s.upper() in row_of]
    if pairs:
        to, source_rows = (torch.tensor(c) for c in zip(*pairs, strict=True))
        out[to] = trained[source_rows].to(out.dtype)
    return out, len(pairs)


def _encoder_part(config: SampleEncoderConfig) -> SampleEncoderConfig:
    """A sample encoder's shape without its ASV vocabulary, which belongs to one training set:
    an encoder with or without one fine-tunes into a model with or without another."""
    return dataclasses.replace(config, vocabulary=0, identity_dropout=0.0)
