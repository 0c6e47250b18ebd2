"""UniFrac engine benchmark: prints one JSON object.

On a generated table shaped like real 16S data (2,500 samples x 5,500 ASVs by default):
the engine's full-matrix unweighted UniFrac time and its per-batch (B = 32) time; on a
300-sample subset, the engine's and scikit-bio's full-matrix times, their ratio as ``speedup``
and the largest absolute difference (float64).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from skbio.diversity import beta_diversity

from aam_core.data.synthetic import SyntheticSpec, generate
from aam_core.data.unifrac import UniFracEngine, index_branches


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=2500)
    parser.add_argument("--asvs", type=int, default=5500)
    parser.add_argument("--asvs-per-sample", type=int, default=150)
    parser.add_argument("--subset", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    spec = SyntheticSpec(
        n_samples=args.samples, n_asvs=args.asvs, asvs_per_sample=args.asvs_per_sample, seed=7
    )
    study = generate(spec)
    table = study.table
    index_time, index = best_of(lambda: index_branches(study.tree, table.feature_ids), 1)
    engine = UniFracEngine(index, device=args.device)

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def full() -> torch.Tensor:
        d = engine.unweighted(table.counts)
        sync()
        return d

    full_time, _ = best_of(full, args.repeats)
    batches = [table.counts[i : i + args.batch] for i in range(0, 20 * args.batch, args.batch)]

    def per_batch() -> None:
        for b in batches:
            engine.unweighted_and_faith_pd(b)
        sync()

    batch_time, _ = best_of(per_batch, args.repeats)
    subset = table.counts[: args.subset]

    def engine_subset() -> np.ndarray:
        d = engine.unweighted(subset)
        sync()
        return d.cpu().numpy()

    engine_subset_time, ours = best_of(engine_subset, args.repeats)
    skbio_time, reference = best_of(
        lambda: (
            beta_diversity(
                "unweighted_unifrac",
                subset.toarray(),
                taxa=list(table.feature_ids),
                tree=study.tree,
            ).data
        ),
        1,
    )
    print(
        json.dumps(
            {
                "benchmark": "unifrac",
                "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
                f"{os.cpu_count()} CPUs",
                "device": args.device,
                "torch": torch.__version__,
                "n_samples": table.n_samples,
                "n_features": table.n_features,
                "n_branches": index.n_branches,
                "index_seconds": round(index_time, 4),
                "full_matrix_seconds": round(full_time, 4),
                "batch_size": args.batch,
                "per_batch_seconds": round(batch_time / len(batches), 6),
                "subset_samples": args.subset,
                "subset_engine_seconds": round(engine_subset_time, 4),
                "subset_skbio_seconds": round(skbio_time, 3),
                "speedup": round(skbio_time / engine_subset_time, 1),
                "max_abs_diff": float(np.abs(ours - reference).max()),
            }
        )
    )


if __name__ == "__main__":
    main()
