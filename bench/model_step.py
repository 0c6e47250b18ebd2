"""Model step benchmark: prints one JSON object.

Forward + backward samples/s and peak memory of the ``default()`` pretraining model at batch 16
on data shaped like real 16S data (150 ASVs per sample, 150 bp, each ASV of the batch in two
samples, so half of the batch's ASV slots are shared), with and without per-batch ASV
deduplication; ``dedup_speedup`` is their ratio. On CUDA: bf16 autocast and flash SDPA.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from aam_core.data.batching import Batch, Collator, Sample
from aam_core.model import AAMConfig, LossWeights, SequenceEncoder
from aam_core.train.losses import compute_losses


def make_batch(batch_size: int, asvs: int, bp: int, seed: int) -> tuple[Batch, float]:
    """Each distinct ASV sits in exactly two consecutive samples (shared fraction 0.5)."""
    rng = np.random.default_rng(seed)
    n_distinct = batch_size * asvs // 2
    tokens = rng.integers(1, 5, size=(n_distinct, bp), dtype=np.uint8)  # [U, bp]
    step = asvs // 2
    samples = []
    for i in range(batch_size):
        features = (np.arange(asvs) + i * step) % n_distinct
        counts = np.sort(rng.integers(1, 200, size=asvs))[::-1].astype(np.int64)
        samples.append(Sample(i, f"s{i}", features.astype(np.int64), counts))
    batch = Collator(tokens, token_limit=1024)(samples)
    b = batch.size
    dist = torch.from_numpy(rng.uniform(0.2, 0.9, size=(b, b)))
    dist = (dist + dist.T) / 2
    dist.fill_diagonal_(0)
    shared = 1 - batch.tokens.shape[0] / int(batch.mask.sum())
    return dataclasses.replace(batch, unifrac=dist), shared


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS


def run(
    model: SequenceEncoder, batch: Batch, device: torch.device, dedup: bool, steps: int, warmup: int
) -> dict[str, Any]:
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else contextlib.nullcontext()
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast:
            out = model(batch, dedup=dedup)
            loss = compute_losses(model, out, batch)
        optimiser.zero_grad(set_to_none=True)
        loss.total.backward()
        optimiser.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    return {
        "seconds_per_step": round(seconds, 4),
        "samples_per_second": round(batch.size / seconds, 2),
        "peak_memory_mb": round(peak_memory_mb(device), 1),
    }


def measure(args: argparse.Namespace, dedup: bool) -> dict[str, Any]:
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    weights = LossWeights(unifrac=1.0, nucleotide=1.0)
    model = SequenceEncoder(AAMConfig.default(loss_weights=weights)).to(device).train()
    batch, shared = make_batch(args.batch_size, args.asvs, args.bp, seed=0)
    batch = batch.to(device)
    sdpa: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if device.type == "cuda":
        backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
        sdpa = sdpa_kernel(backends)
    with sdpa:
        result = run(model, batch, device, dedup, args.steps, args.warmup)
    result["distinct_asvs"] = int(batch.tokens.shape[0])
    result["shared_fraction"] = round(shared, 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--asvs", type=int, default=150)
    parser.add_argument("--bp", type=int, default=150)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--mode", choices=["dedup", "no_dedup"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:  # child: one mode per process, so each peak memory is its own
        print(json.dumps(measure(args, dedup=args.mode == "dedup")))
        return
    results = {}
    for mode in ("no_dedup", "dedup"):
        child = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--mode", mode],
            check=True,
            capture_output=True,
            text=True,
        )
        results[mode] = json.loads(child.stdout.strip().splitlines()[-1])
    shared = results["dedup"].pop("shared_fraction")
    distinct = results["dedup"].pop("distinct_asvs")
    for r in results.values():
        r.pop("shared_fraction", None)
        r.pop("distinct_asvs", None)
    device = torch.device(args.device)
    print(
        json.dumps(
            {
                "benchmark": "model_step",
                "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs",
                "device": str(device)
                + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
                "precision": "bf16 autocast" if device.type == "cuda" else "fp32",
                "torch": torch.__version__,
                "config": "default",
                "batch_size": args.batch_size,
                "asvs_per_sample": args.asvs,
                "bp": args.bp,
                "distinct_asvs": distinct,
                "shared_fraction": shared,
                **results,
                "dedup_speedup": round(
                    results["dedup"]["samples_per_second"]
                    / results["no_dedup"]["samples_per_second"],
                    2,
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
