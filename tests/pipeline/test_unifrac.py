from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from skbio import TreeNode
from skbio.diversity import alpha_diversity, beta_diversity

from aam_core.data.diversity import distance_matrix, faith_pd, striped_available
from aam_core.data.synthetic import SyntheticStudy
from aam_core.data.unifrac import UniFracEngine, index_branches
from aam_core.io.errors import TreeError
from aam_core.io.types import FeatureTable

# Unweighted UniFrac on the tiny study, by hand (shared / union branch length, conftest):
#   S1-S2: shared B+X = 3,     union 4 + 4.5 - 3 = 5.5    -> 2.5 / 5.5
#   S1-S3: shared 0,           union 8.5                  -> 1
#   S1-S4: shared A+X = 2,     union 4 + 5.5 - 2 = 7.5    -> 5.5 / 7.5
#   S2-S3: shared Z = 0.5,     union 8.5                  -> 8 / 8.5
#   S2-S4: shared X+Z = 1.5,   union 8.5                  -> 7 / 8.5
#   S3-S4: shared E+Y+Z = 3.5, union 6.5                  -> 3 / 6.5
TINY_UNWEIGHTED = np.array(
    [
        [0, 2.5 / 5.5, 1, 5.5 / 7.5],
        [2.5 / 5.5, 0, 8 / 8.5, 7 / 8.5],
        [1, 8 / 8.5, 0, 3 / 6.5],
        [5.5 / 7.5, 7 / 8.5, 3 / 6.5, 0],
    ]
)
TINY_FAITH = np.array([4.0, 4.5, 4.5, 5.5])
# Weighted normalised S1-S2: branch proportions S1 (A 2/3, B 1/3, X 1), S2 (B .3, C .7, X .3,
# Z .7); u = 1·2/3 + 2·(1/3 - .3) + 1·.7 + 1·.7 + .5·.7 = 149/60; tip-to-root distances
# A 2, B 3, C 1.5: normaliser = 2·2/3 + 3·1/3 + 3·.3 + 1.5·.7 = 257/60  ->  149/257.
TINY_WEIGHTED_S1_S2 = 149 / 257

METHODS = ["hybrid", "dense"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_tiny_values_by_hand(
    tiny_table: FeatureTable, tiny_tree: TreeNode, method: str, dtype: torch.dtype, tol: float
) -> None:
    engine = UniFracEngine(index_branches(tiny_tree, tiny_table.feature_ids), dtype=dtype)
    dist, pd = engine.unweighted_and_faith_pd(tiny_table.counts, method=method)
    assert dist.dtype == dtype
    np.testing.assert_allclose(dist.numpy(), TINY_UNWEIGHTED, atol=tol, rtol=0)
    np.testing.assert_allclose(pd.numpy(), TINY_FAITH, atol=tol * 10, rtol=0)
    weighted = engine.weighted_normalized(tiny_table.counts).numpy()
    assert weighted[0, 1] == pytest.approx(TINY_WEIGHTED_S1_S2, abs=tol)


def test_tiny_values_match_scikit_bio(tiny_table: FeatureTable, tiny_tree: TreeNode) -> None:
    counts = tiny_table.counts.toarray()
    taxa = list(tiny_table.feature_ids)
    ref = beta_diversity("unweighted_unifrac", counts, taxa=taxa, tree=tiny_tree).data
    np.testing.assert_allclose(ref, TINY_UNWEIGHTED, atol=1e-15)


def _reference(study: SyntheticStudy, rows: np.ndarray) -> dict[str, np.ndarray]:
    counts = study.table.counts[rows].toarray()
    taxa = list(study.table.feature_ids)
    return {
        "unweighted": beta_diversity("unweighted_unifrac", counts, taxa=taxa, tree=study.tree).data,
        "weighted": beta_diversity(
            "weighted_unifrac", counts, taxa=taxa, tree=study.tree, normalized=True
        ).data,
        "faith": alpha_diversity("faith_pd", counts, taxa=taxa, tree=study.tree).values,
    }


@pytest.fixture(scope="module")
def reference(study: SyntheticStudy) -> dict[str, np.ndarray]:
    return _reference(study, np.arange(study.table.n_samples))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-9), (torch.float32, 1e-6)])
def test_full_table_matches_scikit_bio(
    study: SyntheticStudy,
    reference: dict[str, np.ndarray],
    method: str,
    dtype: torch.dtype,
    tol: float,
) -> None:
    assert study.table.n_samples == 300
    engine = UniFracEngine(index_branches(study.tree, study.table.feature_ids), dtype=dtype)
    dist, pd = engine.unweighted_and_faith_pd(study.table.counts, method=method)
    assert np.abs(dist.numpy() - reference["unweighted"]).max() <= tol
    # Faith PD is a sum of tens of branch lengths: compare relative to its size.
    assert np.abs(pd.numpy() - reference["faith"]).max() <= tol * reference["faith"].max()
    weighted = engine.weighted_normalized(study.table.counts).numpy()
    assert np.abs(weighted - reference["weighted"]).max() <= tol


def test_batch_equals_scikit_bio_on_the_same_samples(study: SyntheticStudy) -> None:
    rows = np.array([7, 3, 250, 11, 99, 42, 180])  # odd size, unsorted
    engine = UniFracEngine(index_branches(study.tree, study.table.feature_ids))
    dist, pd = engine.unweighted_and_faith_pd(study.table.counts[rows])
    ref = _reference(study, rows)
    assert np.abs(dist.numpy() - ref["unweighted"]).max() <= 1e-12
    assert np.abs(pd.numpy() - ref["faith"]).max() <= 1e-12
    # the same from a dense torch tensor (the GPU path's input)
    dense = torch.from_numpy(study.table.counts[rows].toarray())
    dist_dense = engine.unweighted(dense, method="dense")
    assert torch.allclose(dist_dense, dist, atol=1e-12, rtol=0)


@pytest.mark.parametrize("method", METHODS)
def test_extra_tips_single_child_chains_and_root_length_change_nothing(method: str) -> None:
    # Tip Q is not in the table: pruning it leaves X2 with one child, so X2 and CCCC merge
    # into one branch chain. The root has an explicit length, which scikit-bio counts.
    tree = TreeNode.read(
        ["((AAAA:1,(CCCC:2,Q:5)X2:0.25)X:1,(GGGG:1,(TTTT:1,ACGT:1)Y:2)Z:0.5)root:0.75;"],
        convert_underscores=False,
    )
    features = ["AAAA", "CCCC", "GGGG", "TTTT", "ACGT"]
    counts = np.array([[10, 5, 0, 0, 0], [0, 3, 7, 0, 0], [0, 0, 0, 2, 2], [1, 0, 0, 0, 9]])
    index = index_branches(tree, features)
    # branches: AAAA, CCCC+X2, X, GGGG, TTTT, ACGT, Y, Z and the root (Q and X2 merged away)
    assert index.n_branches == 9
    engine = UniFracEngine(index)
    dist, pd = engine.unweighted_and_faith_pd(sp.csr_matrix(counts), method=method)
    ref = beta_diversity("unweighted_unifrac", counts, taxa=features, tree=tree).data
    ref_pd = alpha_diversity("faith_pd", counts, taxa=features, tree=tree).values
    ref_w = beta_diversity(
        "weighted_unifrac", counts, taxa=features, tree=tree, normalized=True
    ).data
    np.testing.assert_allclose(dist.numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(pd.numpy(), ref_pd, atol=1e-12)
    np.testing.assert_allclose(engine.weighted_normalized(counts).numpy(), ref_w, atol=1e-12)


def test_features_missing_from_tree_are_named(tiny_tree: TreeNode) -> None:
    with pytest.raises(TreeError) as err:
        index_branches(tiny_tree, ["AAAA", "CCCC", "GATTACA", "TTTT", "CAT"])
    assert str(err.value) == (
        "2 of 5 table features are missing from the tree (e.g. 'GATTACA', 'CAT')"
    )


def test_counts_of_the_wrong_width_are_refused(
    tiny_table: FeatureTable, tiny_tree: TreeNode
) -> None:
    engine = UniFracEngine(index_branches(tiny_tree, tiny_table.feature_ids))
    with pytest.raises(ValueError, match=r"counts must be \[n_samples, 5\], got \(2, 4\)"):
        engine.unweighted(np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"method must be 'auto', 'dense' or 'hybrid', got 'fast'"):
        engine.unweighted(tiny_table.counts, method="fast")


def test_an_empty_sample_is_at_distance_one_and_two_empty_at_zero(
    tiny_table: FeatureTable, tiny_tree: TreeNode
) -> None:
    counts = np.vstack([tiny_table.counts.toarray()[:2], np.zeros((2, 5))])
    engine = UniFracEngine(index_branches(tiny_tree, tiny_table.feature_ids))
    dist = engine.unweighted(counts).numpy()
    # scikit-bio's conventions: 1 against a non-empty sample, 0 between two empty ones
    assert dist[0, 2] == 1.0 and dist[2, 3] == 0.0
    assert not np.isnan(engine.weighted_normalized(counts).numpy()).any()


def test_whole_table_helpers(study: SyntheticStudy, reference: dict[str, np.ndarray]) -> None:
    dm = distance_matrix(study.table, study.tree)
    assert dm.dtype == np.float64 and dm.shape == (300, 300)
    assert np.abs(dm - reference["unweighted"]).max() <= 1e-9
    wdm = distance_matrix(study.table, study.tree, metric="weighted_normalized")
    assert np.abs(wdm - reference["weighted"]).max() <= 1e-9
    assert np.abs(faith_pd(study.table, study.tree) - reference["faith"]).max() <= 1e-9


def test_striped_backend_is_optional(tiny_table: FeatureTable, tiny_tree: TreeNode) -> None:
    if striped_available():
        dm = distance_matrix(tiny_table, tiny_tree, backend="striped")
        np.testing.assert_allclose(dm, TINY_UNWEIGHTED, atol=1e-9)
    else:
        with pytest.raises(RuntimeError, match="needs the 'unifrac' package"):
            distance_matrix(tiny_table, tiny_tree, backend="striped")
