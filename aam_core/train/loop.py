"""The training loop and how it judges a model, in the order a run meets them:

- :class:`Trainer`: AdamW, warmup + cosine (:func:`warmup_cosine`), clipping, accumulation, bf16
  autocast (CUDA, and CPUs with native bf16), optional torch.compile and EMA weights, DDP,
  early stopping, best/last checkpoints and exact resume;
- :class:`Progress`: where a run stands, and the resume state its last checkpoint carries
  (:func:`resume_state` builds it and :func:`restore` reads it back; nothing else touches its
  keys);
- :func:`evaluate_rows`: a model over a dataset's rows in eval mode (summed up, as each epoch
  is, by :class:`aam_core.train.metrics.Tracker`), which validation and the final scoring of a
  run's best checkpoint share.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR, LRScheduler
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from aam_core.checkpoint import Checkpoint, checkpoint_from_model, save_checkpoint
from aam_core.data.batching import Batch, Collator, SampleDataset
from aam_core.errors import ConfigError
from aam_core.io.files import write_jsonl
from aam_core.model import SequenceEncoder, SequenceRegressor
from aam_core.plan.config import RunConfig, Stage
from aam_core.train.callbacks import Callback, CallbackList, EpochEvent, StepEvent
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
from aam_core.train.metrics import Tracker, base_of

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
        # the batch size and epochs left unset: from the train split (run._run resolves them
        # the same way first, for the run's record)
        self.config = config = config.resolved(stage, len(data.train), self.ctx.world_size)
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
        self.parameters = (
            model.trainable_parameters()
            if isinstance(model, SequenceRegressor)
            else [p for p in model.parameters() if p.requires_grad]
        )
        self.optimiser = torch.optim.AdamW(
            self.parameters,
            lr=config.peak_lr(stage),
            weight_decay=config.weight_decay,
            fused=self.device.type == "cuda",  # one kernel for all parameters on GPUs
        )
        self._plan_steps()
        self.scheduler = warmup_cosine(self.optimiser, self.total_steps, config.warmup_fraction)
        self.forward = self._wrapped_forward()
        # An exponential moving average of the weights: what validation, early stopping and
        # the checkpoints see (the optimiser keeps stepping the raw weights).
        self.ema: AveragedModel | None = None
        if config.ema > 0:
            self.ema = AveragedModel(
                self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True
            )

    def _plan_steps(self) -> None:
        """Batches and optimiser steps per epoch (this rank's padded shard), and in all."""
        config = self.config
        rows = shard(np.arange(len(self.data.train)), self.ctx, pad=True)
        self.batches_per_epoch = math.ceil(len(rows) / config.batch)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / config.grad_accumulation)
        assert config.epochs is not None
        self.epochs = config.epochs
        self.total_steps = self.steps_per_epoch * self.epochs

    def _wrapped_forward(self) -> torch.nn.Module:
        """The module each training step calls: the model, under DDP with several processes,
        compiled with ``config.compile``."""
        forward: torch.nn.Module = self.model
        if self.ctx.enabled:
            forward = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,  # heads with a zero loss weight never run
            )
        if self.config.compile:
            forward = torch.compile(forward)  # type: ignore[assignment]
        return forward

    @property
    def weights(self) -> Model:
        """The model validation and the checkpoints use: the moving average when there is one."""
        return self.model if self.ema is None else self.ema.module  # type: ignore[return-value]

    # -- checkpoints ----------------------------------------------------------------------

    def _save(self, name: str, progress: Progress, *, resume: bool) -> Path:
        """Checkpoint ``name`` with the metrics so far; ``resume``: with the resume state."""
        world_size = self.ctx.world_size
        state = (
            resume_state(progress, self.optimiser, self.scheduler, world_size) if resume else None
        )
        if state is not None and self.ema is not None:
            # last.pt resumes: the raw weights are the model's, the average rides along
            state["ema"] = self.ema.state_dict()
        checkpoint: Checkpoint = checkpoint_from_model(
            self.model if resume else self.weights,
            metrics=progress.metrics(self.monitor),
            resume=state,
            **self.checkpoint_fields(),
        )
        return save_checkpoint(checkpoint, self.out_dir / "checkpoints" / name)

    # -- loop ----------------------------------------------------------------------------

    def _loader(
        self, dataset: SampleDataset, collate: Collator, batches: list[list[int]]
    ) -> DataLoader[Batch]:
        return make_loader(dataset, collate, batches, self.config.num_workers, self.device)

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        order = np.random.default_rng([self.config.seed, epoch]).permutation(len(self.data.train))
        rows = shard(order, self.ctx, pad=True)
        size = self.config.batch
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
        base = self.model.base if isinstance(self.model, SequenceRegressor) else self.model
        return base.unifrac_head.distances(z_all), true

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
        if self.ema is not None:
            self.ema.update_parameters(self.model)

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
            self.weights,
            dataset,
            collate,
            rows,
            batch_size=self.config.batch,
            device=self.device,
            precision=self.config.precision,
            class_weights=self.class_weights,
            keep=keep,
            num_workers=self.config.num_workers,
        )

    def fit(self, resume: dict[str, Any] | None = None) -> FitResult:
        """Train from the start, or from the ``resume`` state of a last checkpoint."""
        # A resumed run then continues the saved RNG stream: restore() replaces this one.
        torch.manual_seed(self.config.seed + self.ctx.rank)
        progress = Progress()
        if resume is not None:
            progress = restore(resume, self.optimiser, self.scheduler, self.ctx.world_size)
            if self.ema is not None and "ema" in resume:
                self.ema.load_state_dict(resume["ema"])
            self.callbacks.on_log(f"resuming at epoch {progress.epoch + 1}, step {progress.step}")
        elif self._starts_as_linear_model():
            self._validate_start(progress)
        started = time.monotonic()
        while progress.epoch < self.epochs:
            epoch_started = time.monotonic()
            tracker = self._train_epoch(progress, started)
            if tracker is None:
                return self._result(progress, "requested")
            self._end_epoch(progress, tracker, time.monotonic() - epoch_started)
            patience = self.config.patience  # 0 (or None): never stop early
            if patience and progress.bad_epochs >= patience:
                if self.ctx.is_main:
                    self.callbacks.on_log(
                        f"early stopping after epoch {progress.epoch}: no better {self.monitor} "
                        f"for {progress.bad_epochs} epochs (best {progress.best_value} at "
                        f"epoch {progress.best_epoch})"
                    )
                return self._result(progress, "early_stopping")
            if self._stop_requested():
                return self._result(progress, "requested")
        return self._result(progress, "completed")

    def _stop_requested(self) -> bool:
        """Rank 0 asks its callbacks; every rank gets the answer, so all stop at one step."""
        return any_rank(self.ctx.is_main and self.callbacks.should_stop(), self.ctx)

    def _train_epoch(self, progress: Progress, started: float) -> Tracker | None:
        """The rest of ``progress.epoch`` (all of it unless resumed mid-epoch). None when a stop
        was requested: ``last.pt`` then holds the state after the last optimiser step."""
        epoch = progress.epoch
        self.data.train.set_epoch(epoch)
        batches = self._epoch_batches(epoch)
        tracker = Tracker(self.model)
        self.model.train()
        self.optimiser.zero_grad(set_to_none=True)
        skip = progress.batches_done
        loader = self._loader(self.data.train, self.data.train_collate, batches[skip:])
        for index, batch in enumerate(loader, start=skip):
            batch = batch.to(self.device, non_blocking=True)
            output, loss = self._train_step(batch)
            tracker.update(batch, output, loss)
            if (index + 1) % self.config.grad_accumulation and index + 1 < len(batches):
                continue
            lr = float(self.optimiser.param_groups[0]["lr"])  # the rate this step used
            self._optimiser_step()
            progress.step, progress.batches_done = progress.step + 1, index + 1
            if self.ctx.is_main:
                self.callbacks.on_step(
                    StepEvent(
                        epoch=epoch + 1,
                        epochs=self.epochs,
                        step=progress.step,
                        steps=self.total_steps,
                        loss=float(loss.total.detach()),
                        components=loss.component_values(),
                        lr=lr,
                        elapsed_seconds=time.monotonic() - started,
                    )
                )
            if self._stop_requested():
                if self.ctx.is_main:
                    self._save(LAST, progress, resume=True)
                    self.callbacks.on_log(f"stop requested: saved {LAST} at step {progress.step}")
                barrier(self.ctx)
                return None
        return tracker

    def _validation(self) -> dict[str, float]:
        """The validation split's metrics (every rank's share merged); {} without one."""
        if self.data.validation is None or self.data.validation_collate is None:
            return {}
        return self._merged(self.evaluate(self.data.validation, self.data.validation_collate))

    def _starts_as_linear_model(self) -> bool:
        head = getattr(self.model, "target_head", None)
        return head is not None and head.fitted_base is not None

    def _validate_start(self, progress: Progress) -> None:
        """Epoch 0: the model before any step. With a fitted linear base and the network's
        output at zero, that is the linear model alone: the first candidate for the best
        checkpoint, so that a network that never beats it on validation is not kept."""
        validation = self._validation()
        if not validation:
            return
        value = validation.get(self.monitor)
        records = [{"epoch": 0, "split": "validation", **validation}]
        if progress.finish_epoch(records, value, self.mode, count=False) and self.ctx.is_main:
            self._save(BEST, progress, resume=False)
        if self.ctx.is_main:
            write_jsonl(self.out_dir / "metrics.jsonl", progress.history)
            shown = "-" if value is None else f"{value:.4g}"
            self.callbacks.on_log(f"epoch 0 (the linear base alone): {self.monitor} {shown}")
        barrier(self.ctx)

    def _end_epoch(self, progress: Progress, tracker: Tracker, seconds: float) -> None:
        """Validate, record the epoch in ``progress``, write the checkpoints and the metrics
        log, and report the epoch."""
        train = self._merged(tracker)
        validation = self._validation()
        epoch = progress.epoch + 1
        records = [{"epoch": epoch, "split": "train", **train}]
        if validation:
            records.append({"epoch": epoch, "split": "validation", **validation})
        value = (validation or train).get(self.monitor)
        improved = progress.finish_epoch(records, value, self.mode)
        if self.ctx.is_main:
            if improved:
                self._save(BEST, progress, resume=False)
            self._save(LAST, progress, resume=True)
            write_jsonl(self.out_dir / "metrics.jsonl", progress.history)
            self.callbacks.on_epoch(
                EpochEvent(
                    epoch=epoch,
                    epochs=self.epochs,
                    step=progress.step,
                    steps=self.total_steps,
                    train=train,
                    validation=validation,
                    monitor=self.monitor,
                    value=value,
                    best_epoch=progress.best_epoch,
                    best_value=progress.best_value,
                    improved=improved,
                    seconds=seconds,
                )
            )
        barrier(self.ctx)

    def _result(self, progress: Progress, stopped: str) -> FitResult:
        checkpoints = self.out_dir / "checkpoints"
        return FitResult(
            history=progress.history,
            monitor=self.monitor,
            best_epoch=progress.best_epoch,
            best_value=progress.best_value,
            stopped=stopped,
            epochs_run=progress.epoch,
            steps=progress.step,
            best_checkpoint=checkpoints / BEST if progress.best_value is not None else None,
            last_checkpoint=checkpoints / LAST,
        )


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


# -- the learning-rate schedule ---------------------------------------------------------


def lr_factor(step: int, total_steps: int, warmup_fraction: float, min_lr_ratio: float) -> float:
    """Multiplier of the peak learning rate at optimiser step ``step`` (0-based)."""
    total_steps = max(total_steps, 1)
    warmup = min(max(round(warmup_fraction * total_steps), 0), total_steps)
    if step < warmup:
        return (step + 1) / warmup  # reaches 1 at the last warmup step, on any data size
    decay_steps = max(total_steps - warmup, 1)
    progress = min((step - warmup) / decay_steps, 1.0)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(
    optimiser: torch.optim.Optimizer,
    total_steps: int,
    warmup_fraction: float = 0.05,
    min_lr_ratio: float = 0.01,
) -> LambdaLR:
    return LambdaLR(
        optimiser, lambda step: lr_factor(step, total_steps, warmup_fraction, min_lr_ratio)
    )


# -- progress and resume state ----------------------------------------------------------


@dataclass(kw_only=True)
class Progress:
    """Where a run stands: ``epoch`` epochs are finished, and ``batches_done`` batches of the
    next one (non-zero only when a stop request ended the run in the middle of an epoch)."""

    epoch: int = 0
    batches_done: int = 0
    step: int = 0  # optimiser steps
    best_value: float | None = None  # of the monitored metric
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the best one
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per epoch and split

    def finish_epoch(
        self, records: list[dict[str, Any]], value: float | None, mode: str, *, count: bool = True
    ) -> bool:
        """Count the epoch whose ``records`` and monitored ``value`` are given; True when the
        value beats the best so far (``mode`` "min" or "max"; a missing or NaN value never
        does, and counts as an epoch without gain for early stopping). ``count=False``: judge
        the model before training (epoch 0) without counting an epoch."""
        if count:
            self.epoch, self.batches_done = self.epoch + 1, 0
        self.history.extend(records)
        best = self.best_value
        improved = (
            value is not None
            and not math.isnan(value)
            and (best is None or bool(value < best if mode == "min" else value > best))
        )
        if improved:
            self.best_value, self.best_epoch, self.bad_epochs = value, self.epoch, 0
        elif count:
            self.bad_epochs += 1
        return improved

    def metrics(self, monitor: str) -> dict[str, Any]:
        """The last and the best epoch's records by split, as checkpoints store them."""

        def at(epoch: int | None) -> dict[str, Any]:
            return {
                r["split"]: {k: v for k, v in r.items() if k not in ("epoch", "split")}
                for r in self.history
                if r["epoch"] == epoch
            }

        last = self.history[-1]["epoch"] if self.history else None
        return {
            "final": {"epoch": last, **at(last)},
            "best": {"epoch": self.best_epoch, "monitor": monitor, **at(self.best_epoch)},
        }


def resume_state(
    progress: Progress,
    optimiser: torch.optim.Optimizer,
    scheduler: LRScheduler,
    world_size: int,
) -> dict[str, Any]:
    """The plain dictionary a last checkpoint stores (``torch.load(weights_only=True)`` reads
    it back)."""
    return {
        **dataclasses.asdict(progress),
        "optimizer": optimiser.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_state(),
        "world_size": world_size,
    }


def restore(
    resume: dict[str, Any],
    optimiser: torch.optim.Optimizer,
    scheduler: LRScheduler,
    world_size: int,
) -> Progress:
    """Load the optimiser, scheduler and RNG states of ``resume`` in place; its progress."""
    if resume.get("world_size", 1) != world_size:
        # The batches of an epoch are sharded by rank: another world size would train
        # different samples from the ones the saved step counts assume.
        raise ConfigError(
            f"this run was checkpointed with {resume.get('world_size')} processes; "
            f"resume it with the same number, not {world_size}",
            field="config.gpus",
        )
    optimiser.load_state_dict(resume["optimizer"])
    scheduler.load_state_dict(resume["scheduler"])
    _set_rng_state(resume["rng"])
    progress = Progress(**{f.name: resume[f.name] for f in dataclasses.fields(Progress)})
    progress.history = list(progress.history)
    return progress


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- evaluation in eval mode ------------------------------------------------------------


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
