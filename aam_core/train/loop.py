"""The training loop: AdamW, warmup + cosine, clipping, accumulation, bf16 autocast on CUDA,
optional torch.compile, DDP, early stopping, best/last checkpoints and exact resume."""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from aam_core.checkpoint import Checkpoint, checkpoint_from_model, save_checkpoint
from aam_core.data.batching import Batch, Collator, SampleDataset
from aam_core.model import SequenceEncoder, SequenceRegressor
from aam_core.model.heads import pairwise_distances
from aam_core.train.callbacks import Callback, CallbackList, EpochEvent, StepEvent
from aam_core.train.config import RunConfig, Stage
from aam_core.train.distributed import (
    DistContext,
    any_rank,
    barrier,
    gather_counts,
    gather_objects,
    gather_rows_with_grad,
    shard,
)
from aam_core.train.losses import compute_losses
from aam_core.train.schedule import warmup_cosine
from aam_core.train.tracking import Tracker

Model = SequenceEncoder | SequenceRegressor
BEST, LAST = "best.pt", "last.pt"


@dataclass(frozen=True)
class FitResult:
    history: list[dict[str, Any]]  # one record per epoch and split
    monitor: str
    best_epoch: int
    best_value: float | None
    stopped: str  # completed | early_stopping | requested
    epochs_run: int
    steps: int
    best_checkpoint: Path | None
    last_checkpoint: Path


@dataclass
class RunData:
    train: SampleDataset
    validation: SampleDataset | None
    train_collate: Collator
    validation_collate: Collator | None


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA ("auto" or "bf16"); fp32 on CPU."""
    use_bf16 = device.type == "cuda" and precision in ("auto", "bf16")
    if precision == "bf16" and device.type != "cuda":
        raise ValueError("precision 'bf16' needs a CUDA device; use 'auto' or 'fp32' on CPU")
    if use_bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
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
    was_training = model.training
    model.eval()
    with torch.no_grad(), autocast_for(device, precision):
        for batch in make_loader(dataset, collate, batches, num_workers, device):
            batch = batch.to(device, non_blocking=True)
            output = model(batch)
            tracker.update(batch, output, compute_losses(model, output, batch, class_weights))
    model.train(was_training)
    return tracker


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    def __init__(
        self,
        model: Model,
        data: RunData,
        config: RunConfig,
        *,
        stage: Stage,
        out_dir: Path,
        checkpoint_fields: Callable[[], dict[str, Any]],
        callbacks: Callback | None = None,
        ctx: DistContext | None = None,
        class_weights: torch.Tensor | None = None,
    ) -> None:
        self.ctx = ctx or DistContext()
        self.device = self.ctx.device
        self.model = model.to(self.device)  # the plain module: configs, checkpoints
        self.data = data
        self.config = config
        self.stage = stage
        self.out_dir = Path(out_dir)
        self.checkpoint_fields = checkpoint_fields
        self.callbacks = callbacks or CallbackList()
        self.class_weights = None if class_weights is None else class_weights.to(self.device)
        task = None
        if isinstance(model, SequenceRegressor) and model.config.target is not None:
            task = model.config.target.task
        self.monitor, self.mode = config.monitor_metric(stage, task)
        self.autocast = autocast_for(self.device, config.precision)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        trainable = (
            model.trainable_parameters()
            if isinstance(model, SequenceRegressor)
            else [p for p in model.parameters() if p.requires_grad]
        )
        self.parameters = trainable
        self.optimiser = torch.optim.AdamW(
            trainable,
            lr=config.lr,
            weight_decay=config.weight_decay,
            fused=self.device.type == "cuda",  # one kernel for all parameters on GPUs
        )
        self.batches_per_epoch = math.ceil(
            len(shard(np.arange(len(data.train)), self.ctx, pad=True)) / config.batch_size
        )
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / config.grad_accumulation)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.scheduler = warmup_cosine(self.optimiser, self.total_steps, config.warmup_fraction)
        self.forward: torch.nn.Module = self.model
        if self.ctx.enabled:
            self.forward = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,  # heads with a zero loss weight never run
            )
        if config.compile:
            self.forward = torch.compile(self.forward)  # type: ignore[assignment]

    # -- checkpoints ---------------------------------------------------------------------

    def _save(self, name: str, *, metrics: dict[str, Any], resume: dict[str, Any] | None) -> Path:
        fields = dict(self.checkpoint_fields())
        checkpoint: Checkpoint = checkpoint_from_model(
            self.model, metrics=metrics, resume=resume, **fields
        )
        return save_checkpoint(checkpoint, self.out_dir / "checkpoints" / name)

    def _resume_state(self, epoch: int, batches_done: int, state: dict[str, Any]) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "batches_done": batches_done,
            "optimizer": self.optimiser.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": _rng_state(),
            "world_size": self.ctx.world_size,
            **state,
        }

    # -- loop ----------------------------------------------------------------------------

    def _loader(
        self, dataset: SampleDataset, collate: Collator, batches: list[list[int]]
    ) -> DataLoader[Batch]:
        return make_loader(dataset, collate, batches, self.config.num_workers, self.device)

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        order = np.random.default_rng([self.config.seed, epoch]).permutation(len(self.data.train))
        rows = shard(order, self.ctx, pad=True)
        size = self.config.batch_size
        return [rows[i : i + size].tolist() for i in range(0, len(rows), size)]

    def _global_unifrac(self, batch: Batch, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """DDP: distances of the global batch (every rank's samples), predicted and true."""
        z_all = gather_rows_with_grad(z.float(), self.ctx)  # [G, D]
        collate = self.data.train_collate
        if collate.engine is not None:
            counts = gather_counts(batch.counts, self.ctx)
            true = collate.engine.unweighted(counts).to(self.device)  # [G, G]
        else:
            assert collate.distances is not None
            rows = np.concatenate(gather_objects(batch.rows.cpu().numpy(), self.ctx))
            true = torch.from_numpy(collate.distances[np.ix_(rows, rows)]).to(self.device)
        return pairwise_distances(z_all), true

    def _train_step(self, batch: Batch) -> tuple[Any, Any]:
        with self.autocast:
            output = self.forward(batch)
            pairs = None
            if self.ctx.enabled and output.unifrac_z is not None:
                pairs = self._global_unifrac(batch, output.unifrac_z)
            loss = compute_losses(self.model, output, batch, self.class_weights, pairs)
        total = loss.total
        if self.ctx.enabled:
            total = total + _zero_touch(output)
        (total / self.config.grad_accumulation).backward()
        return output, loss

    def _optimiser_step(self) -> None:
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.config.grad_clip)
        self.optimiser.step()
        self.scheduler.step()
        self.optimiser.zero_grad(set_to_none=True)

    def _merged(self, tracker: Tracker) -> dict[str, float]:
        if not self.ctx.enabled:
            return tracker.summary()
        parts = gather_objects(tracker.state_for_gather(), self.ctx)
        merged = Tracker(self.model)
        for part in parts:
            merged.merge(part)
        return merged.summary()

    def evaluate(self, dataset: SampleDataset, collate: Collator, *, keep: bool = False) -> Tracker:
        """This rank's share of ``dataset`` in eval mode."""
        rows = shard(np.arange(len(dataset)), self.ctx, pad=False)
        return evaluate_rows(
            self.model,
            dataset,
            collate,
            rows,
            batch_size=self.config.batch_size,
            device=self.device,
            precision=self.config.precision,
            class_weights=self.class_weights,
            keep=keep,
            num_workers=self.config.num_workers,
        )

    def fit(self, resume: dict[str, Any] | None = None) -> FitResult:
        config, ctx = self.config, self.ctx
        torch.manual_seed(config.seed + ctx.rank)
        history: list[dict[str, Any]] = []
        best_value: float | None = None
        best_epoch, bad_epochs, step, start_epoch, skip = 0, 0, 0, 0, 0
        if resume is not None:
            if resume.get("world_size", 1) != ctx.world_size:
                raise ValueError(
                    f"this run was checkpointed with {resume.get('world_size')} processes; "
                    f"resume it with the same number, not {ctx.world_size}"
                )
            self.optimiser.load_state_dict(resume["optimizer"])
            self.scheduler.load_state_dict(resume["scheduler"])
            _set_rng_state(resume["rng"])
            start_epoch, skip, step = resume["epoch"], resume["batches_done"], resume["step"]
            best_value, best_epoch = resume["best_value"], resume["best_epoch"]
            bad_epochs, history = resume["bad_epochs"], list(resume["history"])
            self.callbacks.on_log(f"resuming at epoch {start_epoch + 1}, step {step}")
        started = time.monotonic()
        best_path: Path | None = (
            self.out_dir / "checkpoints" / BEST if best_value is not None else None
        )
        last_path = self.out_dir / "checkpoints" / LAST
        stopped = "completed"
        epoch = start_epoch
        for epoch in range(start_epoch, config.epochs):
            epoch_started = time.monotonic()
            self.data.train.set_epoch(epoch)
            batches = self._epoch_batches(epoch)
            tracker = Tracker(self.model)
            self.model.train()
            self.optimiser.zero_grad(set_to_none=True)
            loader = self._loader(self.data.train, self.data.train_collate, batches[skip:])
            for index, batch in enumerate(loader, start=skip):
                batch = batch.to(self.device, non_blocking=True)
                output, loss = self._train_step(batch)
                tracker.update(batch, output, loss)
                if (index + 1) % config.grad_accumulation and index + 1 < len(batches):
                    continue
                lr = float(self.optimiser.param_groups[0]["lr"])  # the rate this step used
                self._optimiser_step()
                step += 1
                if ctx.is_main:
                    self.callbacks.on_step(
                        StepEvent(
                            epoch=epoch + 1,
                            epochs=config.epochs,
                            step=step,
                            steps=self.total_steps,
                            loss=float(loss.total.detach()),
                            components=loss.component_values(),
                            lr=lr,
                            elapsed_seconds=time.monotonic() - started,
                        )
                    )
                if any_rank(ctx.is_main and self.callbacks.should_stop(), ctx):
                    state = {
                        "step": step,
                        "best_value": best_value,
                        "best_epoch": best_epoch,
                        "bad_epochs": bad_epochs,
                        "history": history,
                    }
                    if ctx.is_main:
                        self._save(
                            LAST,
                            metrics=self._metrics(history, best_epoch),
                            resume=self._resume_state(epoch, index + 1, state),
                        )
                        self.callbacks.on_log(f"stop requested: saved {LAST} at step {step}")
                    barrier(ctx)
                    return FitResult(
                        history,
                        self.monitor,
                        best_epoch,
                        best_value,
                        "requested",
                        epoch,
                        step,
                        best_path,
                        last_path,
                    )
            skip = 0
            train_summary = self._merged(tracker)
            validation_summary: dict[str, float] = {}
            if self.data.validation is not None and self.data.validation_collate is not None:
                validation_summary = self._merged(
                    self.evaluate(self.data.validation, self.data.validation_collate)
                )
            records = [{"epoch": epoch + 1, "split": "train", **train_summary}]
            if validation_summary:
                records.append({"epoch": epoch + 1, "split": "validation", **validation_summary})
            history.extend(records)
            watched = validation_summary or train_summary
            value = watched.get(self.monitor)
            improved = (
                value is not None
                and not math.isnan(value)
                and (
                    best_value is None
                    or (value < best_value if self.mode == "min" else value > best_value)
                )
            )
            if improved:
                best_value, best_epoch, bad_epochs = value, epoch + 1, 0
            else:
                bad_epochs += 1
            state = {
                "step": step,
                "best_value": best_value,
                "best_epoch": best_epoch,
                "bad_epochs": bad_epochs,
                "history": history,
            }
            if ctx.is_main:
                metrics = self._metrics(history, best_epoch)
                if improved:
                    best_path = self._save(BEST, metrics=metrics, resume=None)
                self._save(LAST, metrics=metrics, resume=self._resume_state(epoch + 1, 0, state))
                write_history(self.out_dir / "metrics.jsonl", history)
                self.callbacks.on_epoch(
                    EpochEvent(
                        epoch=epoch + 1,
                        epochs=config.epochs,
                        step=step,
                        steps=self.total_steps,
                        train=train_summary,
                        validation=validation_summary,
                        monitor=self.monitor,
                        value=value,
                        best_epoch=best_epoch,
                        best_value=best_value,
                        improved=bool(improved),
                        seconds=time.monotonic() - epoch_started,
                    )
                )
            barrier(ctx)
            if config.patience is not None and bad_epochs >= config.patience:
                stopped = "early_stopping"
                if ctx.is_main:
                    self.callbacks.on_log(
                        f"early stopping after epoch {epoch + 1}: no better {self.monitor} "
                        f"for {bad_epochs} epochs (best {best_value} at epoch {best_epoch})"
                    )
                break
            if any_rank(ctx.is_main and self.callbacks.should_stop(), ctx):
                stopped = "requested"
                break
        return FitResult(
            history,
            self.monitor,
            best_epoch,
            best_value,
            stopped,
            epoch + 1,
            step,
            best_path,
            last_path,
        )

    def _metrics(self, history: list[dict[str, Any]], best_epoch: int) -> dict[str, Any]:
        def at(epoch: int | None) -> dict[str, Any]:
            return {
                r["split"]: {k: v for k, v in r.items() if k not in ("epoch", "split")}
                for r in history
                if r["epoch"] == epoch
            }

        last_epoch = history[-1]["epoch"] if history else None
        return {
            "final": {"epoch": last_epoch, **at(last_epoch)},
            "best": {"epoch": best_epoch, "monitor": self.monitor, **at(best_epoch)},
        }


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """The whole per-epoch history as JSON lines, replaced atomically: it always matches the
    last checkpoint, also after a crash and a resume."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for record in history:
            clean = {
                k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in record.items()
            }
            fh.write(json.dumps(clean) + "\n")
    tmp.replace(path)


def _zero_touch(output: Any) -> torch.Tensor:
    """``0 *`` every output tensor that carries a gradient, summed.

    DDP (``find_unused_parameters``) treats a parameter that reaches any forward output as used
    and waits for its gradient; an output the loss ignores (the pooled embedding of a regressor
    whose head reads the ASV states) would otherwise stall the reduction. A zero term gives
    those parameters zero gradients, identical on every rank.
    """
    tensors = [
        value
        for value in vars(output).values()
        if isinstance(value, torch.Tensor) and value.requires_grad
    ]
    return sum((t.float().sum() * 0.0 for t in tensors), torch.zeros(()))
