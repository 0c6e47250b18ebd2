"""CUDA path check: prints one JSON object and exits non-zero when a check fails.

UniFrac engine on the GPU against the CPU engine (float64 and float32), padding invariance and
deduplication on the GPU (fp32, and bf16 autocast), a packed training step against the padded
one, which SDPA kernels run (flash without
padding, memory-efficient with a mask), a short bf16 pretraining + fine-tuning run on the GPU,
and GPU predictions against CPU predictions of the same checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from aam_core.data.batching import Collator, Sample, SampleDataset
from aam_core.data.rarefy import rarefy
from aam_core.data.synthetic import SyntheticSpec, generate, write_study
from aam_core.data.tokens import tokenize
from aam_core.data.unifrac import UniFracEngine, index_branches
from aam_core.io import load_inputs
from aam_core.model import AAMConfig, LossWeights, SequenceEncoder, SequenceRegressor, TargetConfig
from aam_core.plan import TargetSpec
from aam_core.plan.config import run_settings
from aam_core.predict import Predictor
from aam_core.train.local_plan import plan_local
from aam_core.train.losses import compute_losses
from aam_core.train.run import run_pretrain, run_train

CHECKS: dict[str, Any] = {}
FAILED: list[str] = []


def check(name: str, ok: bool, **details: Any) -> None:
    CHECKS[name] = {"ok": bool(ok), **details}
    if not ok:
        FAILED.append(name)


def unifrac(device: str) -> None:
    study = generate(SyntheticSpec(n_samples=300, n_asvs=500, asvs_per_sample=40, seed=11))
    index = index_branches(study.tree, study.table.feature_ids)
    cpu = UniFracEngine(index).unweighted_and_faith_pd(study.table.counts)
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-6)):
        engine = UniFracEngine(index, device=device, dtype=dtype)
        dist, pd = engine.unweighted_and_faith_pd(study.table.counts)
        d_err = float((dist.cpu().double() - cpu[0]).abs().max())
        p_err = float(((pd.cpu().double() - cpu[1]).abs() / cpu[1].max()).max())
        w_cpu = UniFracEngine(index).weighted_normalized(study.table.counts)
        w_err = float(
            (engine.weighted_normalized(study.table.counts).cpu().double() - w_cpu).abs().max()
        )
        check(
            f"unifrac_{str(dtype)[6:]}",
            max(d_err, p_err, w_err) <= tol,
            unweighted=d_err,
            faith_relative=p_err,
            weighted=w_err,
            tolerance=tol,
        )


def model_invariance(device: str) -> None:
    study = generate(SyntheticSpec(n_samples=64, n_asvs=120, asvs_per_sample=20, seed=21))
    table = rarefy(study.table, 2000, seed=0).table
    dataset = SampleDataset(table)
    collate = Collator(tokenize(table.feature_ids), token_limit=256)
    sizes = [len(dataset[i].features) for i in range(len(dataset))]
    short, longest = int(np.argmin(sizes)), int(np.argmax(sizes))
    torch.manual_seed(0)
    model = SequenceRegressor(AAMConfig.default().with_target(TargetConfig())).to(device).eval()
    alone = collate([dataset[short]]).to(device)
    mixed = collate([dataset[longest], dataset[short], dataset[3]]).to(device)
    many = collate([dataset[i] for i in range(16)]).to(device)
    for label, autocast in (("fp32", False), ("bf16", True)):
        with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=autocast):
            a, m = model(alone), model(mixed)
            dd, ref = model(many, dedup=True), model(many, dedup=False)
        pad = float((a.embedding[0].float() - m.embedding[1].float()).abs().max())
        dedup = float((dd.embedding.float() - ref.embedding.float()).abs().max())
        tol = 1e-5 if label == "fp32" else 5e-2
        finite = bool(torch.isfinite(dd.embedding).all() and torch.isfinite(dd.target).all())
        check(
            f"padding_and_dedup_{label}",
            pad <= tol and dedup <= tol and finite,
            padding_max_diff=pad,
            dedup_max_diff=dedup,
            tolerance=tol,
        )


def packing(device: str) -> None:
    """A pretraining step of the default model with the batch packed equals the padded step
    (fp32, no dropout: losses and every gradient)."""
    rng = np.random.default_rng(5)
    lengths = rng.integers(60, 151, size=300)
    tokens = np.zeros((300, 150), dtype=np.uint8)
    for f, length in enumerate(lengths):
        tokens[f, :length] = rng.integers(1, 5, size=length)
    samples = []
    for row in range(16):
        size = int(rng.integers(1, 120))
        features = rng.choice(300, size=size, replace=False).astype(np.int64)
        counts = np.sort(rng.integers(1, 500, size=size))[::-1].astype(np.int64)
        samples.append(Sample(row, f"s{row}", features, counts))
    batch = Collator(tokens)(samples)
    dist = torch.from_numpy(rng.uniform(0.1, 0.9, size=(16, 16)))
    batch = dataclasses.replace(batch, unifrac=((dist + dist.T) / 2).fill_diagonal_(0))
    torch.manual_seed(0)
    config = AAMConfig.default(loss_weights=LossWeights(unifrac=1.0, nucleotide=1.0))
    config = dataclasses.replace(
        config,
        nucleotide=dataclasses.replace(config.nucleotide, dropout=0.0),
        sample=dataclasses.replace(config.sample, dropout=0.0),
    )
    model = SequenceEncoder(config).to(device).train()
    results = []
    for pack in (False, True):
        step = (
            batch if pack else dataclasses.replace(batch, token_positions=None, slot_positions=None)
        )
        step = step.to(device)
        model.zero_grad()
        torch.manual_seed(1)
        loss = compute_losses(model, model(step), step).total
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((float(loss.detach()), grads))
    (padded_loss, padded), (packed_loss, packed) = results
    grad_diff = max(float((packed[n] - padded[n]).abs().max()) for n in padded)
    check(
        "packed_equals_padded_fp32",
        batch.token_positions is not None
        and batch.slot_positions is not None
        and abs(packed_loss - padded_loss) <= 1e-5
        and grad_diff <= 1e-5,
        loss_diff=abs(packed_loss - padded_loss),
        max_grad_diff=grad_diff,
        tolerance=1e-5,
    )


def sdpa_kernels(device: str) -> None:
    q = torch.randn(64, 4, 150, 32, device=device, dtype=torch.bfloat16)
    mask = torch.ones(64, 1, 1, 150, dtype=torch.bool, device=device)
    mask[:8, ..., 120:] = False
    result: dict[str, bool | str] = {}
    for name, backend, attn_mask in (
        ("flash_no_mask", SDPBackend.FLASH_ATTENTION, None),
        ("efficient_with_mask", SDPBackend.EFFICIENT_ATTENTION, mask),
    ):
        try:
            with sdpa_kernel([backend]):
                torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=attn_mask)
            result[name] = True
        except RuntimeError as exc:
            result[name] = f"failed: {str(exc)[:120]}"
    check("sdpa_kernels", all(v is True for v in result.values()), **result)


def training(device: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files = write_study(
            generate(SyntheticSpec(n_samples=160, n_asvs=200, asvs_per_sample=25, seed=1)), tmp
        )
        inputs = load_inputs(files["table"], tree=files["tree"], metadata=files["metadata"])
        config: dict[str, Any] = {
            "preset": "tiny",
            "epochs": 6,
            "batch_size": 16,
            "lr": 3e-3,
            "rarefaction_depth": 2000,
            "token_limit": 64,
            "patience": 0,
            "precision": "bf16",
            "baseline": True,
        }
        start = time.perf_counter()
        pre_run = plan_local(
            "pretrain", {k: v for k, v in config.items() if k in run_settings("pretrain")}, inputs
        )
        pre = run_pretrain(inputs, pre_run, Path(tmp) / "pre", device=device)
        losses = [r["loss"] for r in pre.fit.history if r["split"] == "train"]
        fine_run = plan_local(
            "train",
            {**config, "epochs": 20},
            inputs,
            target=TargetSpec("age", "regression"),
            base_checkpoint=pre.best_checkpoint,
        )
        fine = run_train(inputs, fine_run, Path(tmp) / "fine", device=device)
        seconds = time.perf_counter() - start
        assert fine.best_checkpoint is not None
        table = inputs.table.subset_samples(np.arange(32))
        on_gpu = Predictor.from_path(fine.best_checkpoint, device=device).predict(
            table, inputs.sequences
        )
        on_cpu = Predictor.from_path(fine.best_checkpoint, device="cpu").predict(
            table, inputs.sequences
        )
        diff = max(
            abs(a.prediction[0] - b.prediction[0])
            for a, b in zip(on_gpu.samples, on_cpu.samples, strict=True)
            if a.prediction and b.prediction
        )
        check(
            "bf16_training",
            all(np.isfinite(losses)) and losses[-1] < losses[0],
            pretrain_train_loss=losses,
            pretrain_validation=pre.validation,
            finetune_validation=fine.validation,
            baseline=fine.baseline["metrics"] if fine.baseline else None,
            seconds=round(seconds, 1),
        )
        # float32 on both devices (prediction turns TF32 off), different kernels: not bit-equal
        scale = float(np.abs([s.prediction[0] for s in on_cpu.samples if s.prediction]).max())
        check(
            "gpu_vs_cpu_prediction",
            diff < 1e-3 * scale,
            max_abs_diff_years=diff,
            relative=diff / scale,
        )


def main() -> None:
    if not torch.cuda.is_available():
        print(json.dumps({"cuda": False}))
        sys.exit(1)
    device = "cuda"
    env = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(),
        "bf16": torch.cuda.is_bf16_supported(),
    }
    for step in (unifrac, model_invariance, packing, sdpa_kernels, training):
        try:
            step(device)
        except Exception as exc:  # report and go on: one run must say as much as possible
            check(step.__name__, False, error=f"{type(exc).__name__}: {exc}"[:500])
    print(json.dumps({"env": env, "checks": CHECKS, "failed": FAILED}, default=str))
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
