"""Shared fixtures: a small generated study and batches of it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from aam_core.data.batching import Batch, Collator, SampleDataset
from aam_core.data.rarefy import rarefy
from aam_core.data.synthetic import SyntheticSpec, SyntheticStudy, generate, write_study
from aam_core.data.tokens import tokenize
from aam_core.data.unifrac import UniFracEngine, index_branches
from aam_core.io import Inputs, load_inputs
from aam_core.plan import ResolvedRun, RunConfig, TargetSpec
from aam_core.train.local_plan import plan_local

BatchFactory = Callable[[Sequence[int]], Batch]


@pytest.fixture(scope="session")
def small_study() -> SyntheticStudy:
    return generate(SyntheticSpec(n_samples=64, n_asvs=120, asvs_per_sample=20, seed=21))


@pytest.fixture(scope="session")
def small_dataset(small_study: SyntheticStudy) -> SampleDataset:
    rarefied = rarefy(small_study.table, 2000, seed=0)
    ages = small_study.metadata.loc[list(rarefied.table.sample_ids), "age"].to_numpy()
    return SampleDataset(rarefied.table, targets=ages.astype(np.float32))


@pytest.fixture(scope="session")
def make_batch(small_study: SyntheticStudy, small_dataset: SampleDataset) -> BatchFactory:
    """Batches of the small study by dataset row, with UniFrac, Faith PD and age targets."""
    tokens = tokenize(small_study.table.feature_ids, max_bp=150)
    engine = UniFracEngine(index_branches(small_study.tree, small_study.table.feature_ids))
    collate = Collator(tokens, token_limit=256, engine=engine)

    def factory(rows: Sequence[int]) -> Batch:
        return collate([small_dataset[i] for i in rows])

    return factory


@pytest.fixture(scope="session")
def study_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A generated study written as real BIOM, Newick and TSV files."""
    study = generate(SyntheticSpec(n_samples=80, n_asvs=120, asvs_per_sample=20, seed=5))
    return write_study(study, tmp_path_factory.mktemp("study"))


@pytest.fixture(scope="session")
def study_inputs(study_files: dict[str, Path]) -> Inputs:
    return load_inputs(
        study_files["table"], tree=study_files["tree"], metadata=study_files["metadata"]
    )


def tiny_settings(**changes: object) -> dict[str, object]:
    """Fast run settings for tests (the mapping a config file or a job's config holds)."""
    values: dict[str, object] = {
        "preset": "tiny",
        "epochs": 2,
        "batch_size": 16,
        "lr": 3e-3,
        "rarefaction_depth": 1500,
        "token_limit": 64,
        "patience": 0,
        "baseline": False,
    }
    values.update(changes)
    return values


def tiny_run(**changes: object) -> RunConfig:
    """A fast run configuration for tests."""
    return RunConfig.from_mapping(tiny_settings(**changes))


def pretrain_plan(inputs: Inputs, **changes: object) -> ResolvedRun:
    settings = tiny_settings(**changes)
    settings.pop("baseline")  # a train run's (pretraining has no target)
    return plan_local("pretrain", settings, inputs)


def train_plan(
    inputs: Inputs,
    target: TargetSpec,
    *,
    base: Path | None = None,
    freeze_base: bool = False,
    **changes: object,
) -> ResolvedRun:
    return plan_local(
        "train",
        tiny_settings(**changes),
        inputs,
        target=target,
        base_checkpoint=base,
        freeze_base=freeze_base,
    )


def within_contract(got: object, want: object, scale: float = 1.0) -> bool:
    """Prediction's float32 contract (aam_core.predict.RELATIVE_TOLERANCE): each value within
    1e-5 of the larger of |value| and ``scale`` (a regressor's target standard deviation; 1 for
    probabilities and embeddings) of the other."""
    from aam_core.predict import RELATIVE_TOLERANCE

    a, b = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    bound = RELATIVE_TOLERANCE * np.maximum(np.maximum(np.abs(a), np.abs(b)), scale)
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= bound))


def assert_within_contract(got: object, want: object, scale: float = 1.0) -> None:
    assert within_contract(got, want, scale), (got, want)
