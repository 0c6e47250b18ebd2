"""Whole-table UniFrac distance matrices and Faith PD, with an optional Striped UniFrac backend.

The default backend is this package's torch engine (:mod:`aam_core.data.unifrac`). The
``unifrac`` package (Striped UniFrac) is used only when asked for and importable: it needs a
C++ library from conda and does not build from PyPI, so it is never a requirement.
"""

from __future__ import annotations

import importlib.util
from typing import Literal

import numpy as np
import torch
from skbio import TreeNode

from aam_core.data.unifrac import UniFracEngine, index_branches
from aam_core.io.types import FeatureTable

Metric = Literal["unweighted", "weighted_normalized"]
Backend = Literal["auto", "torch", "striped"]


def striped_available() -> bool:
    return importlib.util.find_spec("unifrac") is not None


def distance_matrix(
    table: FeatureTable,
    tree: TreeNode,
    *,
    metric: Metric = "unweighted",
    backend: Backend = "auto",
    device: str = "cpu",
) -> np.ndarray:
    """``float64 [n_samples, n_samples]`` UniFrac distances between all samples of ``table``."""
    if metric not in ("unweighted", "weighted_normalized"):
        raise ValueError(f"metric must be 'unweighted' or 'weighted_normalized', got {metric!r}")
    if backend == "striped":
        return _striped(table, tree, metric)
    if backend not in ("auto", "torch"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'striped', got {backend!r}")
    engine = UniFracEngine(index_branches(tree, table.feature_ids), device=device)
    if metric == "unweighted":
        result = engine.unweighted(table.counts)
    else:
        result = engine.weighted_normalized(table.counts)
    return result.cpu().numpy()


def faith_pd(table: FeatureTable, tree: TreeNode, *, device: str = "cpu") -> np.ndarray:
    """``float64 [n_samples]`` Faith's phylogenetic diversity."""
    engine = UniFracEngine(index_branches(tree, table.feature_ids), device=device)
    result: torch.Tensor = engine.faith_pd(table.counts)
    return result.cpu().numpy()


def _striped(table: FeatureTable, tree: TreeNode, metric: Metric) -> np.ndarray:
    if not striped_available():
        raise RuntimeError(
            "backend 'striped' needs the 'unifrac' package (Striped UniFrac), which is not "
            "installed; install it from bioconda or use backend='torch'"
        )
    import unifrac
    from biom import Table

    biom_table = Table(
        table.counts.T.tocsr().astype(np.float64),
        observation_ids=list(table.feature_ids),
        sample_ids=list(table.sample_ids),
    )
    compute = getattr(unifrac, "unweighted" if metric == "unweighted" else "weighted_normalized")
    result = compute(biom_table, tree)
    return np.asarray(result.filter(list(table.sample_ids)).data, dtype=np.float64)
