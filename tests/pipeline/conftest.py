from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from skbio import TreeNode

from aam_core.data.synthetic import SyntheticSpec, SyntheticStudy, generate
from aam_core.io.types import FeatureTable

DATA = Path(__file__).parent.parent / "data"

# The hand-checked tiny study (tests/data/tiny_tree.nwk):
#
#   root ─┬─ X (1) ─┬─ AAAA (1)
#         │         └─ CCCC (2)
#         └─ Z (0.5) ┬─ GGGG (1)
#                    └─ Y (2) ─┬─ TTTT (1)
#                              └─ ACGT (1)
TINY_FEATURES = ("AAAA", "CCCC", "GGGG", "TTTT", "ACGT")
TINY_COUNTS = np.array(
    [
        [10, 5, 0, 0, 0],  # S1: A, B          -> branches A, B, X          (PD 4)
        [0, 3, 7, 0, 0],  # S2: B, C          -> branches B, X, C, Z       (PD 4.5)
        [0, 0, 0, 2, 2],  # S3: D, E          -> branches D, E, Y, Z       (PD 4.5)
        [1, 0, 0, 0, 9],  # S4: A, E          -> branches A, X, E, Y, Z    (PD 5.5)
    ]
)


@pytest.fixture
def tiny_tree() -> TreeNode:
    return TreeNode.read(str(DATA / "tiny_tree.nwk"), convert_underscores=False)


@pytest.fixture
def tiny_table() -> FeatureTable:
    return FeatureTable(
        ("S1", "S2", "S3", "S4"), TINY_FEATURES, sp.csr_matrix(TINY_COUNTS.astype(np.int64))
    )


@pytest.fixture(scope="session")
def study() -> SyntheticStudy:
    """Generated data with hundreds of samples (small enough for scikit-bio in seconds)."""
    return generate(SyntheticSpec(n_samples=300, n_asvs=500, asvs_per_sample=40, seed=11))
