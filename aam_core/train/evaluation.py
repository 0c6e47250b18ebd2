"""Running a model over a dataset's batches: the data loader, autocast, and evaluation in eval
mode. Training (:mod:`aam_core.train.loop`) and the final validation of a run share them."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader

from aam_core.data.batching import Batch, Collator, SampleDataset
from aam_core.model import SequenceEncoder, SequenceRegressor
from aam_core.train.losses import compute_losses
from aam_core.train.tracking import Tracker, base_of

Model = SequenceEncoder | SequenceRegressor


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX-512 BF16 or AMX): there bf16
    matrix products run two to three times faster than fp32 ones; elsewhere they are emulated."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for "bf16", and for "auto" on CUDA and on CPUs with native bf16
    (:func:`cpu_has_bf16`); fp32 otherwise."""
    if device.type not in ("cuda", "cpu") or precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16" or device.type == "cuda" or cpu_has_bf16():
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_loader(
    dataset: SampleDataset,
    collate: Collator,
    batches: list[list[int]],
    num_workers: int,
    device: torch.device,
) -> DataLoader[Batch]:
    """Batches in the given order (seeded by the caller), collated in worker processes.

    The loader gets its own generator: drawing its worker seed from torch's global generator
    would shift the dropout and masking draws of a run resumed in the middle of an epoch.
    """
    return DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_sampler=batches,
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(0),
    )


def evaluate_rows(
    model: Model,
    dataset: SampleDataset,
    collate: Collator,
    rows: np.ndarray,
    *,
    batch_size: int,
    device: torch.device,
    precision: str = "auto",
    class_weights: torch.Tensor | None = None,
    keep: bool = False,
    num_workers: int = 0,
) -> Tracker:
    """Losses, metrics (and with ``keep`` predictions) of ``rows`` of ``dataset``, in eval
    mode (no dropout, no masking) without gradients."""
    batches = [rows[i : i + batch_size].tolist() for i in range(0, len(rows), batch_size)]
    tracker = Tracker(model, keep_predictions=keep)
    scored = set(pair_rows(rows).tolist())  # the samples whose pairs UniFrac is scored on
    z: list[torch.Tensor] = []  # [b, D] each: their UniFrac embeddings
    counts: list[sp.csr_matrix] = []  # [b, n_features] each: their rarefied reads
    scored_rows: list[np.ndarray] = []  # [b] each: their rows
    was_training = model.training
    model.eval()
    with torch.no_grad(), autocast_for(device, precision):
        for batch in make_loader(dataset, collate, batches, num_workers, device):
            batch = batch.to(device, non_blocking=True)
            output = model(batch)
            loss = compute_losses(model, output, batch, class_weights)
            tracker.update(batch, output, loss, pairs=False)
            if output.unifrac_z is not None:
                batch_rows = batch.rows.cpu().numpy()
                chosen = np.flatnonzero([int(r) in scored for r in batch_rows])
                z.append(output.unifrac_z.float()[torch.from_numpy(chosen).to(device)])
                counts.append(batch.counts[chosen])
                scored_rows.append(batch_rows[chosen])
        if z:
            head = base_of(model).unifrac_head
            predicted = head.distances(torch.cat(z))  # [P, P]
            true = collate.unifrac(sp.vstack(counts), np.concatenate(scored_rows))  # [P, P]
            pairs = tracker.pretrain.update_unifrac(predicted, true)
            if keep:
                tracker.distance_pairs = pairs
    model.train(was_training)
    return tracker


# Validation scores UniFrac on every pair of up to this many samples (2 million pairs): the
# pairs of consecutive rows that share a batch would over-represent neighbours in the table
# (often one subject's samples), and all pairs of a large split would not fit in memory.
PAIR_SAMPLES = 2048


def pair_rows(rows: np.ndarray) -> np.ndarray:
    """The evaluated rows whose pairs are scored: all, or ``PAIR_SAMPLES`` spread evenly."""
    if rows.size <= PAIR_SAMPLES:
        return rows
    return rows[np.linspace(0, rows.size - 1, PAIR_SAMPLES).round().astype(np.int64)]
