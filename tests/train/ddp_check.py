"""Run by test_distributed.py under ``torchrun --nproc-per-node 2`` (gloo, CPU).

1. UniFrac pairs across processes: each rank encodes half of a global batch; the gathered
   embeddings give the global batch's distances, the engine gives the true ones, and after
   DDP's gradient averaging every parameter gradient equals the single-process gradient of
   the same loss on the whole batch.
2. ``require_same`` passes equal values and raises on every rank when a rank's differ.
3. A pretraining run with 2 processes, stopped after its first step and resumed, completes;
   rank 0 writes the checkpoints.

test_multinode.py runs it on two torchrun "nodes" of one process each, with one OUT per node.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from aam_core.data.batching import Collator, SampleDataset
from aam_core.data.rarefy import rarefy
from aam_core.data.synthetic import SyntheticSpec, generate, write_study
from aam_core.data.tokens import tokenize
from aam_core.data.unifrac import UniFracEngine, index_branches
from aam_core.errors import ConfigError
from aam_core.io import load_inputs
from aam_core.model import AAMConfig, LossWeights, SequenceEncoder
from aam_core.model.heads import pairwise_distances
from aam_core.train.callbacks import Callback, StepEvent
from aam_core.train.distributed import (
    DistContext,
    barrier,
    gather_counts,
    gather_rows_with_grad,
    init_distributed,
    require_same,
    shutdown,
)
from aam_core.train.losses import unifrac_loss
from aam_core.train.run import run_pretrain
from tests.conftest import pretrain_plan


class Steps(Callback):
    """The optimiser steps rank 0 reports; asks for a stop after ``stop_after`` of them."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.seen: list[int] = []
        self.stop_after = stop_after

    def on_step(self, event: StepEvent) -> None:
        self.seen.append(event.step)

    def should_stop(self) -> bool:
        return self.stop_after is not None and len(self.seen) >= self.stop_after


def main(out: Path) -> None:
    ctx = init_distributed("cpu")
    try:
        check(out, ctx)
        barrier(ctx)
    finally:
        # leaving with the gloo group alive lets its threads abort the process at exit
        # ("terminate called without an active exception", seen once in CI)
        shutdown(ctx)


def check(out: Path, ctx: DistContext) -> None:
    assert ctx.world_size == 2
    require_same({"setting seed": 3, "file table": "ab12"}, ctx)
    try:
        require_same({"setting seed": 3, "file table": f"ab12 on rank {ctx.rank}"}, ctx)
    except ConfigError as exc:
        assert str(exc).endswith("these differ from rank 0: rank 1: file table"), str(exc)
    else:
        raise AssertionError(f"rank {ctx.rank}: require_same let differing values pass")
    study = generate(SyntheticSpec(n_samples=16, n_asvs=60, asvs_per_sample=12, seed=3))
    table = rarefy(study.table, 1000, seed=0).table
    engine = UniFracEngine(index_branches(study.tree, table.feature_ids))
    collate = Collator(tokenize(table.feature_ids), token_limit=64, engine=engine)
    dataset = SampleDataset(table)
    rows = list(range(8))
    mine = rows[ctx.rank * 4 : ctx.rank * 4 + 4]

    torch.manual_seed(0)
    model = SequenceEncoder(AAMConfig.tiny(loss_weights=LossWeights(unifrac=1.0))).train()
    reference = SequenceEncoder(model.config).train()
    reference.load_state_dict(model.state_dict())
    ddp = DistributedDataParallel(model, find_unused_parameters=True)

    batch = collate([dataset[i] for i in mine])
    out_local = ddp(batch)
    z_all = gather_rows_with_grad(out_local.unifrac_z, ctx)  # [8, D]
    true = engine.unweighted(gather_counts(batch.counts, ctx))  # [8, 8]
    loss = unifrac_loss(pairwise_distances(z_all), true)
    loss.backward()

    whole = collate([dataset[i] for i in rows])
    ref_out = reference(whole)
    assert whole.unifrac is not None
    torch.testing.assert_close(true, whole.unifrac, atol=1e-12, rtol=0)  # pairs across ranks
    ref_loss = unifrac_loss(ref_out.unifrac, whole.unifrac)
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss, atol=1e-6, rtol=1e-6)
    worst = 0.0
    for (name, p), (_, q) in zip(
        model.named_parameters(), reference.named_parameters(), strict=True
    ):
        if q.grad is None:
            assert p.grad is None or torch.count_nonzero(p.grad) == 0, name
            continue
        assert p.grad is not None, name
        worst = max(worst, float((p.grad - q.grad).abs().max()))
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4)

    files = write_study(
        generate(SyntheticSpec(n_samples=40, n_asvs=60, asvs_per_sample=12, seed=4)),
        out / f"data{ctx.rank}",
    )
    inputs = load_inputs(files["table"], tree=files["tree"])
    plan = pretrain_plan(inputs, epochs=2, batch_size=4, rarefaction_depth=1000)
    # Stopped after its first step, then resumed: rank 0 alone reads last.pt and sends it on
    # (under test_multinode.py the other rank's OUT has no run directory at all).
    run_pretrain(inputs, plan, out / "run", ctx=ctx, callbacks=Steps(stop_after=1))
    resumed = Steps()
    result = run_pretrain(inputs, plan, out / "run", ctx=ctx, callbacks=resumed, resume=True)
    if ctx.is_main:
        (out / "result.json").write_text(
            json.dumps(
                {
                    "loss": float(loss),
                    "reference_loss": float(ref_loss),
                    "max_grad_diff": worst,
                    "steps": result.fit.steps,
                    "resumed_steps": resumed.seen,
                    "epochs_run": result.fit.epochs_run,
                    "validation": result.validation,
                    "n_train": result.report["n_train"],
                }
            )
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
