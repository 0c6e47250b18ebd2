from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from skbio.diversity import beta_diversity

from aam_core.data.batching import Collator, SampleDataset
from aam_core.data.rarefy import rarefy, sample_rng, subsample_row
from aam_core.data.selection import select_asvs
from aam_core.data.synthetic import SyntheticStudy
from aam_core.data.tokens import tokenize
from aam_core.data.unifrac import UniFracEngine, index_branches
from aam_core.io.types import FeatureTable


@pytest.fixture(scope="module")
def setup(study: SyntheticStudy) -> tuple[SampleDataset, Collator, np.ndarray]:
    rarefied = rarefy(study.table, 2500, seed=1)
    tokens = tokenize(study.table.feature_ids, max_bp=150)
    engine = UniFracEngine(index_branches(study.tree, study.table.feature_ids))
    ages = study.metadata.loc[list(rarefied.table.sample_ids), "age"].to_numpy()
    dataset = SampleDataset(rarefied.table, targets=ages)
    return dataset, Collator(tokens, token_limit=32, engine=engine), tokens


def test_batch_holds_each_distinct_asv_once_and_maps_every_slot(
    setup: tuple[SampleDataset, Collator, np.ndarray], study: SyntheticStudy
) -> None:
    dataset, collate, tokens = setup
    samples = [dataset[i] for i in (0, 5, 9)]
    batch = collate(samples)
    selected = [s.features[:32] for s in samples]
    distinct = np.unique(np.concatenate(selected))
    assert batch.tokens.shape[0] == distinct.size  # U: every distinct ASV once
    # padding only to the largest sample of the batch (capped at token_limit)
    assert batch.asv_index.shape == (3, max(len(k) for k in selected))
    for i, feats in enumerate(selected):
        slots = batch.asv_index[i]
        assert (slots[: len(feats)] >= 0).all() and (slots[len(feats) :] == -1).all()
        assert batch.mask[i].sum().item() == len(feats)
        width = batch.tokens.shape[1]
        got = batch.tokens[slots[: len(feats)]].numpy()
        np.testing.assert_array_equal(got, tokens[feats][:, :width])
        assert (tokens[feats][:, width:] == 0).all()  # trimming L cut only padding


def test_abundance_features_and_rank_order(
    setup: tuple[SampleDataset, Collator, np.ndarray],
) -> None:
    dataset, collate, _ = setup
    sample = dataset[3]
    batch = collate([sample])
    counts = sample.counts[:32]
    assert (np.diff(sample.counts) <= 0).all()  # rank order: counts descending
    np.testing.assert_allclose(batch.abundance[0, : len(counts), 0], np.log1p(counts), rtol=1e-6)
    np.testing.assert_allclose(batch.abundance[0, : len(counts), 1], counts / 2500, rtol=1e-6)
    assert (batch.abundance[0, len(counts) :] == 0).all()


def test_batch_unifrac_and_targets(
    setup: tuple[SampleDataset, Collator, np.ndarray], study: SyntheticStudy
) -> None:
    dataset, collate, _ = setup
    rows = [1, 4, 8, 15, 16]
    batch = collate([dataset[i] for i in rows])
    counts = rarefy(study.table, 2500, seed=1).table.counts[rows].toarray()  # setup's table
    ref = beta_diversity(
        "unweighted_unifrac", counts, taxa=list(study.table.feature_ids), tree=study.tree
    ).data
    assert batch.unifrac is not None and batch.faith_pd is not None
    assert np.abs(batch.unifrac.numpy() - ref).max() <= 1e-12
    assert batch.target is not None and batch.target.dtype == torch.float32
    expected = study.metadata.loc[list(batch.sample_ids), "age"].to_numpy()
    np.testing.assert_allclose(batch.target.numpy(), expected, rtol=1e-6)


def test_rerarefaction_draws_anew_each_epoch(study: SyntheticStudy) -> None:
    table = rarefy(study.table, 3000, seed=0)  # keep samples with >= 3000 reads
    raw = study.table.subset_samples(table.kept_rows)
    dataset = SampleDataset(raw, depth=1000, seed=4, rerarefy=True)
    first = dataset[0]
    assert first.counts.sum() == 1000
    assert np.array_equal(dataset[0].counts, first.counts)  # same epoch, same draw
    dataset.set_epoch(1)
    again = dataset[0]
    assert again.counts.sum() == 1000
    assert not (
        np.array_equal(again.features, first.features)
        and np.array_equal(again.counts, first.counts)
    )


def test_rerarefied_samples_are_the_reference_draws_in_any_order(study: SyntheticStudy) -> None:
    # each sample is its row's sample_rng draw, ranked: whatever rows come before it, in
    # whichever order, in this dataset object or a fresh one (a data loader worker)
    raw = study.table.subset_samples(rarefy(study.table, 3000, seed=0).kept_rows)
    csr = raw.counts
    dataset = SampleDataset(raw, depth=1000, seed=4, rerarefy=True)
    for epoch, rows in ((0, [17, 3, 0, raw.n_samples - 1, 3]), (6, [raw.n_samples - 1, 1])):
        dataset.set_epoch(epoch)
        fresh = SampleDataset(raw, depth=1000, seed=4, rerarefy=True)
        fresh.set_epoch(epoch)
        for row in rows:
            lo, hi = csr.indptr[row], csr.indptr[row + 1]
            drawn = subsample_row(csr.data[lo:hi], 1000, sample_rng(4, row, epoch))
            kept = drawn > 0
            features, counts = select_asvs(
                csr.indices[lo:hi][kept], drawn[kept], ranks=dataset.ranks, token_limit=hi - lo
            )
            for sample in (dataset[row], fresh[row]):
                np.testing.assert_array_equal(sample.features, features)
                np.testing.assert_array_equal(sample.counts, counts)


def test_dataset_refuses_bad_setups(study: SyntheticStudy) -> None:
    with pytest.raises(
        ValueError, match=r"number of targets \(2\) must match number of samples \(300\)"
    ):
        SampleDataset(study.table, targets=[1.0, 2.0])
    with pytest.raises(ValueError, match="samples have fewer than 1000000 reads; rarefy first"):
        SampleDataset(study.table, depth=1_000_000)


def test_training_ranks_tied_asvs_by_sequence_as_prediction_does() -> None:
    # IDs are hashes whose order disagrees with the sequences' order
    ids = ("h3", "h1", "h2", "h0")
    sequences = ("GGTA", "TACA", "ACCA", "CATG")
    counts = sp.csr_matrix(np.array([[5, 5, 9, 5]]))
    table = FeatureTable(("s",), ids, counts)
    sample = SampleDataset(table, sequences=sequences)[0]
    # 9 first, then the three 5s by sequence: CATG, GGTA, TACA
    assert [sequences[j] for j in sample.features] == ["ACCA", "CATG", "GGTA", "TACA"]
    assert sample.counts.tolist() == [9, 5, 5, 5]
    reverse = FeatureTable(("s",), ids[::-1], sp.csr_matrix(counts.toarray()[:, ::-1]))
    again = SampleDataset(reverse, sequences=sequences[::-1])[0]
    assert [sequences[::-1][j] for j in again.features] == ["ACCA", "CATG", "GGTA", "TACA"]
    # without sequences, the IDs rank ties: still independent of the file's order
    by_id = SampleDataset(table)[0]
    assert [ids[j] for j in by_id.features] == ["h2", "h0", "h1", "h3"]
    with pytest.raises(
        ValueError, match=r"number of sequences \(3\) must match number of features \(4\)"
    ):
        SampleDataset(table, sequences=sequences[:3])
