"""Synthetic 16S-like studies: ASV sequences related by a random tree, and samples whose
composition carries a numeric (``age``) and a categorical (``site``) metadata column.

Used by tests, the demo and benchmarks. :func:`write_study` writes real BIOM (HDF5), Newick
and QIIME-style TSV files, so the generated data goes through the same readers as a lab's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from skbio import TreeNode

from aam_core.data.tokens import BASES
from aam_core.io.types import FeatureTable


@dataclass(frozen=True, kw_only=True)
class SyntheticSpec:
    n_samples: int = 200
    n_asvs: int = 400
    asvs_per_sample: int = 60  # mean number of distinct ASVs in a sample
    seq_len: int = 150
    short_fraction: float = 0.1  # ASVs trimmed to 100-149 bp (sequence lengths vary in real data)
    depth_range: tuple[int, int] = (3000, 12000)
    n_sites: int = 3
    samples_per_subject: int = 4
    mutation_rate: float = 0.3  # substitutions per site per unit branch length
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_samples < 2:
            raise ValueError(f"n_samples must be >= 2, got {self.n_samples}")
        if not 2 <= self.asvs_per_sample <= self.n_asvs:
            raise ValueError(
                f"asvs_per_sample must be in [2, n_asvs={self.n_asvs}], got {self.asvs_per_sample}"
            )
        if self.n_sites < 2:
            raise ValueError(f"n_sites must be >= 2, got {self.n_sites}")
        if not 0 < self.depth_range[0] <= self.depth_range[1]:
            raise ValueError(f"depth_range must be 0 < low <= high, got {self.depth_range}")


@dataclass(frozen=True, eq=False)
class SyntheticStudy:
    table: FeatureTable  # feature IDs are the DNA sequences themselves
    tree: TreeNode
    metadata: pd.DataFrame  # index sample ID; columns age (float), site (str), subject (str)


def random_tree(n_tips: int, rng: np.random.Generator) -> tuple[TreeNode, list[TreeNode]]:
    """A random rooted binary tree (coalescent-like merges) with exponential branch lengths."""
    tips = [TreeNode(name=f"t{i}") for i in range(n_tips)]
    pool = list(tips)
    while len(pool) > 1:
        i, j = sorted(rng.choice(len(pool), size=2, replace=False))
        b, a = pool.pop(j), pool.pop(i)
        a.length, b.length = rng.exponential(0.08, size=2) + 0.005
        pool.append(TreeNode(children=[a, b]))
    return pool[0], tips


def _evolve(tree: TreeNode, spec: SyntheticSpec, rng: np.random.Generator) -> dict[int, str]:
    root_seq = rng.integers(0, 4, size=spec.seq_len)
    seqs: dict[int, np.ndarray] = {id(tree): root_seq}
    for node in tree.preorder(include_self=False):
        parent_seq = seqs[id(node.parent)]
        p_change = 1.0 - np.exp(-spec.mutation_rate * float(node.length))
        change = rng.random(spec.seq_len) < p_change
        child = parent_seq.copy()
        child[change] = (child[change] + rng.integers(1, 4, size=int(change.sum()))) % 4
        seqs[id(node)] = child
    letters = np.array(list(BASES))
    return {key: "".join(letters[s]) for key, s in seqs.items()}


def generate(spec: SyntheticSpec) -> SyntheticStudy:
    rng = np.random.default_rng(spec.seed)
    tree, tips = random_tree(spec.n_asvs, rng)
    seqs = _evolve(tree, spec, rng)
    sequences: list[str] = []
    seen: set[str] = set()
    for tip in tips:
        s = seqs[id(tip)]
        if rng.random() < spec.short_fraction:
            s = s[: int(rng.integers(100, spec.seq_len))]
        while s in seen:  # distinct ASVs have distinct sequences
            s = s[:-1] + BASES[(BASES.index(s[-1]) + 1) % 4]
        seen.add(s)
        sequences.append(s)
        tip.name = s

    # Each site favours one clade; age shifts weight towards another clade.
    order = [t.name for t in tree.tips()]  # tree order: contiguous blocks are clades
    position = {name: k for k, name in enumerate(order)}
    asv_pos = np.array([position[s] for s in sequences]) / spec.n_asvs  # [n_asvs] in [0, 1)
    n_subjects = max(1, spec.n_samples // spec.samples_per_subject)
    subject_age = rng.uniform(1, 80, size=n_subjects)
    subject_site = rng.integers(0, spec.n_sites, size=n_subjects)
    base_weight = rng.lognormal(0, 1, size=spec.n_asvs)

    rows, cols, vals = [], [], []
    ages, sites, subjects = [], [], []
    for i in range(spec.n_samples):
        subj = i % n_subjects
        age = float(subject_age[subj] + rng.normal(0, 2))
        site = int(subject_site[subj])
        site_centre = (site + 0.5) / spec.n_sites
        clade = np.exp(-(((asv_pos - site_centre) / 0.15) ** 2))  # site clade
        # Ageing shifts weight smoothly along the tree: older hosts carry more of the clades
        # at one end, younger hosts more of the other.
        ageing = np.exp(6.0 * (age / 80.0 - 0.5) * (2.0 * asv_pos - 1.0))
        weight = base_weight * (0.3 + 2.0 * clade) * ageing
        n_present = int(np.clip(rng.poisson(spec.asvs_per_sample), 2, spec.n_asvs))
        present = rng.choice(spec.n_asvs, size=n_present, replace=False, p=weight / weight.sum())
        proportions = rng.dirichlet(weight[present] / weight[present].mean() + 0.1)
        depth = int(rng.integers(spec.depth_range[0], spec.depth_range[1] + 1))
        counts = rng.multinomial(depth, proportions)
        nz = counts > 0
        rows.extend([i] * int(nz.sum()))
        cols.extend(present[nz].tolist())
        vals.extend(counts[nz].tolist())
        ages.append(round(age, 2))
        sites.append(f"site_{chr(ord('A') + site)}")
        subjects.append(f"subject_{subj:04d}")

    sample_ids = tuple(f"S{i:05d}" for i in range(spec.n_samples))
    counts = sp.csr_matrix(
        (np.asarray(vals, dtype=np.int64), (rows, cols)), shape=(spec.n_samples, spec.n_asvs)
    )
    table = FeatureTable(sample_ids, tuple(sequences), counts, source="synthetic")
    metadata = pd.DataFrame(
        {"age": ages, "site": sites, "subject": subjects},
        index=pd.Index(sample_ids, name="sample_id"),
    )
    return SyntheticStudy(table=table, tree=tree, metadata=metadata)


def write_study(study: SyntheticStudy, directory: str | Path) -> dict[str, Path]:
    """Write ``table.biom`` (BIOM 2.1 HDF5), ``tree.nwk`` and ``metadata.tsv``."""
    from biom import Table
    from biom.util import biom_open

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "table": out / "table.biom",
        "tree": out / "tree.nwk",
        "metadata": out / "metadata.tsv",
    }
    table = Table(
        study.table.counts.T.tocsr().astype(np.float64),
        observation_ids=list(study.table.feature_ids),
        sample_ids=list(study.table.sample_ids),
    )
    with biom_open(str(paths["table"]), "w") as handle:
        table.to_hdf5(handle, generated_by="aam_core.data.synthetic")
    study.tree.write(str(paths["tree"]), format="newick")
    study.metadata.to_csv(paths["metadata"], sep="\t", index_label="sample_id")
    return paths
