"""Training epoch benchmark: prints one JSON object.

Samples/s and seconds for one pretraining epoch and one fine-tuning epoch (regression on
``age`` from the pretrained encoder, encoder trainable) with the default model on generated
data shaped like real 16S tables: 5,500 ASVs of 100-150 bp, about 150 ASVs per sample.
2,500 samples on CUDA, 256 on CPU; bf16 autocast where ``--precision auto`` picks it (CUDA, and
CPUs with native bf16); batches of 64 (the planner's batch size
for a study of 512 samples or more). ``--dataset DIR --target COL`` measures a real study
instead (``table.biom``, ``tree.nwk``, ``metadata.tsv`` and ``rep-seqs.fasta`` when present).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from aam_core.data.synthetic import SyntheticSpec, generate, write_study
from aam_core.io import load_inputs
from aam_core.plan import TargetSpec
from aam_core.plan.config import run_settings
from aam_core.train.callbacks import Callback, EpochEvent, StepEvent
from aam_core.train.local_plan import plan_local
from aam_core.train.loop import autocast_for
from aam_core.train.run import run_pretrain, run_train


class Timer(Callback):
    """Per epoch: when its last optimiser step ended, and when the epoch (with validation)
    ended. An epoch's training time runs from the previous epoch's end (or the run's start)
    to its last step, so it includes starting the data loader workers."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.last_step: dict[int, float] = {}
        self.epoch_end: dict[int, float] = {}
        self.steps: dict[int, int] = {}

    def on_step(self, event: StepEvent) -> None:
        self.last_step[event.epoch] = time.perf_counter()
        self.steps[event.epoch] = self.steps.get(event.epoch, 0) + 1

    def on_epoch(self, event: EpochEvent) -> None:
        self.epoch_end[event.epoch] = time.perf_counter()


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def summary(timer: Timer, n_train: int, device: str) -> dict[str, Any]:
    epochs = sorted(timer.last_step)
    out: dict[str, Any] = {"train_samples": n_train, "epochs": []}
    for epoch in epochs:
        begin = timer.epoch_end.get(epoch - 1, timer.started)
        seconds = timer.last_step[epoch] - begin
        out["epochs"].append(
            {
                "epoch": epoch,
                "optimiser_steps": timer.steps[epoch],
                "train_seconds": round(seconds, 2),
                "samples_per_second": round(n_train / seconds, 2),
                "epoch_seconds_with_validation": round(timer.epoch_end[epoch] - begin, 2),
            }
        )
    out["samples_per_second"] = out["epochs"][-1]["samples_per_second"]  # warm epoch
    out["peak_memory_mb"] = round(peak_memory_mb(device), 1)
    return out


def precision_used(precision: str, device: str) -> str:
    """What the trainer runs for ``precision`` (see ``autocast_for``)."""
    bf16 = autocast_for(torch.device(device), precision)
    return "bf16 autocast" if isinstance(bf16, torch.autocast) else "fp32"


def main() -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument("--samples", type=int, default=2500 if cuda else 256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dataset", type=Path, help="a real study's folder instead")
    parser.add_argument("--target", default="age", help="the fine-tuning target (regression)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1) if cuda else 0)
    parser.add_argument("--preset", default="default", choices=["default", "tiny"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args()
    spec = SyntheticSpec(
        n_samples=args.samples, n_asvs=5500, asvs_per_sample=150, depth_range=(8000, 20000), seed=7
    )
    with tempfile.TemporaryDirectory() as tmp:
        if args.dataset is None:
            paths = write_study(generate(spec), tmp)
            inputs = load_inputs(paths["table"], tree=paths["tree"], metadata=paths["metadata"])
        else:
            fasta = args.dataset / "rep-seqs.fasta"
            inputs = load_inputs(
                args.dataset / "table.biom",
                tree=args.dataset / "tree.nwk",
                metadata=args.dataset / "metadata.tsv",
                sequences=fasta if fasta.exists() else None,
            )
        table = inputs.table
        inputs_summary = {
            "samples": table.n_samples,
            "asvs": table.n_features,
            "asvs_per_sample": round(table.counts.getnnz() / table.n_samples, 1),
        }
        config = {
            "preset": args.preset,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "rarefaction_depth": 5000,
            "validation_fraction": 0.1,
            "baseline": False,
            "patience": 0,
            "num_workers": args.workers,
            "precision": args.precision,
        }
        results: dict[str, Any] = {}
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        timer = Timer()
        pretrain = {k: v for k, v in config.items() if k in run_settings("pretrain")}
        pre_run = plan_local("pretrain", pretrain, inputs)
        pre = run_pretrain(inputs, pre_run, Path(tmp) / "pre", callbacks=timer, device=args.device)
        results["pretrain"] = summary(timer, pre.report["n_train"], args.device)
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        timer = Timer()
        fine_run = plan_local(
            "train",
            config,
            inputs,
            target=TargetSpec(args.target, "regression"),
            base_checkpoint=pre.best_checkpoint,
        )
        fine = run_train(inputs, fine_run, Path(tmp) / "fine", callbacks=timer, device=args.device)
        results["finetune"] = summary(timer, fine.report["n_train"], args.device)
    device = args.device + (
        f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""
    )
    print(
        json.dumps(
            {
                "benchmark": "train_epoch",
                "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs",
                "device": device,
                "precision": precision_used(args.precision, args.device),
                "torch": torch.__version__,
                "config": args.preset,
                "data": str(args.dataset or "generated"),
                "samples": inputs_summary["samples"],
                "asvs": inputs_summary["asvs"],
                "asvs_per_sample": inputs_summary["asvs_per_sample"],
                "batch_size": args.batch_size,
                "loader_workers": args.workers,
                "note": "epoch 1 train_seconds include data preparation and warm-up; "
                "samples_per_second is the last (warm) epoch's",
                **results,
            }
        )
    )


if __name__ == "__main__":
    main()
