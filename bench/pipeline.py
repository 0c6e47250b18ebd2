"""Input pipeline benchmark: prints one JSON object.

The CPU side of training, on one core (``torch.set_num_threads(1)``), as a data loader worker
runs it: each sample's rarefied ASVs in rank order, then per batch the distinct ASVs and their
token rows, the index map, the abundance features, the UniFrac targets and Faith PD, and the
batch's tensors. Data shaped like real 16S tables (the training benchmark's:
5,500 ASVs of 100-150 bp, about 150 ASVs per sample, 8,000-20,000 reads rarefied to 5,000).

Two settings: the default, one rarefaction for the run (its UniFrac matrix computed once, as
training does for splits of up to ``PRECOMPUTED_UNIFRAC_MAX`` samples), and ``rerarefy`` (a
new rarefaction every epoch, so UniFrac per batch). Reports samples/s per core for the whole
pipeline and, timed apart, for drawing the samples and for collating them (with rerarefy, also
without the UniFrac targets); the one-off set-up (tokens, tree index, the matrix) apart.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import time
from typing import Any

import numpy as np
import torch

from aam_core.data.batching import Collator, SampleDataset
from aam_core.data.rarefy import rarefy
from aam_core.data.synthetic import SyntheticSpec, generate
from aam_core.data.tokens import tokenize
from aam_core.data.unifrac import UniFracEngine, index_branches


def timed(fn: Any, repeats: int) -> float:
    """Best of ``repeats`` wall-clock seconds of ``fn()``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure(
    dataset: SampleDataset, collate: Collator, batch_size: int, repeats: int
) -> dict[str, Any]:
    """Samples/s of the whole pipeline over one epoch, and of its stages timed apart."""
    n = len(dataset)
    order = np.random.default_rng(0).permutation(n)
    batches = [order[i : i + batch_size].tolist() for i in range(0, n, batch_size)]
    epoch = itertools.count(1)  # a new draw for every pass with rerarefy

    def samples() -> list[Any]:
        dataset.set_epoch(next(epoch))
        return [[dataset[i] for i in rows] for rows in batches]

    drawn = samples()

    def whole() -> None:
        dataset.set_epoch(next(epoch))
        for rows in batches:
            collate([dataset[i] for i in rows])

    def collation(collate: Collator = collate) -> None:
        for batch in drawn:
            collate(batch)

    stages = {
        "pipeline": timed(whole, repeats),
        "samples": timed(samples, repeats),
        "collation": timed(collation, repeats),
    }
    if collate.engine is not None:  # the share of the per-batch UniFrac targets
        plain = Collator(collate.tokens, token_limit=collate.token_limit)
        stages["collation_without_unifrac"] = timed(lambda: collation(plain), repeats)
    distinct = [len(np.unique(np.concatenate([s.features for s in b]))) for b in drawn]
    return {
        "samples_per_second_per_core": round(n / stages["pipeline"], 1),
        "stages_samples_per_second": {k: round(n / v, 1) for k, v in stages.items()},
        "distinct_asvs_per_batch": round(float(np.mean(distinct)), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=2500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--depth", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)

    spec = SyntheticSpec(
        n_samples=args.samples,
        n_asvs=5500,
        asvs_per_sample=150,
        depth_range=(8000, 20000),
        seed=7,
    )
    study = generate(spec)
    table = study.table
    started = time.perf_counter()
    tokens = tokenize(table.feature_ids, max_bp=150)
    engine = UniFracEngine(index_branches(study.tree, table.feature_ids))
    setup = {"tokens_and_tree_index": time.perf_counter() - started}

    # The default: one rarefaction for the run, so one UniFrac matrix and Faith PD for the
    # split (as aam_core.train.prepare does up to PRECOMPUTED_UNIFRAC_MAX samples).
    started = time.perf_counter()
    rarefied = rarefy(table, args.depth, seed=0).table
    matrix, faith = engine.unweighted_and_faith_pd(rarefied.counts)
    static = SampleDataset(rarefied)
    setup["rarefaction_unifrac_matrix_and_ranking"] = time.perf_counter() - started
    once = Collator(tokens, distances=matrix.numpy(), faith_pd=faith.numpy())
    # rerarefy: a new rarefaction of every sample each epoch, UniFrac computed per batch
    redrawn = SampleDataset(table, depth=args.depth, seed=0, rerarefy=True)
    per_batch = Collator(tokens, engine=engine)
    print(
        json.dumps(
            {
                "benchmark": "pipeline",
                "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs",
                "cores": 1,
                "samples": table.n_samples,
                "asvs": table.n_features,
                "asvs_per_sample": round(table.counts.getnnz() / table.n_samples, 1),
                "batch_size": args.batch_size,
                "depth": args.depth,
                "setup_seconds": {k: round(v, 2) for k, v in setup.items()},
                "rarefied_once": measure(static, once, args.batch_size, args.repeats),
                "rerarefy": measure(redrawn, per_batch, args.batch_size, args.repeats),
            }
        )
    )


if __name__ == "__main__":
    main()
