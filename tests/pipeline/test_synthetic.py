from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import cross_val_score

from aam_core.data.synthetic import SyntheticSpec, SyntheticStudy, generate, write_study
from aam_core.io import read_metadata, read_table, read_tree


def test_generation_is_seeded() -> None:
    a = generate(SyntheticSpec(n_samples=20, n_asvs=50, asvs_per_sample=10, seed=1))
    b = generate(SyntheticSpec(n_samples=20, n_asvs=50, asvs_per_sample=10, seed=1))
    c = generate(SyntheticSpec(n_samples=20, n_asvs=50, asvs_per_sample=10, seed=2))
    assert a.table.feature_ids == b.table.feature_ids
    assert (a.table.counts != b.table.counts).nnz == 0
    assert a.table.feature_ids != c.table.feature_ids


def test_asvs_are_distinct_dna_of_realistic_length(study: SyntheticStudy) -> None:
    ids = study.table.feature_ids
    assert len(set(ids)) == len(ids) == 500
    lengths = np.array([len(s) for s in ids])
    assert lengths.max() == 150 and 100 <= lengths.min() < 150
    assert set("".join(ids)) <= set("ACGT")
    assert {t.name for t in study.tree.tips()} == set(ids)


def test_metadata_depends_on_composition(study: SyntheticStudy) -> None:
    # Both columns must be learnable from relative abundances (well above chance / mean).
    x = study.table.counts.toarray()
    rel = x / x.sum(axis=1, keepdims=True)
    age = study.metadata["age"].to_numpy()
    ridge = RidgeCV(alphas=np.logspace(-3, 3, 13))
    r2 = cross_val_score(ridge, np.sqrt(rel), age, cv=5, scoring="r2").mean()
    assert r2 > 0.6
    site = study.metadata["site"].to_numpy()
    acc = cross_val_score(LogisticRegression(max_iter=2000), np.sqrt(rel), site, cv=5).mean()
    majority = max((site == s).mean() for s in set(site))
    assert acc > majority + 0.2


def test_written_files_read_back_identically(tmp_path: Path) -> None:
    study = generate(SyntheticSpec(n_samples=30, n_asvs=60, asvs_per_sample=12, seed=3))
    paths = write_study(study, tmp_path)
    table = read_table(paths["table"])
    assert table.sample_ids == study.table.sample_ids
    assert table.feature_ids == study.table.feature_ids
    assert (table.counts != study.table.counts).nnz == 0
    tree = read_tree(paths["tree"])
    assert {t.name for t in tree.tips()} == set(study.table.feature_ids)
    metadata = read_metadata(paths["metadata"])
    assert metadata.column("age").kind == "numeric"
    assert metadata.column("site").kind == "categorical"
    np.testing.assert_allclose(
        metadata.frame.loc[list(study.table.sample_ids), "age"].to_numpy(),
        study.metadata["age"].to_numpy(),
    )


def test_spec_is_validated() -> None:
    with pytest.raises(ValueError, match=r"asvs_per_sample must be in \[2, n_asvs=10\], got 20"):
        SyntheticSpec(n_asvs=10, asvs_per_sample=20)
