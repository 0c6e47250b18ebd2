from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aam_core.io import InputError, Inputs, TreeError, read_metadata
from aam_core.io.errors import TargetError
from aam_core.plan import TargetSpec
from aam_core.train.prepare import prepare_data, read_split_tsv, write_split_tsv
from tests.conftest import tiny_run


def _with_metadata(inputs: Inputs, tmp_path: Path, edit: dict[str, dict[str, str]]) -> Inputs:
    assert inputs.metadata is not None
    frame = inputs.metadata.frame.copy().astype(object)
    for sample, values in edit.items():
        for column, value in values.items():
            frame.loc[sample, column] = value
    path = tmp_path / "metadata.tsv"
    frame.to_csv(path, sep="\t", index_label="sample_id")
    return dataclasses.replace(inputs, metadata=read_metadata(path))


def test_samples_without_target_or_reads_are_excluded_and_named(
    study_inputs: Inputs, tmp_path: Path
) -> None:
    ids = study_inputs.table.sample_ids
    inputs = _with_metadata(study_inputs, tmp_path, {ids[0]: {"age": ""}, ids[1]: {"age": "NA"}})
    depths = study_inputs.table.depths()
    depth = int(np.sort(depths)[3])  # three samples fall below it
    prepared = prepare_data(
        inputs, tiny_run(rarefaction_depth=depth), target=TargetSpec("age", "regression")
    )
    report = prepared.report
    assert report["samples_missing_target"] == [ids[0], ids[1]]
    below = sorted(ids[i] for i in np.flatnonzero(depths < depth) if i > 1)
    assert sorted(report["rarefaction"]["dropped"]) == below
    assert prepared.table.n_samples == len(ids) - 2 - len(below)
    assert not {ids[0], ids[1], *below} & set(prepared.table.sample_ids)
    assert any("2 samples have no value for 'age'" in w for w in report["warnings"])
    assert report["n_train"] + report["n_validation"] == prepared.table.n_samples
    np.testing.assert_array_equal(prepared.rarefied.depths(), depth)


def test_target_column_errors(study_inputs: Inputs) -> None:
    config = tiny_run()
    with pytest.raises(
        TargetError,
        match=r"'weight' is not a metadata column of the dataset "
        r"\(columns: 'age', 'site', 'subject'\)",
    ):
        prepare_data(study_inputs, config, target=TargetSpec("weight", "regression"))
    with pytest.raises(
        TargetError, match="'site' is categorical; regression needs a numeric column"
    ):
        prepare_data(study_inputs, config, target=TargetSpec("site", "regression"))
    with pytest.raises(
        TargetError,
        match=r"'age' is numeric with \d+ distinct values; classification needs labels",
    ):
        prepare_data(study_inputs, config, target=TargetSpec("age", "classification"))


def test_classes_come_from_labels_and_groups_stay_together(study_inputs: Inputs) -> None:
    prepared = prepare_data(
        study_inputs, tiny_run(group_column="subject"), target=TargetSpec("site", "classification")
    )
    assert prepared.classes == ("site_A", "site_B", "site_C")
    assert prepared.targets is not None and prepared.targets.dtype == np.int64
    meta = study_inputs.metadata.frame  # type: ignore[union-attr]
    subjects = meta.loc[list(prepared.table.sample_ids), "subject"].to_numpy()
    assert not set(subjects[prepared.split.train]) & set(subjects[prepared.split.validation])
    labels = meta.loc[list(prepared.table.sample_ids), "site"].to_numpy()
    np.testing.assert_array_equal(np.array(prepared.classes)[prepared.targets], labels)


def test_unifrac_needs_a_tree_or_a_matrix(study_inputs: Inputs) -> None:
    no_tree = dataclasses.replace(study_inputs, tree=None)
    with pytest.raises(
        TreeError,
        match=r"the UniFrac task needs a phylogenetic tree "
        r"\(or a precomputed UniFrac distance matrix\) with the dataset",
    ):
        prepare_data(no_tree, tiny_run(), need_unifrac=True)
    n = study_inputs.table.n_samples
    matrix = np.random.default_rng(0).uniform(0, 1, (n, n))
    matrix = (matrix + matrix.T) / 2
    np.fill_diagonal(matrix, 0)
    with_matrix = dataclasses.replace(no_tree, distances=matrix)
    prepared = prepare_data(with_matrix, tiny_run(), need_unifrac=True)
    rows = prepared.split.train[:5]
    collate = prepared.collator(tiny_run(), prepared.split.train)
    dataset = prepared.dataset(prepared.split.train, tiny_run())
    batch = collate([dataset[i] for i in range(5)])
    index = {sid: i for i, sid in enumerate(study_inputs.table.sample_ids)}
    original = [index[prepared.table.sample_ids[r]] for r in rows]
    assert batch.unifrac is not None
    np.testing.assert_allclose(batch.unifrac.numpy(), matrix[np.ix_(original, original)])
    with pytest.raises(
        TreeError, match="the Faith PD task needs a phylogenetic tree with the dataset"
    ):
        prepare_data(with_matrix, tiny_run(), need_faith_pd=True)


def test_too_few_samples(study_inputs: Inputs) -> None:
    with pytest.raises(InputError, match=r"only 0 samples are usable .* at least 4 are needed"):
        prepare_data(study_inputs, tiny_run(rarefaction_depth=10**9))


def test_split_tsv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "split.tsv"
    write_split_tsv(path, ["007", "NA", "b"], ["c", "1e3"])
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    assert frame.to_dict("list") == {
        "sample_id": ["007", "NA", "b", "c", "1e3"],
        "split": ["train", "train", "train", "validation", "validation"],
    }
    assert read_split_tsv(path) == {"train": ["007", "NA", "b"], "validation": ["c", "1e3"]}
    with pytest.raises(ValueError, match=r"1 sample IDs are in both splits, e.g. \['b'\]"):
        write_split_tsv(path, ["a", "b"], ["b"])
