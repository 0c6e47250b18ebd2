"""Per-batch UniFrac targets on the CPU (the engine's ``auto`` method there: ``hybrid``) give
the numbers of the dense product and of scikit-bio, on a random tree and table."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from skbio import TreeNode
from skbio.diversity import alpha_diversity, beta_diversity

from aam_core.data.unifrac import UniFracEngine, index_branches

N_TIPS = 150  # table features: tips t0..t149; tips x0..x9 are in the tree only
N_SAMPLES = 70


def random_tree(seed: int) -> TreeNode:
    """A random rooted binary tree: about one branch in ten of length 0, a root length, and
    extra tips whose pruning leaves single-child chains to merge."""
    rng = np.random.default_rng(seed)

    def length() -> float:
        return 0.0 if rng.random() < 0.1 else float(rng.exponential(0.5))

    nodes = [f"t{i}:{length()}" for i in range(N_TIPS)] + [f"x{i}:{length()}" for i in range(10)]
    while len(nodes) > 1:
        i, j = sorted(rng.choice(len(nodes), size=2, replace=False))
        b, a = nodes.pop(j), nodes.pop(i)
        nodes.append(f"({a},{b}):{length()}")
    return TreeNode.read([nodes[0][: nodes[0].rindex(":")] + ":0.3;"])


def random_counts(seed: int) -> sp.csr_matrix:
    """``[N_SAMPLES, N_TIPS]``: 1 to 40 ASVs per sample; rows 0-2 hold a single ASV (row 2
    the one of row 1), row 3 holds none."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((N_SAMPLES, N_TIPS), dtype=np.int64)
    for row in range(N_SAMPLES):
        held = rng.choice(N_TIPS, size=rng.integers(1, 41), replace=False)
        counts[row, held] = rng.integers(1, 50, size=held.size)
    counts[:4] = 0
    counts[0, 5] = 7
    counts[1, 77] = 1
    counts[2, 77] = 300
    return sp.csr_matrix(counts)


@pytest.fixture(scope="module")
def case() -> tuple[TreeNode, list[str], sp.csr_matrix, UniFracEngine]:
    tree = random_tree(3)
    features = [f"t{i}" for i in range(N_TIPS)]
    return tree, features, random_counts(4), UniFracEngine(index_branches(tree, features))


@pytest.mark.parametrize("size", [1, 2, 3, 5, 16, 31, 64])
def test_a_batch_equals_dense_and_scikit_bio(
    case: tuple[TreeNode, list[str], sp.csr_matrix, UniFracEngine], size: int
) -> None:
    tree, features, counts, engine = case
    others = np.random.default_rng(size).permutation(np.arange(4, N_SAMPLES))
    rows = np.r_[[3, 1, 2, 0], others][:size]  # the empty and single-ASV samples first
    batch = counts[rows]
    dist, pd = engine.unweighted_and_faith_pd(batch)
    dense, dense_pd = engine.unweighted_and_faith_pd(batch.toarray(), method="dense")
    assert dist.dtype == torch.float64 and dist.shape == (size, size) and pd.shape == (size,)
    np.testing.assert_allclose(dist.numpy(), dense.numpy(), atol=1e-13, rtol=0)
    np.testing.assert_allclose(pd.numpy(), dense_pd.numpy(), atol=1e-12, rtol=0)
    ref = beta_diversity("unweighted_unifrac", batch.toarray(), taxa=features, tree=tree).data
    ref_pd = alpha_diversity("faith_pd", batch.toarray(), taxa=features, tree=tree).values
    np.testing.assert_allclose(dist.numpy(), ref, atol=1e-12, rtol=0)
    np.testing.assert_allclose(pd.numpy(), ref_pd, atol=1e-12, rtol=0)
    if size >= 3:  # scikit-bio's conventions for the empty sample (row 3 of the table)
        assert pd[0] == 0 and (dist[0, 1:] == 1).all()
        # table rows 1 and 2 hold the same single ASV in different numbers: distance 0 (to
        # rounding: their shared length and Faith PD are sums in different orders)
        assert abs(dist[1, 2].item()) < 1e-12 and pd[1].item() == pytest.approx(pd[2].item())
        assert pd[1] > 0


def test_a_batch_in_every_input_form_and_with_repeated_or_zero_entries(
    case: tuple[TreeNode, list[str], sp.csr_matrix, UniFracEngine],
) -> None:
    _, _, counts, engine = case
    batch = counts[10:40]
    data, indices, indptr = batch.data.copy(), batch.indices.copy(), batch.indptr
    data[0] = 0  # an explicit zero: row 0 no longer holds its first ASV
    odd = sp.csr_matrix(
        (np.r_[data, 3], np.r_[indices, indices[1]], np.r_[indptr[:-1], indptr[-1] + 1]),
        shape=batch.shape,
    )  # and the last row lists row 0's second ASV once more (a repeat, summed by scipy)
    dense = odd.toarray()
    assert dense[0, indices[0]] == 0 and dense[-1, indices[1]] >= 3
    expected, expected_pd = engine.unweighted_and_faith_pd(dense, method="dense")
    for form in (odd, dense, torch.from_numpy(dense), torch.from_numpy(dense).to_sparse()):
        dist, pd = engine.unweighted_and_faith_pd(form)
        np.testing.assert_allclose(dist.numpy(), expected.numpy(), atol=1e-13, rtol=0)
        np.testing.assert_allclose(pd.numpy(), expected_pd.numpy(), atol=1e-12, rtol=0)


def test_float32_engine_returns_float32_within_1e_6(
    case: tuple[TreeNode, list[str], sp.csr_matrix, UniFracEngine],
) -> None:
    tree, features, counts, engine = case
    engine32 = UniFracEngine(index_branches(tree, features), dtype=torch.float32)
    dist, pd = engine32.unweighted_and_faith_pd(counts[:48])
    ref, ref_pd = engine.unweighted_and_faith_pd(counts[:48], method="dense")
    assert dist.dtype == pd.dtype == torch.float32
    np.testing.assert_allclose(dist.numpy(), ref.numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(pd.numpy(), ref_pd.numpy(), rtol=1e-6)
