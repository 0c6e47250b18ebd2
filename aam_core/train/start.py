"""The model a run starts from: the ASV vocabulary of its train split (identity embeddings
and the linear base read one list), the base encoder it loads, and the train split's
statistics fitted before the first step (target and Faith PD normalisers, the UniFrac head's
offset and unit)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from aam_core.checkpoint import LoadReport, load_checkpoint, load_encoder
from aam_core.io import sha256_file
from aam_core.model.aam import SequenceEncoder, SequenceRegressor
from aam_core.plan import ResolvedRun
from aam_core.train.callbacks import Callback
from aam_core.train.prepare import PreparedData

Model = SequenceEncoder | SequenceRegressor
Vocabulary = tuple[tuple[str, ...], np.ndarray]  # the ASVs, and each feature's 1-based row


def encoder_for(
    run: ResolvedRun, prepared: PreparedData, log: Callback
) -> tuple[SequenceEncoder, Vocabulary | None, dict[str, Any]]:
    """The encoder a pretrain run starts from on ``prepared``'s split, its vocabulary and the
    report of its base encoder's loading (pretraining continued from one)."""
    config = run.config
    assert run.model is not None
    vocabulary = prepared.asv_vocabulary() if config.asv_vocabulary else None
    size = 0 if vocabulary is None else len(vocabulary[0])
    sample = dataclasses.replace(
        run.model.sample,
        vocabulary=size,
        identity_dropout=config.identity_rate("pretrain") if size else 0.0,
    )
    model_config = dataclasses.replace(run.model, sample=sample)
    torch.manual_seed(config.seed)  # the initial weights are part of the run's seed
    model = SequenceEncoder(model_config)
    extra: dict[str, Any] = {}
    if run.base is not None:  # pretraining continued on this dataset
        sequences = None if vocabulary is None else vocabulary[0]
        extra["base_checkpoint"] = load_base(model, run, log, sequences)
    return model, vocabulary, extra


def regressor_for(
    run: ResolvedRun, prepared: PreparedData, log: Callback
) -> tuple[SequenceRegressor, Vocabulary | None, dict[str, Any]]:
    """The model a train run starts from on ``prepared``'s split, its vocabulary (the train
    split's ASVs, and each feature's row) and the report of its base encoder's loading."""
    config = run.config
    assert run.model is not None and run.model.target is not None
    # the classes of the train split (the summary may count classes only validation has)
    out_dim = len(prepared.classes) if prepared.classes is not None else 1
    model_config = dataclasses.replace(
        run.model, target=dataclasses.replace(run.model.target, out_dim=out_dim)
    )
    # One vocabulary, the train split's ASVs, for the identity embeddings and the linear base.
    # A frozen encoder's identities cannot learn: it keeps those of its own pretraining, where
    # it has them, and otherwise reads ASVs by sequence alone.
    assert model_config.target is not None
    base_identities = run.base is not None and run.base.model["sample"].get("vocabulary", 0) > 0
    identities = config.asv_vocabulary and (not run.freeze_base or base_identities)
    if config.asv_vocabulary and not identities:
        log.on_log("asv_vocabulary: off, the frozen encoder has no ASV identities to keep")
    vocabulary = None
    if identities or model_config.target.linear:
        vocabulary = prepared.asv_vocabulary()
    size = 0 if vocabulary is None else len(vocabulary[0])
    model_config = dataclasses.replace(
        model_config,
        sample=dataclasses.replace(
            model_config.sample,
            vocabulary=size if identities else 0,
            identity_dropout=config.identity_rate("train") if identities else 0.0,
        ),
        target=dataclasses.replace(
            model_config.target, vocabulary=size if model_config.target.linear else 0
        ),
    )
    torch.manual_seed(config.seed)  # the initial weights are part of the run's seed
    model = SequenceRegressor(model_config, freeze_base=run.freeze_base)
    extra: dict[str, Any] = {}
    if run.base is not None:
        sequences = None if vocabulary is None else vocabulary[0]
        extra["base_checkpoint"] = load_base(model, run, log, sequences)
    return model, vocabulary, extra


def load_base(
    model: Model,
    run: ResolvedRun,
    log: Callback,
    vocabulary: tuple[str, ...] | None,
) -> dict[str, Any]:
    base = run.base
    assert base is not None and base.path is not None, "a base model to train from is a file"
    loaded: LoadReport = load_encoder(
        model, load_checkpoint(base.path), name=base.path, vocabulary=vocabulary
    )
    log.on_log(
        f"loaded encoder {base.path}: {len(loaded.matched)} tensors matched, "
        f"{len(loaded.missing)} missing, {len(loaded.skipped)} skipped"
        + (f"; identities of {loaded.identities} ASVs" if vocabulary is not None else "")
        + ("; encoder frozen" if run.freeze_base else "")
    )
    return {
        "path": base.path,
        "sha256": sha256_file(base.path),
        "kind": base.kind,
        "matched_keys": len(loaded.matched),
        "missing_keys": loaded.missing,
        "skipped_keys": len(loaded.skipped),
        "identities": loaded.identities,
        "freeze_base": run.freeze_base,
    }


# The train split's distance statistics (the affine UniFrac head's offset and unit) come from
# at most this many of its samples: ~2 million pairs, plenty for a mean and an SD.
DISTANCE_SAMPLES = 2048


def fit_statistics(model: Model, prepared: PreparedData, seed: int) -> None:
    train = prepared.split.train
    base = model.base if isinstance(model, SequenceRegressor) else model
    weights = model.config.loss_weights
    if weights.faith_pd > 0 and prepared.engine is not None:
        faith = prepared.engine.faith_pd(prepared.rarefied.counts[train])
        base.faith_norm.fit(faith.float())
    if weights.unifrac > 0 and base.unifrac_head.affine:
        rows = np.sort(np.random.default_rng(seed).permutation(train)[:DISTANCE_SAMPLES])
        base.unifrac_head.fit(torch.from_numpy(prepared.train_distances(rows)))
    if isinstance(model, SequenceRegressor) and prepared.classes is None:
        assert prepared.targets is not None
        model.target_norm.fit(torch.from_numpy(prepared.targets[train]).float())
