from __future__ import annotations

import numpy as np

from aam_core.data.selection import abundance_features, select_asvs


def test_rank_order_by_count_then_index_and_token_limit() -> None:
    features = np.array([9, 4, 7, 2, 5])
    counts = np.array([3, 10, 3, 1, 10])
    f, c = select_asvs(features, counts, token_limit=4)
    assert f.tolist() == [4, 5, 7, 9]  # 10, 10 (ties by ASV index), 3, 3
    assert c.tolist() == [10, 10, 3, 3]


def test_abundance_features_use_the_whole_sample_depth() -> None:
    feats = abundance_features(np.array([50, 25]), depth=100)
    assert feats.dtype == np.float32
    np.testing.assert_allclose(feats, [[np.log1p(50), 0.5], [np.log1p(25), 0.25]], rtol=1e-6)
