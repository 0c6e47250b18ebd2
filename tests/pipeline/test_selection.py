from __future__ import annotations

import numpy as np

from aam_core.data.selection import abundance_features, select_asvs, sequence_ranks

# Feature index order and sequence order disagree: index 0 holds the last sequence.
SEQUENCES = ["TTAC", "CAGG", "acgt", "GATT", "CAGG", "ACGA"]


def test_sequence_ranks_are_alphabetical_case_blind_and_shared_by_equal_sequences() -> None:
    # sorted distinct: ACGA 0, ACGT 1, CAGG 2, GATT 3, TTAC 4
    assert sequence_ranks(SEQUENCES).tolist() == [4, 2, 1, 3, 2, 0]
    assert sequence_ranks([]).tolist() == []


def test_rank_order_by_count_then_sequence_and_token_limit() -> None:
    ranks = sequence_ranks(SEQUENCES)
    features = np.array([0, 1, 2, 3, 5])
    counts = np.array([3, 10, 3, 1, 10])
    f, c = select_asvs(features, counts, ranks=ranks, token_limit=4)
    # 10, 10 (CAGG after ACGA), 3, 3 (ACGT before TTAC although its index is larger)
    assert f.tolist() == [5, 1, 2, 0]
    assert c.tolist() == [10, 10, 3, 3]


def test_rank_order_does_not_follow_the_feature_order_of_the_file() -> None:
    counts = np.array([2, 2, 2, 2, 7, 2])
    forward = select_asvs(np.arange(6), counts, ranks=sequence_ranks(SEQUENCES), token_limit=6)
    # the same sample in a table whose features are listed in reverse
    reverse_ranks = sequence_ranks(SEQUENCES[::-1])
    reverse = select_asvs(np.arange(6), counts[::-1], ranks=reverse_ranks, token_limit=6)
    as_sequences = [[SEQUENCES[j].upper() for j in forward[0]], forward[1].tolist()]
    assert as_sequences == [["CAGG", "ACGA", "ACGT", "CAGG", "GATT", "TTAC"], [7, 2, 2, 2, 2, 2]]
    assert [[SEQUENCES[::-1][j].upper() for j in reverse[0]], reverse[1].tolist()] == as_sequences


def test_abundance_features_use_the_whole_sample_depth() -> None:
    feats = abundance_features(np.array([50, 25]), depth=100)
    assert feats.dtype == np.float32
    np.testing.assert_allclose(feats, [[np.log1p(50), 0.5], [np.log1p(25), 0.25]], rtol=1e-6)
